"""Consoles and the single place where errors become exit codes.

The two consoles write to whatever ``sys.stdout`` / ``sys.stderr`` are when
they print, and are made on first use, so ``--json`` output never imports
rich. They honour https://no-color.org (``NO_COLOR`` set to anything but the
empty string) and ``TERM=dumb``: no colour or style escape sequences at all.
Off a terminal rich writes plain text, as wide as it needs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import click

if TYPE_CHECKING:
    from rich.console import Console

from ckptmap.errors import CkptmapError, InputError, OutputError, UnresolvedError, UsageError

# markup/highlight off: a key like "a[0]/b" prints as given, output is stable in tests.
_OPTIONS: dict[str, Any] = {"markup": False, "highlight": False, "emoji": False, "soft_wrap": True}


def no_color() -> bool:
    """``NO_COLOR`` is set to a non-empty value (https://no-color.org)."""
    return os.environ.get("NO_COLOR", "") != ""


UNLIMITED_WIDTH = 1 << 16  # the width of a console that is not a terminal


def make_console(*, stderr: bool = False) -> Console:
    """A rich console with ckptmap's settings, for stdout or stderr.

    Off a terminal its width is unlimited, so a table is as wide as its content
    (rich never cuts it with ``…``) and a pipe gets every name whole.
    """
    from rich.console import Console, ConsoleDimensions

    class _Console(Console):
        @property
        def size(self) -> ConsoleDimensions:
            size = super().size
            return size if self.is_terminal else ConsoleDimensions(UNLIMITED_WIDTH, size.height)

        @size.setter
        def size(self, new_size: tuple[int, int]) -> None:
            self._width, self._height = new_size

    # rich's own NO_COLOR handling drops colours but keeps bold and dim; without
    # a colour system it writes no style sequences at all.
    plain: dict[str, Any] = {"color_system": None, "no_color": True} if no_color() else {}
    return _Console(stderr=stderr, **_OPTIONS, **plain)


class _LazyConsole:
    """A rich ``Console`` made on first use: ``--json`` output never imports rich.

    Attribute access and the context-manager protocol (rich's ``Live`` and
    ``Progress`` enter the console) go to the real console; :func:`real_console`
    returns it, for the rich APIs that take a console.

    Until then, printing one line of plain printable ASCII text off a terminal
    writes it directly: what rich would write for it (with markup, highlighting
    and emoji off, soft wrap on, and no style, a line comes out as given), so a
    command that only reports a line or an error (``convert``, most failures in
    CI) does not import rich (about 30 ms).
    """

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _real(self) -> Console:
        if self._console is None:
            self._console = make_console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def print(self, *objects: Any, **options: Any) -> None:
        if self._console is None and not options and len(objects) == 1:
            text = objects[0]
            stream = sys.stderr if self._stderr else sys.stdout
            if type(text) is str and text.isascii() and text.isprintable() and _plain(stream):
                stream.write(text + "\n")
                stream.flush()
                return
        self._real().print(*objects, **options)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._real(), name, value)

    def __enter__(self) -> Console:
        return self._real().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._real().__exit__(exc_type, exc, tb)


def _plain(stream: Any) -> bool:
    """``stream`` is no terminal, and rich is not told to treat it as one."""
    if any(os.environ.get(name) for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")):
        return False
    isatty = getattr(stream, "isatty", None)
    return isatty is not None and not isatty()


console = cast("Console", _LazyConsole(stderr=False))
err_console = cast("Console", _LazyConsole(stderr=True))


def real_console(proxy: Console) -> Console:
    """The rich console behind :data:`console` or :data:`err_console` (made now if needed)."""
    lazy: object = proxy
    return lazy._real() if isinstance(lazy, _LazyConsole) else proxy


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
