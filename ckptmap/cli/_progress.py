"""Progress of a long write, on stderr: a live bar on a terminal, else a line now and then.

On an interactive terminal (stderr is a tty and ``TERM`` is not ``dumb``) rich
draws bytes done/total, rate and time left, and erases the bar at the end. Off
a terminal (a pipe, a CI log, a dumb terminal) a plain line such as
``remap: 96.0 MiB of 256.0 MiB (37%), 48.0 MiB/s, about 3 s left`` is printed
every :data:`PLAIN_PERIOD` seconds, never an escape sequence; a run shorter
than that prints nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from ckptmap.cli._output import err_console, real_console
from ckptmap.cli._render import human_bytes

PLAIN_PERIOD = 5.0  # seconds between two plain progress lines

ByteCount = Callable[[int], None]  # called with the bytes written since the last call


class PlainProgress:
    """A progress line on stderr at most every ``period`` seconds, the first after one period.

    Args:
        total: the bytes the run will write.
        label: what is running, the line's first word.
        period: seconds between lines.
        clock: the time source (seconds).
        write: where a finished line goes.
    """

    def __init__(
        self,
        total: int,
        *,
        label: str,
        period: float = PLAIN_PERIOD,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.total = total
        self.done = 0
        self._label = label
        self._period = period
        self._clock = clock
        self._write = write or (lambda line: click.echo(line, err=True))
        self._start = clock()
        self._next = self._start + period

    def __call__(self, count: int) -> None:
        self.done += count
        now = self._clock()
        if now >= self._next:
            self._next = now + self._period
            self._write(self.line(now - self._start))

    def line(self, elapsed: float) -> str:
        """The progress line after ``elapsed`` seconds."""
        parts = [f"{self._label}: {human_bytes(self.done)} of {human_bytes(self.total)}"]
        if self.total > 0:
            parts[0] += f" ({100 * self.done // self.total}%)"
        if elapsed > 0 and self.done > 0:
            rate = self.done / elapsed
            left = max(0, self.total - self.done) / rate
            parts.append(f"{human_bytes(int(rate))}/s")
            parts.append(f"about {_duration(left)} left")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@contextmanager
def byte_progress(total: int, *, label: str) -> Iterator[ByteCount]:
    """Show the progress of writing ``total`` bytes on stderr while the block runs.

    Yields the callback to call with each count of bytes written.
    """
    console = real_console(err_console)
    if not console.is_interactive:
        yield PlainProgress(total, label=label)
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda count: bar.advance(task, count)
