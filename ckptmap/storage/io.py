"""Counting the bytes and requests that go to remote stores.

Every remote byte read or written is counted in the :class:`IoCounter` objects
made active by :func:`measure_io`, so a command can report that ``check`` read
only the index. Local files are not counted.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["IoCounter", "count_io", "measure_io"]


@dataclass(slots=True)
class IoCounter:
    """Bytes and requests that went to remote stores (local files are not counted).

    Attributes:
        bytes_read: bytes received.
        reads: read requests made (a zero-length existence probe counts).
        bytes_written: bytes sent.
        writes: write requests made.
    """

    bytes_read: int = 0
    reads: int = 0
    bytes_written: int = 0
    writes: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "bytes_read": self.bytes_read,
            "requests": self.reads,
            "bytes_written": self.bytes_written,
            "writes": self.writes,
        }


_ACTIVE: contextvars.ContextVar[tuple[IoCounter, ...]] = contextvars.ContextVar(
    "ckptmap_io_counters", default=()
)


@contextlib.contextmanager
def measure_io() -> Iterator[IoCounter]:
    """Count the remote bytes read and written inside the ``with`` block.

    Example:
        >>> with measure_io() as io:  # doctest: +SKIP
        ...     inspect_checkpoint("http://host/ckpt/model.ckpt-100")
        >>> io.bytes_read  # doctest: +SKIP
        1694
    """
    counter = IoCounter()
    token = _ACTIVE.set((*_ACTIVE.get(), counter))
    try:
        yield counter
    finally:
        _ACTIVE.reset(token)


def count_io(*, read: int = -1, written: int = -1) -> None:
    """Count one read request of ``read`` bytes and/or one write of ``written`` bytes."""
    for counter in _ACTIVE.get():
        if read >= 0:
            counter.bytes_read += read
            counter.reads += 1
        if written >= 0:
            counter.bytes_written += written
            counter.writes += 1
