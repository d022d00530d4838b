"""Rendering helpers shared by the commands: tables, sizes, names."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

from ckptmap.cli._output import console

_UNLIMITED_WIDTH = 1 << 16  # measure tables as if the terminal were this wide
_BINARY_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def print_table(table: Table) -> None:
    """Print a table; when stdout is not a terminal, as wide as it needs (no truncation)."""
    if console.is_terminal:
        console.print(table)
        return
    unlimited = console.options.update_width(_UNLIMITED_WIDTH)
    from rich.measure import Measurement

    natural = Measurement.get(console, unlimited, table).maximum
    saved = console.width
    console.width = max(saved, natural)  # print() never goes wider than the console
    try:
        console.print(table)
    finally:
        console.width = saved


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
