"""Early disk writeback of data shards, so the fsync at commit finds little left to do.

A writer copies a gigabyte in a fraction of a second into the page cache; the
disk then needs longer than that to take it, and :meth:`BundleWriter.commit`
waits for all of it in ``fsync``. Starting the writeback of each shard every
:data:`STEP` bytes while copying goes on overlaps the two.

A background thread starts the writeback: on Linux with
``sync_file_range(SYNC_FILE_RANGE_WRITE)`` (through ``ctypes``), which queues
the dirty pages of a byte range for writing without waiting for them;
elsewhere, or if that call is unavailable, with ``fdatasync``. Neither touches
file offsets (copies use explicit offsets, buffered writes are flushed before
a request), and neither replaces the ``fsync`` at commit: they only make it
shorter. Errors here are ignored (the commit's ``fsync`` reports real ones).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

STEP = 64 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    func.restype = ctypes.c_int

    def start(fd: int, offset: int, nbytes: int) -> None:
        if func(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return start


class Writeback:
    """Tracks bytes written per file descriptor and starts writeback every ``step`` bytes.

    Requests go to one background thread, so a congested disk queue (which makes
    ``sync_file_range`` block) never stalls the copying thread. :meth:`finish`
    must be called before the files are closed.

    Args:
        step: bytes between two writeback requests for one file (0 disables;
            default :data:`STEP`). The environment variable ``CKPTMAP_WRITEBACK``
            set to ``off`` disables early writeback, to ``fdatasync`` makes the
            thread use ``fdatasync`` instead of ``sync_file_range`` (both for
            measuring).
    """

    def __init__(self, step: int | None = None) -> None:
        self._step = STEP if step is None else step
        mode = os.environ.get("CKPTMAP_WRITEBACK", "range")
        if mode == "off":
            self._step = 0
        self._range = _load_sync_file_range() if self._step > 0 and mode == "range" else None
        self._marks: dict[int, int] = {}
        self._jobs: deque[tuple[int, int, int]] = deque()
        self._thread: threading.Thread | None = None
        self._wake = threading.Condition(threading.Lock())
        self._stopping = False

    def due(self, fd: int, size: int) -> bool:
        """Whether :meth:`wrote` would start writeback for ``fd`` at ``size`` bytes."""
        return self._step > 0 and size - self._marks.get(fd, 0) >= self._step

    def wrote(self, fd: int, size: int) -> None:
        """Note that the file ``fd`` now holds ``size`` bytes (all written, not buffered)."""
        if not self.due(fd, size):
            return
        mark = self._marks.get(fd, 0)
        self._marks[fd] = size
        with self._wake:
            if self._stopping:
                return
            self._jobs.append((fd, mark, size - mark))
            self._wake.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ckptmap-writeback", daemon=True)
            self._thread.start()

    def finish(self) -> None:
        """Drop pending requests and wait for the one in progress. Idempotent.

        Afterwards no request touches any file, so one may be closed; later
        :meth:`wrote` calls start writeback again.
        """
        with self._wake:
            self._stopping = True
            self._jobs.clear()
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._marks.clear()
        self._stopping = False

    def _run(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)
        while True:
            with self._wake:
                while not self._jobs and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                fd, offset, nbytes = self._jobs.popleft()
            # Outside the lock, so the writer keeps going; finish() joins this thread,
            # so fd stays open until the call returns. Errors are left to the commit's
            # fsync.
            try:
                if self._range is not None:
                    self._range(fd, offset, nbytes)
                else:
                    sync(fd)
            except OSError as err:
                if self._range is None:
                    continue
                log.debug("sync_file_range failed (%s); using fdatasync", err)
                self._range = None
