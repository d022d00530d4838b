"""Progress of a long write, on stderr: a live bar on a terminal, else a line now and then.

On an interactive terminal (stderr is a tty and ``TERM`` is not ``dumb``) rich
draws bytes done/total, rate and time left, and erases the bar at the end. Off
a terminal (a pipe, a CI log, a dumb terminal) a plain line such as
``remap: 96.0 MiB of 256.0 MiB (37%), 48.0 MiB/s, about 3 s left`` is printed
every :data:`PLAIN_PERIOD` seconds while the write runs, never an escape
sequence; a run shorter than that prints nothing. The rate is measured from the
first bytes written, so the time spent opening the output does not count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from ckptmap.cli._output import err_console, real_console
from ckptmap.cli._render import human_bytes

PLAIN_PERIOD = 5.0  # seconds between two plain progress lines

ByteCount = Callable[[int], None]  # called with the bytes written since the last call
Clock = Callable[[], float]


class Rate:
    """Bytes per second after the first count of bytes (``None`` until a second one came)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.done = 0
        self._clock = clock
        self._first: tuple[float, int] | None = None

    def add(self, count: int) -> None:
        self.done += count
        if self._first is None:
            self._first = (self._clock(), self.done)

    def per_second(self, now: float) -> float | None:
        if self._first is None:
            return None
        since, base = self._first
        if now <= since or self.done == base:
            return None
        return (self.done - base) / (now - since)


class PlainProgress:
    """A plain progress line: ``label: done of total (p%), rate, about t left``.

    Call it with each count of bytes written; :meth:`tick` writes the line
    (:func:`byte_progress` calls it every period from a thread, so a long
    piece of work still shows the process is alive).

    Args:
        total: the bytes the run will write.
        label: what is running, the line's first word.
        clock: the time source (seconds).
        write: where a finished line goes (stderr by default).
    """

    def __init__(
        self,
        total: int,
        *,
        label: str,
        clock: Clock = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.total = total
        self._label = label
        self._clock = clock
        self._rate = Rate(clock)
        self._write = write or (lambda line: click.echo(line, err=True))

    def __call__(self, count: int) -> None:
        self._rate.add(count)

    @property
    def done(self) -> int:
        return self._rate.done

    def tick(self) -> None:
        """Write the line for now."""
        self._write(self.line(self._clock()))

    def line(self, now: float) -> str:
        """The progress line at time ``now``."""
        done = self.done
        line = f"{self._label}: {human_bytes(done)} of {human_bytes(self.total)}"
        if self.total > 0:
            line += f" ({100 * done // self.total}%)"
        rate = self._rate.per_second(now)
        if rate is not None:
            left = max(0, self.total - done) / rate
            line += f", {human_bytes(int(rate))}/s, about {_duration(left)} left"
        return line


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
def ticking(progress: PlainProgress, period: float = PLAIN_PERIOD) -> Iterator[PlainProgress]:
    """Call ``progress.tick()`` every ``period`` seconds from a thread while the block runs."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(period):
            progress.tick()

    thread = threading.Thread(target=run, name="ckptmap-progress", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join()


@contextmanager
def byte_progress(total: int, *, label: str) -> Iterator[ByteCount]:
    """Show the progress of writing ``total`` bytes on stderr while the block runs.

    Yields the callback to call with each count of bytes written.
    """
    console = real_console(err_console)
    if not console.is_terminal or console.is_dumb_terminal:
        with ticking(PlainProgress(total, label=label)) as plain:
            yield plain
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    rate = Rate()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TextColumn("{task.fields[rate]}"),  # rich's own rate column has decimal units (MB/s)
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total, rate="?")

        def advance(count: int) -> None:
            rate.add(count)
            per_second = rate.per_second(time.monotonic())
            shown = "?" if per_second is None else f"{human_bytes(int(per_second))}/s"
            bar.update(task, completed=rate.done, rate=shown)

        yield advance
