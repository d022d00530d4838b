"""Consoles and the single place where errors become exit codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import click

if TYPE_CHECKING:
    from rich.console import Console

from ckptmap.errors import CkptmapError, InputError, OutputError, UnresolvedError, UsageError


class _LazyConsole:
    """A rich ``Console`` made on first use: ``--json`` output never imports rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._real(), name, value)


# markup/highlight off: a key like "a[0]/b" prints as given, output is stable in tests.
_OPTIONS: dict[str, Any] = {"markup": False, "highlight": False, "emoji": False, "soft_wrap": True}
console = cast("Console", _LazyConsole(**_OPTIONS))
err_console = cast("Console", _LazyConsole(stderr=True, **_OPTIONS))

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
