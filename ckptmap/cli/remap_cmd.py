"""``ckptmap check``, ``ckptmap remap`` and ``ckptmap alias``: plan, verify and migrate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ckptmap.cli._output import console, err_console, reported_errors
from ckptmap.cli._plan_view import print_explain, print_problems, summary_line, written_line
from ckptmap.cli.options import (
    DEFAULT,
    AliasOptions,
    CheckOptions,
    PlanOptions,
    RemapOptions,
    click_options,
    config_option,
    resolve_click,
)
from ckptmap.errors import OutputError

if TYPE_CHECKING:
    from ckptmap.migration import PlanInputs, RemapPlan
    from ckptmap.migration.write import Progress


def _plan_inputs(opts: PlanOptions) -> PlanInputs:
    """The library's planning inputs, from the command's options (same names)."""
    import dataclasses

    from ckptmap.migration import PlanInputs

    names = [f.name for f in dataclasses.fields(PlanInputs)]
    return PlanInputs(**{name: getattr(opts, name) for name in names})


def _print_verdict(plan: RemapPlan, *, prefix: str = "") -> None:
    """``OK: <counts>`` or ``FAIL: <counts>``; a partial plan says what it leaves out.

    A ``partial`` verdict prints the counts, then exactly ``OK (partial): N keys
    have no source and will not be in the output``, and a note on stderr on how
    such a checkpoint is restored.
    """
    from ckptmap.migration.verdict import PARTIAL_RESTORE, Verdict, partial_sentence

    if plan.verdict is Verdict.PARTIAL:
        console.print(f"{prefix}{summary_line(plan)}")
        console.print(f"{plan.verdict.label}: {partial_sentence(len(plan.unfilled))}")
        err_console.print(f"note: {PARTIAL_RESTORE}")
    else:
        console.print(f"{prefix}{plan.verdict.label}: {summary_line(plan)}")


def _write_junit(path: Path, xml: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # reports/ need not exist yet
        path.write_text(xml, encoding="utf-8")
    except OSError as err:
        raise OutputError(f"{path}: cannot write the JUnit report ({err.strerror or err})") from err


@click.command("check")
@click_options(CheckOptions)
@config_option()
@click.pass_context
def check_command(ctx: click.Context, /, **_: object) -> None:
    """Check that the new model would restore from the old checkpoint.

    Reads the old checkpoint's index and the new model's graph only (no tensor
    data), resolves every key the new model restores through the alias map,
    the rules and the automatic heuristics, and reports keys with no source or
    a source of another shape or dtype, with candidates and a rule to try.
    Exit status 0 when everything resolves, 1 otherwise: made for CI.

    \b
    Examples:
      ckptmap check --old model_dir/ --new-graph new/graph.pbtxt
      ckptmap check --old model_dir/ --new-graph new/graph.pbtxt \\
          --rule '^model_v2/(.*)$=model/{}' --junit check.xml
      ckptmap check --old ckpt/model.ckpt-100 --new-graph new.meta --json
    """
    from ckptmap.migration import check
    from ckptmap.storage import measure_io

    with reported_errors():
        opts = resolve_click(ctx, CheckOptions).options
        with measure_io() as io:
            report = check(_plan_inputs(opts))
        if not opts.quiet:
            for note in report.plan.notes:
                err_console.print(f"note: {note}")
        if opts.junit is not None:
            _write_junit(opts.junit, report.to_junit())
        if opts.json:
            click.echo(json.dumps({**report.to_json(), "io": io.to_json()}, indent=2))
        elif not opts.quiet:
            if opts.explain:
                print_explain(report.plan)
            print_problems(report.plan)
            _print_verdict(report.plan)
    ctx.exit(report.verdict.exit_code)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Progress | None]:
    """Bytes written, on stderr unless quiet: a bar on a terminal, else a line every few seconds."""
    if not enabled:
        yield None
        return
    from ckptmap.cli._progress import byte_progress

    with byte_progress(total, label="remap") as progress:
        yield progress


def _render_plan(plan: RemapPlan, opts: RemapOptions) -> None:
    if opts.explain:
        print_explain(plan)
    print_problems(plan, to_stderr=not opts.dry_run)
    if opts.dry_run:
        for note in plan.notes:
            err_console.print(f"note: {note}")


@click.command("remap")
@click_options(RemapOptions)
@config_option()
@click.pass_context
def remap_command(ctx: click.Context, /, **_: object) -> None:
    """Write a checkpoint of the old model's values that the new model restores.

    Plans every key the new model restores (as `check` does), then streams the
    old tensors into a new checkpoint: unchanged tensors are copied as bytes,
    partitioned ones are written sliced exactly as the new model's saver asks.
    The output appears atomically (index last, then the state file); an
    existing checkpoint is replaced only with --force; inputs are never
    modified. With --dry-run nothing is written.

    --out is a prefix (new/model.ckpt-100), or a folder (new_model/) that
    becomes a model folder with a `checkpoint` state file. --old, --new-graph
    and --out may be URLs (file://, memory://, http(s)://, gs://, s3://): the
    old tensors are then read by byte range, and a URL output is staged in a
    local temporary folder and uploaded index last, each data shard (at most
    32MiB by default, --shard-size) as soon as it is full (docs/remote.md).
    With --json, "io" counts the bytes and requests that went to remote stores.

    Progress goes to stderr: on a terminal a live bar (bytes done/total, rate,
    time left); in a pipe or CI log a plain line every 5 seconds while the
    write runs; none with --quiet or --json (docs/terminal.md).

    \b
    Examples:
      ckptmap remap --old model_dir/ --new-graph new/graph.pbtxt --out new_dir/
      ckptmap remap --old model_dir/ --new-graph new/graph.pbtxt --out new_dir/ \\
          --rule '^model_v2/(.*)$=model/{}' --explain
      ckptmap remap --old model_dir/ --new-graph new.meta --out new_dir/ --dry-run --json
      ckptmap remap --old model_dir/ --new-graph new.pbtxt --out new_dir/ \\
          --clear-nn --continue-training
    """
    from ckptmap.cli.options.commands import byte_size
    from ckptmap.migration import CheckReport, Verdict, execute, plan_from
    from ckptmap.migration.execute import check_sharding
    from ckptmap.migration.verdict import PARTIAL_RESTORE, partial_sentence
    from ckptmap.storage import measure_io
    from ckptmap.storage.range_reads import read_options

    with reported_errors(), measure_io() as io:
        resolved = resolve_click(ctx, RemapOptions)
        opts = resolved.options
        # a count the user set (even 1) is kept; left at its default, a URL output is cut by size
        shards = None if resolved.sources["shards"] == DEFAULT else opts.shards
        shard_bytes = None if opts.shard_size is None else byte_size(opts.shard_size)
        check_sharding(shards, shard_bytes, opts.link)  # before any planning
        plan = plan_from(_plan_inputs(opts))
        if opts.junit is not None:
            _write_junit(opts.junit, CheckReport(plan).to_junit())
        if opts.dry_run:
            if opts.json:
                click.echo(json.dumps({**plan.to_json(), "io": io.to_json()}, indent=2))
            elif not opts.quiet:
                _render_plan(plan, opts)
                _print_verdict(plan, prefix="dry run, nothing written: ")
            ctx.exit(plan.verdict.exit_code)
        if not opts.quiet and not opts.json:
            _render_plan(plan, opts)
        with _progress(plan.summary()["bytes"], not opts.quiet and not opts.json) as progress:
            result = execute(
                plan,
                opts.out,
                force=opts.force,
                shards=shards,
                shard_bytes=shard_bytes,
                assets=opts.on_existing_assets.value,
                link=opts.link,
                progress=progress,
                reads=read_options(opts.max_inflight, opts.inflight_mib),
            )
        data = result.to_json()
        if opts.json:
            click.echo(json.dumps({**data, "io": io.to_json()}, indent=2))
        elif not opts.quiet:
            for note in data["notes"]:
                err_console.print(f"note: {note}")
            console.print(written_line(data))
            if plan.verdict is Verdict.PARTIAL:
                console.print(f"{plan.verdict.label}: {partial_sentence(len(plan.unfilled))}")
                err_console.print(f"note: {PARTIAL_RESTORE}")


@click.command("alias")
@click_options(AliasOptions)
@config_option()
@click.pass_context
def alias_command(ctx: click.Context, /, **_: object) -> None:
    """Print the alias plan as JSON: new key -> old key, with reasons.

    The output is meant to be reviewed, edited and passed back with
    --alias-map: its "aliases" object is read as the explicit map. Unresolved
    keys are listed with candidates and a suggested rule.

    \b
    Examples:
      ckptmap alias --old model_dir/ --new-graph new/graph.pbtxt > aliases.json
      ckptmap remap --old model_dir/ --new-graph new/graph.pbtxt \\
          --alias-map aliases.json --no-auto --out new_dir/
    """
    from ckptmap.migration import plan_from
    from ckptmap.storage import location_text

    with reported_errors():
        opts = resolve_click(ctx, AliasOptions).options
        plan = plan_from(_plan_inputs(opts))
        alias = plan.alias.to_json()
        doc = {
            "old": str(plan.old_prefix),
            "new": plan.new_source,
            "aliases": {k: m["old_key"] for k, m in alias["matches"].items()},
            "reasons": {k: m["reason"] for k, m in alias["matches"].items()},
            "fill_from": location_text(plan.fill_from) if plan.fill_from else None,
            "filled": [t.key for t in plan.filled],
            "unresolved": [u for u in alias["unresolved"] if u["new_key"] not in plan.filled_keys],
            "mismatched": alias["mismatched"],
            "dropped": alias["dropped"],
            "unused_old": alias["unused_old"],
        }
        click.echo(json.dumps(doc, indent=2))
    ctx.exit(plan.verdict.exit_code)
