"""Consoles and the single place where errors become exit codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click
from rich.console import Console

from ckptmap.errors import CkptmapError, InputError, OutputError, UnresolvedError, UsageError

# markup/highlight off: a key like "a[0]/b" prints as given, output is stable in tests.
console = Console(markup=False, highlight=False, emoji=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False, highlight=False, emoji=False, soft_wrap=True)

EXIT_CODES: dict[type[CkptmapError], int] = {
    UnresolvedError: 1,
    UsageError: 2,
    InputError: 3,
    OutputError: 4,
}


def exit_code_for(err: CkptmapError) -> int:
    """The documented exit code of an error (3 for anything unclassified)."""
    return next((code for cls, code in EXIT_CODES.items() if isinstance(err, cls)), 3)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn a :class:`CkptmapError` into one line on stderr and its exit code."""
    try:
        yield
    except CkptmapError as err:
        message = " ".join(str(err).split("\n"))
        err_console.print(f"error: {message}")
        raise click.exceptions.Exit(exit_code_for(err)) from None
