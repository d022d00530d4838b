"""``ckptmap convert``: export a checkpoint to a zarr v3 store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ckptmap.cli._output import console, reported_errors
from ckptmap.cli._render import human_bytes

_TARGETS = ("zarr3",)  # ckptmap.convert.TARGETS, repeated so --help needs no import


@click.command("convert")
@click.option(
    "--old",
    required=True,
    type=click.Path(path_type=Path),
    help="The checkpoint to convert: a model folder, a checkpoint prefix or its .index file.",
)
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Choice(_TARGETS),
    help="The store format to write.",
)
@click.option(
    "--out",
    required=True,
    metavar="PATH_OR_URL",
    help="Where to write the store: a local folder, or a file://, memory://, gs:// or s3:// URL.",
)
@click.option(
    "--ocdbt",
    is_flag=True,
    help="Write the arrays inside one OCDBT database (fewer, larger files) instead of "
    "one file per chunk.",
)
@click.option(
    "--step",
    type=click.IntRange(min=0),
    metavar="N",
    help="With a model folder, convert the checkpoint saved at global step N "
    "instead of the latest one.",
)
@click.option(
    "--chunk-mib",
    type=click.FloatRange(min=0, min_open=True),
    default=8.0,
    show_default=True,
    help="The largest zarr chunk, in MiB (tensors that fit are one chunk).",
)
@click.option("--force", is_flag=True, help="Replace an existing store at --out.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the report as JSON on stdout, nothing else."
)
def convert_command(
    old: Path,
    to: str,
    out: str,
    ocdbt: bool,
    step: int | None,
    chunk_mib: float,
    force: bool,
    as_json: bool,
) -> None:
    """Export a checkpoint to a zarr v3 store, one array per tensor.

    Partitioned tensors are merged into one array; dtypes are kept (bfloat16
    stays bfloat16). Each array carries the original key, TensorFlow dtype,
    full shape and slice layout as attributes, and the root group holds a
    manifest of every key. A local store appears only when complete (it is
    written to a temporary folder and renamed); a store at a URL is complete
    when its manifest (the root zarr.json) exists. Such a store can be read
    back as a checkpoint by ckptmap.

    \b
    Examples:
      ckptmap convert --old fixtures/ffm_v1 --to zarr3 --out /tmp/ffm_v1.zarr
      ckptmap convert --old fixtures/ffm_v1 --to zarr3 --ocdbt --out /tmp/ffm_v1.ocdbt
      ckptmap convert --old ckpt/model.ckpt-100 --to zarr3 --out gs://bucket/model.zarr --force
      ckptmap convert --old fixtures/dtype_zoo/zoo --to zarr3 --out /tmp/zoo.zarr --json
    """
    if step is not None and old.name.endswith(".index"):
        raise click.UsageError("--step cannot be used with an .index path; pass the model folder")
    from ckptmap.convert import convert

    with reported_errors():
        result = convert(
            old,
            out,
            to=to,
            ocdbt=ocdbt,
            step=step,
            chunk_bytes=max(1, int(chunk_mib * 1024 * 1024)),
            force=force,
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    layout = f"{result.to}, OCDBT" if result.ocdbt else result.to
    size = "" if result.store_bytes is None else f", {human_bytes(result.store_bytes)} on disk"
    console.print(
        f"wrote {result.arrays} arrays ({human_bytes(result.tensor_bytes)} of tensors{size}) "
        f"from {result.source} to {result.out} ({layout})"
    )
