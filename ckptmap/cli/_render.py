"""Rendering helpers shared by the commands: tables, sizes, names.

Tables never cut a name. On a terminal a table is fitted to its width: every
column folds or wraps instead of ending in ``…``, the short columns (dtype,
shape, size) keep their width, the other text columns give way first and the
key columns last, so keys like ``w/Adam`` and ``w/Adam_1`` stay whole on one
line whenever they can. Off a terminal a table is as wide as its content (the
consoles of :mod:`ckptmap.cli._output` are that wide there).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

from ckptmap.cli._output import console as stdout_console

_UNLIMITED_WIDTH = 1 << 16  # measure tables as if the terminal were this wide
_BINARY_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")
TEXT_FLOOR = 12  # a text column is narrowed to no less than this (when it was wider)
KEY_FLOOR = 16  # a key column likewise, once every text column is at its floor


def print_table(
    table: Table, *, keys: Collection[int] = (0,), console: Console | None = None
) -> None:
    """Print a table without cutting any cell.

    Args:
        table: the table; its columns are set to fold (never ``…``) and, on a
            terminal narrower than the table, to the widths :func:`fit_widths` picks.
        keys: the indices of the columns that hold keys or paths: they are
            narrowed last. The first column by default.
        console: where to print; stdout by default.
    """
    out = stdout_console if console is None else console
    for column in table.columns:
        column.overflow = "fold"
    cells, padding = _measure(out, table)
    if sum(max(widths) for widths in cells) + padding > out.width:
        fitted = fit_widths(cells, set(keys), out.width - padding)
        for column, width in zip(table.columns, fitted, strict=True):
            column.width = width
    out.print(table)


def fit_widths(cells: Sequence[Sequence[int]], keys: Collection[int], room: int) -> list[int]:
    """Column widths that add up to ``room``, narrowing the widest columns first.

    Args:
        cells: the width of every cell (header included), column by column.
        keys: the indices of the key columns.
        room: the characters available for the cells.

    Key columns are first narrowed to their widest cell that takes at most half
    the room (so only unusually long keys fold), then text columns to
    :data:`TEXT_FLOOR`, then key columns to :data:`KEY_FLOOR`, then every
    column evenly down to 1. A column is never made wider than its content.
    """
    widths = [max(column, default=1) for column in cells]
    key_columns = [i for i in range(len(widths)) if i in keys]
    text_columns = [i for i in range(len(widths)) if i not in keys]
    excess = sum(widths) - room
    for i in key_columns:
        usual = max((w for w in cells[i] if w <= room // 2), default=widths[i])
        cut = min(excess, widths[i] - max(usual, KEY_FLOOR))
        if cut > 0:
            widths[i] -= cut
            excess -= cut
    for columns, floor in (
        (text_columns, TEXT_FLOOR),
        (key_columns, KEY_FLOOR),
        (list(range(len(widths))), 1),
    ):
        excess = _narrow(widths, columns, floor, excess)
    return widths


def _narrow(widths: list[int], columns: list[int], floor: int, excess: int) -> int:
    """Narrow the widest of ``columns`` together until ``excess`` is gone or all are at ``floor``.

    Returns the excess left.
    """
    while excess > 0:
        wide = [i for i in columns if widths[i] > floor]
        if not wide:
            break
        top = max(widths[i] for i in wide)
        widest = [i for i in wide if widths[i] == top]
        below = max([widths[i] for i in wide if widths[i] < top] + [floor])
        step = min(top - below, -(-excess // len(widest)))  # to the next width, or evenly
        for i in widest:
            cut = min(step, excess)
            widths[i] -= cut
            excess -= cut
    return excess


def _measure(out: Console, table: Table) -> tuple[list[list[int]], int]:
    """The width of every cell, column by column, and what padding and borders add."""
    from rich.cells import cell_len
    from rich.measure import Measurement

    options = out.options.update_width(_UNLIMITED_WIDTH)

    def width(cell: RenderableType) -> int:
        if isinstance(cell, str):
            return max((cell_len(line) for line in cell.splitlines()), default=0)
        return Measurement.get(out, options, cell).maximum

    cells = []
    for column in table.columns:
        shown = list(column.cells)
        if table.show_header:
            shown.append(column.header)
        if table.show_footer:
            shown.append(column.footer)
        cells.append([width(cell) for cell in shown] or [1])
    # With every column one character wide, the table's width is what it adds.
    saved = [column.width for column in table.columns]
    for column in table.columns:
        column.width = 1
    try:
        total = Measurement.get(out, options, table).maximum
    finally:
        for column, fixed in zip(table.columns, saved, strict=True):
            column.width = fixed
    return cells, max(0, total - len(table.columns))


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in _BINARY_UNITS:
        if value < 1024 or unit == _BINARY_UNITS[-1]:
            if unit == "bytes":
                return "1 byte" if size == 1 else f"{size} bytes"
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover - the loop always returns


def display_key(name: str) -> str:
    """A key for the terminal: bytes that are not UTF-8 shown as \\x escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
