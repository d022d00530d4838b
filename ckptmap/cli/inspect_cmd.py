"""``ckptmap inspect``: what is in a checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ckptmap.cli._output import console, err_console, reported_errors
from ckptmap.cli._render import display_key, human_bytes, shape_text
from ckptmap.cli.options import InspectOptions, click_options, config_option, resolve_click
from ckptmap.errors import UsageError

if TYPE_CHECKING:  # the library (and numpy) load only when the command runs
    from ckptmap.inspect import InspectReport, TensorInfo
    from ckptmap.readers.assets import Asset

_PRINT_THRESHOLD = 1000  # numpy prints at most this many values before summarizing with "..."
_ARRAY_FILES = {"safetensors": "safetensors file", "npz": "npz archive"}  # header line of a listing


@click.command("inspect")
@click.argument("path")
@click_options(InspectOptions)
@config_option()
@click.pass_context
def inspect_command(ctx: click.Context, /, path: str, **_: object) -> None:
    """Show what is in a checkpoint.

    PATH is a model folder (its `checkpoint` state file names the latest
    checkpoint), a checkpoint prefix, or its .index file, on disk or at a URL
    (file://, memory://, http(s)://, gs://, s3://). The listing reads only the
    index: names, dtypes, shapes, sizes, partitions and shards of every tensor,
    then the data files and assets. --stats and --verify read the tensor data
    too (at a URL, by byte range). With --json, "io" counts the bytes and
    requests that went to a remote store.

    \b
    Examples:
      ckptmap inspect fixtures/ffm_v1
      ckptmap inspect fixtures/ffm_v1 --step 50 --filter '^ffm/'
      ckptmap inspect fixtures/ffm_v1/model.ckpt-100 --stats --verify
      ckptmap inspect fixtures/dtype_zoo/zoo.index --tensor string
      ckptmap inspect fixtures/ffm_v2 --json | jq '.totals'
      ckptmap inspect https://example.com/ckpts/model.ckpt-100 --json | jq '.io'
    """
    from ckptmap.inspect import inspect_checkpoint

    with reported_errors():
        opts = resolve_click(ctx, InspectOptions).options
        if opts.step is not None and path.rstrip("/").endswith(".index"):
            raise UsageError("--step cannot be used with an .index path; pass the model folder")
        if opts.tensor is not None and opts.json:
            raise UsageError("--tensor prints values as text; it cannot be combined with --json")
        report = inspect_checkpoint(
            path,
            step=opts.step,
            stats=opts.stats,
            verify=opts.verify,
            filter=opts.filter,
            tensor=opts.tensor,
        )
        for note in report.notes:
            err_console.print(f"note: {note}")
        if opts.json:
            click.echo(report.to_json_text())
        elif opts.tensor is not None:
            _print_values(report)
        else:
            _print_report(report)


def _print_report(report: InspectReport) -> None:
    byte_order = "little-endian" if report.byte_order == "<" else "big-endian"
    shards = "1 data file" if report.num_shards == 1 else f"{report.num_shards} data files"
    if report.format == "zarr3":
        console.print(f"zarr3 store {report.url or report.prefix} (written by ckptmap convert)")
    elif report.format == "tf-v1":
        console.print(f"TensorFlow V1 checkpoint {report.url or report.prefix} ({byte_order})")
    elif report.format in _ARRAY_FILES:
        listed = str(report.index)
        kind = (
            "safetensors shards listed in"
            if listed.endswith(".json")
            else _ARRAY_FILES[report.format]
        )
        console.print(f"{kind} {listed}")
    else:
        console.print(f"Checkpoint {report.url or report.prefix} ({shards}, {byte_order})")
    from rich.table import Table

    from ckptmap.cli._render import print_table

    table = Table(show_footer=True, box=None, header_style="bold", footer_style="bold")
    count = len(report.tensors)
    table.add_column("name", footer=f"{count} tensor{'s' if count != 1 else ''}", overflow="fold")
    by_name = any(t.user_name is not None for t in report.tensors)  # a TF2 object graph
    if by_name:
        table.add_column("key", overflow="fold")
    table.add_column("dtype")
    table.add_column("shape")
    table.add_column("size", justify="right", footer=human_bytes(report.total_bytes))
    table.add_column("slices")
    table.add_column("shard", justify="right")
    if report.with_stats:
        for column in ("min", "max", "mean", "std", "nan", "inf"):
            table.add_column(column, justify="right")
    for t in report.tensors:
        row = [
            *((display_key(t.user_name or t.name), display_key(t.name)) if by_name else ()),
            *(() if by_name else (display_key(t.name),)),
            t.dtype,
            shape_text(t.shape),
            human_bytes(t.nbytes),
            _partition(t),
            str(t.shard)
            if t.shard is not None
            else ",".join(map(str, sorted(set(t.slice_shards)))),
        ]
        if report.with_stats:
            row += _stats_cells(t)
        table.add_row(*row)
    print_table(table)
    restored = [t for t in report.tensors if t.restored_into is not None]
    if restored:
        console.print(f"Restored by {report.graph} into something other than a variable:")
        for t in restored:
            console.print(f"  {display_key(t.name)}: {t.restored_into}", markup=False)
    if report.verified and report.format == "tf-v1":
        console.print("Every table block matches its CRC32C and every record decodes.")
    elif report.verified:
        console.print("CRC32C: every tensor matches its stored checksum.")
    if report.assets:
        assets = Table(title="Assets", title_justify="left", box=None, header_style="bold")
        for column in ("name", "kind", "ps", "size", "legacy"):
            assets.add_column(column, justify="right" if column in ("ps", "size") else "left")
        # One row per asset name: a legacy <prefix>hash_filter_<ps> beside the
        # prefix that repeats one in .assets/ is marked in the legacy column.
        files_of: dict[str, list[Asset]] = {}
        for a in report.assets:
            files_of.setdefault(a.name, []).append(a)
        for name, files in files_of.items():
            a = next((f for f in files if not f.legacy), files[0])
            legacy = [f for f in files if f.legacy]
            assets.add_row(
                display_key(name),
                a.kind,
                "" if a.ps_index is None else str(a.ps_index),
                "?" if a.size is None else human_bytes(a.size),
                ("also" if len(legacy) < len(files) else "yes") if legacy else "",
            )
        print_table(assets)
        if any(len(files) > 1 for files in files_of.values()):
            console.print(
                "legacy 'also': the file is in .assets/ and beside the prefix too"
                " (<prefix>hash_filter_<ps>, Monolith's old layout)"
            )


def _print_values(report: InspectReport) -> None:
    import numpy as np

    (t,) = report.tensors
    if report.values is None:  # inspect_checkpoint always reads the tensor it was given
        return
    console.print(f"{display_key(t.name)}  {t.dtype}  {shape_text(t.shape)}")
    with np.printoptions(threshold=_PRINT_THRESHOLD):
        console.print(np.array2string(report.values), soft_wrap=True)
    if t.stats is not None:
        console.print("  ".join(f"{k}={v}" for k, v in t.stats.to_json().items()))


def _partition(t: TensorInfo) -> str:
    if not t.slices:
        return ""
    from ckptmap.split import SliceSpec

    specs = [SliceSpec.parse(s) for s in t.slices]
    axes = [d for d in range(len(t.shape)) if len({s.extents[d] for s in specs}) > 1]
    where = f" on axis {axes[0]}" if len(axes) == 1 else ""
    return f"{len(specs)}{where}"


def _stats_cells(t: TensorInfo) -> list[str]:
    s = t.stats
    if s is None:
        return ["", "", "", "", "", ""]
    return [_number(s.min), _number(s.max), _number(s.mean), _number(s.std), str(s.nan), str(s.inf)]


def _number(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"
