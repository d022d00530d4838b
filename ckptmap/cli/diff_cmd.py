"""``ckptmap diff``: what differs between two checkpoints (a CI gate for migrations)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from ckptmap.cli._output import console, reported_errors
from ckptmap.cli._render import display_key, print_table, shape_text
from ckptmap.cli.options import DiffOptions, click_options, config_option, resolve_click

if TYPE_CHECKING:
    from ckptmap.diff import Compared, DiffReport

_SHOWN = 50  # rows per table before '... and N more; --json lists all'


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click_options(DiffOptions)
@config_option()
@click.pass_context
def diff_command(ctx: click.Context, /, a: str, b: str, **_: object) -> None:
    """Show what differs between checkpoints A and B; exit 0 if identical, 1 if not.

    A and B are any checkpoints ckptmap reads: TensorFlow checkpoints (model
    folder, prefix, .index, URL), zarr3 stores, safetensors files or sharded
    models, npz archives. Keys are paired by --alias-map (keys of B to keys of
    A, as remap takes it: B migrated from A), then --rules, then same names.
    For each pair: dtype and shape, then the values, compared as bytes (a
    partition layout change alone is no difference). Keys found on one side
    only are listed, and pairs of them holding identical bytes are shown as
    renamed; with --alias-map or --rules, keys of A that nothing maps to were
    dropped by the migration and are no difference. --values adds the drift
    of every pair: max |a-b|, relative L2 and NaN/Inf counts. Values are
    streamed in 4 MiB chunks.

    \b
    Examples:
      ckptmap diff fixtures/ffm_v1 /tmp/ffm_v1.safetensors
      ckptmap diff old_model/ new_model/ --alias-map aliases.json --values
      ckptmap diff old_model/ new_model/ --rule '^model_v2/(.*)$=model/{}' --json
    """
    from ckptmap.diff import diff_checkpoints

    with reported_errors():
        opts = resolve_click(ctx, DiffOptions).options
        report = diff_checkpoints(
            a, b, values=opts.values, alias_map=opts.alias_map, rules=opts.rules
        )
    if opts.json:
        click.echo(json.dumps(report.to_json()))
    else:
        _print_report(report)
    ctx.exit(report.exit_code)


def _print_report(report: DiffReport) -> None:
    from rich.table import Table

    shown = report.compared if report.values else report.different
    if shown:
        title = "Values" if report.values else "Different values"
        table = Table(title=title, title_justify="left", box=None)
        columns = ["key in A", "key in B", "dtype", "shape", "equal"]
        if report.values:
            columns += ["max |a-b|", "rel L2", "NaN a/b", "Inf a/b"]
        for name in columns:
            table.add_column(name, justify="right" if name in columns[4:] else "left")
        for item in shown[:_SHOWN]:
            table.add_row(*_value_row(item, values=report.values))
        print_table(table, keys=(0, 1))
        _more(len(shown))
    if report.changed:
        table = Table(title="Dtype or shape changed", title_justify="left", box=None)
        for name in ("key in A", "key in B", "in A", "in B"):
            table.add_column(name)
        for c in report.changed[:_SHOWN]:
            table.add_row(
                display_key(c.a),
                display_key(c.b),
                f"{c.a_dtype} {shape_text(c.a_shape)}",
                f"{c.b_dtype} {shape_text(c.b_shape)}",
            )
        print_table(table, keys=(0, 1))
        _more(len(report.changed))
    if report.renamed:
        table = Table(title="Same bytes, other name", title_justify="left", box=None)
        for name in ("key in A", "key in B", "dtype", "shape"):
            table.add_column(name)
        for r in report.renamed[:_SHOWN]:
            table.add_row(display_key(r.a), display_key(r.b), r.dtype, shape_text(r.shape))
        print_table(table, keys=(0, 1))
        _more(len(report.renamed))
    for side, keys in (("A", report.only_a), ("B", report.only_b)):
        if keys:
            table = Table(title=f"Only in {side}", title_justify="left", box=None)
            table.add_column("key")
            for key in keys[:_SHOWN]:
                table.add_row(display_key(key))
            print_table(table)
            _more(len(keys))
    console.print(_summary(report))


def _value_row(item: Compared, *, values: bool) -> list[str]:
    row = [
        display_key(item.a),
        display_key(item.b),
        item.dtype,
        shape_text(item.shape),
        "yes" if item.equal else "no",
    ]
    drift = item.drift
    if values and drift is not None:
        row += [
            "-" if drift.max_abs is None else f"{drift.max_abs:.3g}",
            "-" if drift.rel_l2 is None else f"{drift.rel_l2:.3g}",
            f"{drift.nan_a}/{drift.nan_b}",
            f"{drift.inf_a}/{drift.inf_b}",
        ]
    elif values:
        row += ["-", "-", "-", "-"]
    return row


def _more(count: int) -> None:
    if count > _SHOWN:
        console.print(f"... and {count - _SHOWN} more; --json lists all")


def _summary(report: DiffReport) -> str:
    c = report.counts()
    word = "IDENTICAL" if report.identical else "DIFFERENT"
    parts = [f"{c['equal']} of {c['compared']} compared keys equal"]
    for name, label in (
        ("different", "with other values"),
        ("changed", "with another dtype or shape"),
        ("renamed", "renamed"),
        ("only_a", "only in A" + (" (mapped to nothing: dropped)" if report.mapped else "")),
        ("only_b", "only in B"),
        ("repartitioned", "re-partitioned"),
        ("transposed", "transposed"),
    ):
        if c[name]:
            parts.append(f"{c[name]} {label}")
    return f"{word}: {report.a} vs {report.b}: " + ", ".join(parts)
