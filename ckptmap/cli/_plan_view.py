"""Rendering of remap plans and check reports (shared by check, remap and alias)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from ckptmap.cli._output import console, err_console
from ckptmap.cli._render import display_key, human_bytes, print_table, shape_text

if TYPE_CHECKING:
    from ckptmap.migration import RemapPlan

MAX_ROWS = 50  # rows of a problem table; the rest is counted (--json lists all)


def print_explain(plan: RemapPlan) -> None:
    """The per-key table: new key, source, slices, how its bytes are made, and why."""
    table = Table(box=None, title="Where each key comes from", title_justify="left")
    for col in ("new key", "source", "slices", "action", "reason"):
        table.add_column(col)
    for t in plan.tensors:
        slices = ", ".join(p.slice.format() for p in t.pieces if p.slice is not None)
        methods = sorted({p.method.value for p in t.pieces})
        table.add_row(
            display_key(t.key),
            display_key(t.source),
            slices,
            f"{t.action} ({'+'.join(methods)})",
            t.reason,
        )
    for d in plan.alias.dropped:
        table.add_row(display_key(d.new_key), "-", "", "dropped", d.why)
    print_table(table)


def print_problems(plan: RemapPlan, *, to_stderr: bool = False) -> None:
    """Unresolved and mismatched keys, with candidates and a fix to try."""
    out = err_console if to_stderr else console
    alias = plan.alias
    if alias.unresolved:
        table = Table(box=None, title="Keys with no source", title_justify="left")
        for col in ("new key", "dtype", "shape", "why", "candidates (same shape and dtype)"):
            table.add_column(col)
        for u in alias.unresolved[:MAX_ROWS]:
            cands = ", ".join(f"{c.old_key} ({c.score:.2f})" for c in u.candidates[:3])
            table.add_row(
                display_key(u.new_key), u.dtype.name, shape_text(u.shape), u.note, cands or "none"
            )
        print_table(table, console=out)
        if len(alias.unresolved) > MAX_ROWS:
            out.print(f"... and {len(alias.unresolved) - MAX_ROWS:,} more; --json lists all")
    if alias.mismatched:
        table = Table(box=None, title="Keys whose source disagrees", title_justify="left")
        for col in ("new key", "old key", "problem"):
            table.add_column(col)
        for m in alias.mismatched[:MAX_ROWS]:
            table.add_row(display_key(m.new_key), display_key(m.old_key), m.what)
        print_table(table, keys=(0, 1), console=out)
        if len(alias.mismatched) > MAX_ROWS:
            out.print(f"... and {len(alias.mismatched) - MAX_ROWS:,} more; --json lists all")
    rules = alias.suggested_rules
    if rules:
        out.print("Try: " + " ".join(f"--rule '{r}'" for r in rules[:3]))


def summary_line(plan: RemapPlan) -> str:
    """One line of counts: resolved, renamed, re-sliced, unresolved, dropped."""
    s = plan.summary()
    parts = [
        f"{s['tensors']} keys resolved",
        f"{s['renamed']} renamed",
        f"{s['split']} split",
        f"{s['merged']} merged",
        f"{s['repartitioned']} re-partitioned",
    ]
    if plan.alias.unresolved:
        parts.append(f"{len(plan.alias.unresolved)} unresolved")
    if plan.alias.mismatched:
        parts.append(f"{len(plan.alias.mismatched)} mismatched")
    if plan.alias.dropped:
        parts.append(f"{len(plan.alias.dropped)} dropped")
    parts.append(f"{s['old_keys_dropped']} old keys unused")
    return ", ".join(parts)


def written_line(result_json: dict[str, Any]) -> str:
    """The closing line of a remap: what went where."""
    s = result_json["summary"]
    out = result_json["output"]
    return (
        f"wrote {out['prefix']}: {s['tensors']} tensors "
        f"({s['renamed']} renamed, {s['split']} split, {s['merged']} merged, "
        f"{s['repartitioned']} re-partitioned; {s['pieces_copied_as_bytes']} pieces copied as "
        f"bytes, {s['pieces_assembled']} assembled), {human_bytes(out['bytes_written'])}, "
        f"{s['old_keys_dropped']} old keys dropped"
    )
