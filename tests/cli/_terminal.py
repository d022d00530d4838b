"""Run ``ckptmap`` for real: under a pseudo-terminal, or with its output piped.

:func:`run_pty` gives the command a pty of a chosen window size as stdin,
stdout and stderr (so rich sees a terminal, as on a user's screen) and
returns everything it wrote, escape sequences included; :func:`run_piped`
runs it with pipes. Both start ``python -m ckptmap`` in a clean environment:
no ``CKPTMAP_*``, colour or width variables unless a test sets them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Variables that change how rich or ckptmap behave; a test sets them on purpose.
_DROPPED = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")

ESC = "\x1b"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"
SGR = re.compile(r"\x1b\[[0-9;:]*m")  # colour and style: bold, dim, colours, reset
_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def environment(
    extra: Mapping[str, str] | None = None, *, term: str = "xterm-256color"
) -> dict[str, str]:
    """The environment of a run: this one without CKPTMAP_* or colour variables, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CKPTMAP_") and k not in _DROPPED
    }
    env["TERM"] = term
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def command(args: Sequence[str | os.PathLike[str]]) -> list[str]:
    return [sys.executable, "-m", "ckptmap", *map(str, args)]


@dataclass(frozen=True)
class PtyRun:
    """What a command wrote to its terminal, and how it ended."""

    code: int
    raw: str  # as written, escape sequences included (the pty turns \n into \r\n)
    seconds: float

    @property
    def text(self) -> str:
        """What a reader sees, roughly: escape sequences removed, lines split on \\n."""
        return visible(self.raw)

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")


def visible(raw: str) -> str:
    """``raw`` without escape sequences, with \\r\\n as \\n (and a lone \\r dropped)."""
    text = _OSC.sub("", _CSI.sub("", raw))
    return text.replace("\r\n", "\n").replace("\r", "")


def run_pty(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    term: str = "xterm-256color",
    columns: int = 80,
    rows: int = 24,
    cwd: Path | None = None,
    timeout: float = 300.0,
) -> PtyRun:
    """Run ``ckptmap ARGS`` with a ``columns`` x ``rows`` pseudo-terminal as its stdio."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command(args),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environment(env, term=term),
            cwd=cwd or ROOT,
            start_new_session=True,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            if time.monotonic() - start > timeout:
                process.kill()
                raise TimeoutError(f"ckptmap {' '.join(map(str, args))}: still running")
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as err:  # EIO: every writer of the pty has closed it
                if err.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=timeout)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    raw = b"".join(chunks).decode("utf-8", "replace")
    return PtyRun(code, raw, time.monotonic() - start)


@dataclass(frozen=True)
class PipedRun:
    code: int
    stdout: str
    stderr: str


def run_piped(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300.0,
) -> PipedRun:
    """Run ``ckptmap ARGS`` with stdout and stderr piped (stdin from /dev/null)."""
    done = subprocess.run(
        command(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=environment(env),
        cwd=cwd or ROOT,
        timeout=timeout,
        check=False,
    )
    return PipedRun(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def assert_terminal_left_clean(raw: str) -> None:
    """No traceback, and a hidden cursor is shown again after its last hiding."""
    assert "Traceback" not in raw, raw
    if HIDE_CURSOR in raw:
        assert raw.rfind(SHOW_CURSOR) > raw.rfind(HIDE_CURSOR), "the cursor is left hidden"


def table_lines(lines: Sequence[str], header: str, next_header: str) -> list[str]:
    """A table's header line and rows (the footer too, if any).

    From the line that starts with ``header`` (after the padding) and holds
    ``next_header``, to the first line that is empty or does not start with
    the padding.
    """
    start = next(
        i for i, line in enumerate(lines) if line.strip().startswith(header) and next_header in line
    )
    end = next(
        (i for i in range(start, len(lines)) if not lines[i].strip() or lines[i][0] != " "),
        len(lines),
    )
    return list(lines[start:end])


def table_column(
    lines: Sequence[str], header: str, next_header: str, *, footer: bool = False
) -> list[str]:
    """The cells of a table's first column, continuation lines joined.

    The table is found as :func:`table_lines` finds it. A row starts where the
    second column (left-aligned, under ``next_header``) has text; text in the
    first column of a line where it has none continues the cell above (a
    folded name). With ``footer``, the table's last line is its footer, left out.
    """
    header_line, *rows = table_lines(lines, header, next_header)
    if footer:
        rows.pop()
    split = header_line.index(next_header)
    cells: list[str] = []
    for line in rows:
        first = line[:split].strip()
        if line[split : split + len(next_header)].strip() or not cells:
            cells.append(first)
        else:
            cells[-1] += first
    return cells
