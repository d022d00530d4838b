"""CRC32C of the old byte runs a remap cuts pieces from: each stored old entry read once.

Used by the local byte path (:mod:`ckptmap.migration.write`): the stored CRC
of every old entry that ``ranges`` pieces are cut from is checked in the same
pass that computes the CRC of each cut run, and (with ``verify``) the entry of
every numeric piece copied unchanged is checked the same way before its copy
is committed.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import google_crc32c
import numpy as np

from ckptmap.errors import CorruptCheckpointError, InputError, MissingInputError
from ckptmap.formats.crc import crc32c_combine, unmask_crc
from ckptmap.formats.slice_key import sliced_name
from ckptmap.migration.pieces import Method, Run, SourcePiece, TensorPlan
from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry
from ckptmap.storage.input_files import open_input


def stored_entry(ckpt: Checkpoint, key: str, piece: SourcePiece) -> TensorEntry:
    """The index entry holding the bytes of one stored old piece."""
    if piece.slice is None:
        return ckpt.entry(key)
    for spec, entry in ckpt.slice_entries(key):
        if spec.extents == piece.slice.extents:
            return entry
    raise CorruptCheckpointError(
        ckpt.index_path, f"{piece_label(key, piece)} has no entry in the index"
    )


_CRC_BUFFER = 4 << 20


def piece_label(key: str, piece: SourcePiece) -> str:
    """``tensor 'k'`` or ``tensor 'k[0,4:-]'`` for messages about a stored old piece."""
    extents = None if piece.slice is None else piece.slice.extents
    return f"tensor {sliced_name(key, extents)!r}"


class SourceCrcs:
    """CRC32C of the byte runs that ``ranges`` pieces take from old entries; one read each.

    For one tensor at a time (:meth:`prepare`), the runs taken from each stored old
    piece cut its entry into segments. The first time a run of an entry is needed,
    one buffered pass over the entry computes the CRC of every segment; the
    entry's stored CRC is checked by combining them all (``crc32c_combine``), and
    each run's CRC is combined from the segments it spans. So every source byte
    is read once, whatever the number of output pieces cut from it, and memory
    stays at one reused buffer.

    With ``verify`` false only the segments inside runs are read and the entry's
    CRC is not checked.
    """

    def __init__(self, ckpt: Checkpoint, verify: bool) -> None:
        self._ckpt = ckpt
        self._verify = verify
        self._key = ""
        self._runs: dict[SourcePiece, list[tuple[int, int]]] = {}
        self._scans: dict[SourcePiece, tuple[TensorEntry, Future[dict[int, tuple[int, int]]]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._buffer: bytearray | None = None

    def prepare(self, tensor: TensorPlan) -> None:
        """Collect the runs of ``tensor``'s ``ranges`` pieces and start reading their entries.

        The entries are read in the order the pieces need them by one worker
        thread, so reading and checking overlap the copies of earlier pieces.
        """
        self._settle()
        self._key = tensor.source
        for piece in tensor.pieces:
            if piece.method is Method.COPY and self._verify and not tensor.dtype.is_string:
                # Copied unchanged, but checked all the same: the scan of the
                # whole entry checks its stored CRC (strings: see LocalBytes.copy).
                assert piece.source is not None
                self._runs.setdefault(piece.source, [])
            if piece.method is Method.RANGES:
                for run in piece.runs:
                    self._runs.setdefault(run.source, []).append(
                        (run.offset, run.offset + run.size)
                    )
        for source in self._runs:  # dicts keep first-use order
            entry = stored_entry(self._ckpt, self._key, source)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="ckptmap-crc")
            label = piece_label(self._key, source)
            runs = tuple(self._runs[source])
            self._scans[source] = (entry, self._pool.submit(self._scan, entry, runs, label))

    def run_crc(self, run: Run) -> tuple[TensorEntry, int]:
        """The old entry holding ``run`` and the unmasked CRC32C of the run's bytes.

        Raises:
            CorruptCheckpointError: if the entry's CRC does not match (with
                ``verify``) or its shard ends early.
            InputError: if the shard cannot be read.
        """
        entry, scan = self._scans[run.source]
        segments = scan.result()
        crc, pos, end = 0, run.offset, run.offset + run.size
        while pos < end:
            seg_end, seg_crc = segments[pos]
            crc = crc32c_combine(crc, seg_crc, seg_end - pos)
            pos = seg_end
        return entry, crc

    def check(self, source: SourcePiece) -> None:
        """Wait until the stored piece ``source`` is checked (a ``copy`` piece, with ``verify``).

        Raises:
            CorruptCheckpointError: if its CRC does not match or its shard ends early.
            InputError: if the shard cannot be read.
        """
        self._scans[source][1].result()

    def close(self) -> None:
        """Stop the worker thread (waiting for a read in progress). Idempotent."""
        self._settle()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _settle(self) -> None:
        for _, scan in self._scans.values():
            scan.cancel()
        for _, scan in self._scans.values():
            if not scan.cancelled():
                scan.exception()  # wait; errors of unused scans do not matter
        self._scans.clear()
        self._runs.clear()

    def _scan(
        self, entry: TensorEntry, runs: tuple[tuple[int, int], ...], label: str
    ) -> dict[int, tuple[int, int]]:
        """In the worker thread: CRCs of the segments of one entry, checked against it.

        Returns ``{segment start: (segment end, crc)}`` in bytes from the entry's start.
        """
        cuts = {0, entry.size}
        for start, stop in runs:
            if not 0 <= start <= stop <= entry.size:
                raise CorruptCheckpointError(
                    self._ckpt.index_path,
                    f"{label}: the entry holds {entry.size} bytes, "
                    "too few for its shape; the index is corrupt",
                )
            cuts.update((start, stop))
        bounds = sorted(cuts)
        path = self._ckpt.shard_path(entry.shard_id)
        segments: dict[int, tuple[int, int]] = {}
        whole = 0
        try:
            fd = open_input(path, Path(path).parent)  # regular files inside the folder only
        except FileNotFoundError:
            raise MissingInputError(
                path, "data shard not found (is the checkpoint complete?)"
            ) from None
        except OSError as err:
            raise InputError(f"{path}: cannot read {label}: {err.strerror or err}") from err
        try:
            for start, stop in itertools.pairwise(bounds):
                if start == stop:
                    continue
                if not self._verify and not any(a <= start < b for a, b in runs):
                    continue
                crc = self._crc(fd, path, entry.offset + start, stop - start, label)
                segments[start] = (stop, crc)
                whole = crc32c_combine(whole, crc, stop - start)
        finally:
            os.close(fd)
        if self._verify and whole != unmask_crc(entry.crc32c):
            raise CorruptCheckpointError(
                path,
                f"{label}: CRC32C mismatch in bytes {entry.offset}..{entry.offset + entry.size} "
                "(the old checkpoint is corrupt; restore it from a backup)",
            )
        return segments

    def _crc(self, fd: int, path: Path, offset: int, size: int, label: str) -> int:
        if self._buffer is None:
            self._buffer = bytearray(_CRC_BUFFER)
        view = memoryview(self._buffer)
        arr = np.frombuffer(self._buffer, np.uint8)
        crc, pos, end = 0, offset, offset + size
        while pos < end:
            try:
                got = os.preadv(fd, [view[: min(len(view), end - pos)]], pos)
            except OSError as err:
                raise InputError(f"{path}: cannot read {label}: {err.strerror or err}") from err
            if got <= 0:
                raise CorruptCheckpointError(
                    path,
                    f"{label}: the file ends at byte {pos}, inside the tensor "
                    "(the shard is truncated; copy it again)",
                )
            crc = int(google_crc32c.extend(crc, arr[:got]))
            pos += got
        return crc
