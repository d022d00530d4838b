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
    """The per-key table: new key, source, slices, how its bytes are made, and why.

    The "why" column is the reason sentence, the same text as ``check --json``'s
    ``why`` (unresolved keys: their ``note``).
    """
    from ckptmap.migration import CheckReport
    from ckptmap.storage import location_text

    report = CheckReport(plan)
    table = Table(box=None, title="Where each key comes from", title_justify="left")
    for col in ("new key", "source", "slices", "action", "why"):
        table.add_column(col)
    fill = location_text(plan.fill_from) if plan.fill_from is not None else ""
    for t in (*plan.tensors, *plan.filled):
        slices = ", ".join(p.slice.format() for p in t.pieces if p.slice is not None)
        methods = sorted({p.method.value for p in t.pieces})
        filled = t.key in plan.filled_keys
        table.add_row(
            display_key(t.key),
            f"{display_key(t.source)} of {fill}" if filled else display_key(t.source),
            slices,
            f"{'filled' if filled else t.action} ({'+'.join(methods)})",
            report.why(t.key),
        )
    for u in plan.unfilled:
        table.add_row(display_key(u.new_key), "-", "", "no source", u.note)
    for d in plan.alias.dropped:
        table.add_row(display_key(d.new_key), "-", "", "dropped", d.why)
    print_table(table, keys=(0, 1))


def print_problems(plan: RemapPlan, *, to_stderr: bool = False) -> None:
    """Unresolved and mismatched keys, with candidates and a fix to try."""
    out = err_console if to_stderr else console
    alias = plan.alias
    unfilled = plan.unfilled
    if plan.filled and plan.fill_from is not None:
        from ckptmap.storage import location_text

        where = location_text(plan.fill_from)
        table = Table(box=None, title=f"Keys filled from {where}", title_justify="left")
        for col in ("new key", "dtype", "shape", "why it has no old source"):
            table.add_column(col)
        notes = {u.new_key: u.note for u in alias.unresolved}
        for t in plan.filled[:MAX_ROWS]:
            table.add_row(display_key(t.key), t.dtype.name, shape_text(t.shape), notes[t.key])
        print_table(table, console=out)
        if len(plan.filled) > MAX_ROWS:
            out.print(f"... and {len(plan.filled) - MAX_ROWS:,} more; --json lists all")
    if unfilled:
        table = Table(box=None, title="Keys with no source", title_justify="left")
        # Object-based checkpoints: the names users know first, then the key.
        names = ("new name", "new key") if alias.by_name else ("new key",)
        for col in (*names, "dtype", "shape", "why", "candidates (same shape and dtype)"):
            table.add_column(col)
        for u in unfilled[:MAX_ROWS]:
            cands = ", ".join(
                f"{alias.old_name(c.old_key)} ({c.score:.2f})" for c in u.candidates[:3]
            )
            shown = (alias.new_name(u.new_key), u.new_key) if alias.by_name else (u.new_key,)
            table.add_row(
                *map(display_key, shown),
                u.dtype.name,
                "any" if u.dynamic else shape_text(u.shape),
                u.note,
                cands or "none",
            )
        print_table(table, keys=tuple(range(len(names))), console=out)
        if len(unfilled) > MAX_ROWS:
            out.print(f"... and {len(unfilled) - MAX_ROWS:,} more; --json lists all")
    if alias.mismatched:
        table = Table(box=None, title="Keys whose source disagrees", title_justify="left")
        for col in ("new name", "old name") if alias.by_name else ("new key", "old key"):
            table.add_column(col)
        for col in ("problem",):
            table.add_column(col)
        for m in alias.mismatched[:MAX_ROWS]:
            new_key, old_key = alias.new_name(m.new_key), alias.old_name(m.old_key)
            table.add_row(display_key(new_key), display_key(old_key), m.what)
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
    if s.get("transposed"):
        parts.append(f"{s['transposed']} transposed")
    if plan.filled:
        parts.append(f"{len(plan.filled)} filled")
    if plan.unfilled:
        parts.append(f"{len(plan.unfilled)} unresolved")
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
        f"wrote {out['prefix']}: {s['tensors'] + s['filled']} tensors "
        f"({s['renamed']} renamed, {s['split']} split, {s['merged']} merged, "
        f"{s['repartitioned']} re-partitioned"
        + (f", {s['transposed']} transposed" if s.get("transposed") else "")
        + f"; {s['pieces_copied_as_bytes']} pieces copied as "
        f"bytes, {s['pieces_assembled']} assembled"
        + (f"; {s['filled']} filled from {result_json['fill_from']}" if s["filled"] else "")
        + f"), {human_bytes(out['bytes_written'])}, "
        f"{s['old_keys_dropped']} old keys dropped"
    )
