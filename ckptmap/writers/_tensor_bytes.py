"""The dense bytes of a tensor, streamed: what the array-file writers (safetensors, npz) copy.

Both formats store a tensor as its elements in C order, little-endian, whole
(partitioned variables merged). :class:`TensorBytes` produces exactly those
bytes for any key of any :class:`~ckptmap.readers.source.Source`, one bounded
block at a time, so memory never grows with a tensor's size:

* **byte-copied**: a TensorFlow checkpoint whose tensor is stored whole, or
  cut along its first axis only (each slice is then one contiguous run of the
  merged tensor), is copied as its stored bytes: locally by the kernel
  (:class:`~ckptmap.writers._copy.SourceFiles`; the CRC32C pass over the same
  bytes runs in one worker thread alongside, and :meth:`TensorBytes.finish`
  waits for it), at a URL through byte-range reads; a big-endian checkpoint is
  byte-swapped block by block. The stored CRC32C of every piece is checked
  before the caller commits, so a damaged checkpoint never becomes an array file.
* **assembled**: any other slice layout, and every other source (zarr3,
  safetensors, npz), is read as arrays (:meth:`Source.read_box`) in row blocks
  of at most ``block_bytes``.
"""

from __future__ import annotations

import collections
import functools
import math
import mmap
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ckptmap.errors import CorruptCheckpointError, OutputError
from ckptmap.formats.crc import crc32c, mask_crc
from ckptmap.formats.slice_key import key_label
from ckptmap.readers.source import can_copy_bytes
from ckptmap.split import box_of
from ckptmap.writers._copy import SourceEnded, SourceFiles, truncated

if TYPE_CHECKING:
    from ckptmap.readers.source import Source
    from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry

__all__ = ["DEFAULT_BLOCK_BYTES", "TensorBytes", "Writeback", "pwrite_all"]

DEFAULT_BLOCK_BYTES = 4 * 1024 * 1024  # one read or write moves at most this many bytes
_CRC_WINDOW = 16 * 1024 * 1024  # bytes of a data file mapped at once for a CRC32C pass
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start write-out of the range's dirty pages, no wait

Box = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class _Piece:
    """One stored entry that is a contiguous run of the merged tensor's bytes."""

    entry: TensorEntry
    offset: int  # where its bytes start in the merged tensor


class TensorBytes:
    """Streams the merged, C-order, little-endian bytes of the tensors of one source.

    Attributes:
        source: the checkpoint read.
        block_bytes: the most bytes held at once per read.
        tensor_bytes: bytes produced so far.
    """

    def __init__(self, source: Source, block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
        self.source = source
        self.block_bytes = block_bytes
        self.tensor_bytes = 0
        self._files = SourceFiles()
        self._specs = source.specs()
        self._crc_files = SourceFiles()  # the worker's own descriptors and buffer
        self._pool: ThreadPoolExecutor | None = None
        self._checks: collections.deque[Future[None]] = collections.deque()

    def finish(self) -> None:
        """Wait for the CRC32C checks of every kernel copy made so far.

        Raises:
            CorruptCheckpointError: if a stored CRC32C does not match, or a
                data file ends inside a tensor.
            InputError: if a data file cannot be read.
        """
        while self._checks:
            self._checks.popleft().result()

    def close(self) -> None:
        """Stop the CRC worker and close the source files opened for kernel copies."""
        for check in self._checks:
            check.cancel()
        self._checks.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._files.close()
        self._crc_files.close()

    def byte_copied(self, key: str) -> bool:
        """Whether ``key``'s stored bytes are copied as they are (else it is assembled)."""
        return self._pieces(key) is not None

    # -- into a file, at a position (safetensors) ----------------------------------

    def copy_into(self, key: str, fd: int, position: int) -> None:
        """Write ``key``'s bytes to the open file ``fd`` starting at ``position``.

        Raises:
            CorruptCheckpointError: if a stored CRC32C does not match, or a data
                file ends inside the tensor.
            MissingInputError, InputError: if the source cannot be read.
            OutputError: if ``fd`` cannot be written.
        """
        pieces = self._pieces(key)
        source = self.source
        if pieces is not None and can_copy_bytes(source) and self._kernel_copies(source):
            for piece in pieces:
                self._kernel_copy(source, piece, fd, position + piece.offset)
            return
        at = position
        for block in self.blocks(key):
            pwrite_all(fd, block, at)
            at += len(block)

    def kernel_runs(self, key: str) -> list[tuple[int, int, int]] | None:
        """The runs :meth:`copy_into` copies by kernel for ``key``, else ``None``.

        Each run is ``(offset in its data file, offset in the tensor, size)``;
        a writer can place the tensor so the two offsets agree (see
        ``writers/safetensors.py``: kernel copies between equal offsets modulo
        2 MiB are faster).
        """
        pieces = self._pieces(key)
        source = self.source
        if pieces is None or not can_copy_bytes(source) or not self._kernel_copies(source):
            return None
        return [(p.entry.offset, p.offset, p.entry.size) for p in pieces]

    # -- as blocks, in order (npz) -----------------------------------------------------

    def blocks(self, key: str) -> Iterator[memoryview]:
        """``key``'s bytes in order, as blocks of at most ``block_bytes`` (a scalar: one).

        Raises:
            as :meth:`copy_into`, but never ``OutputError``.
        """
        pieces = self._pieces(key)
        source = self.source
        if pieces is not None and can_copy_bytes(source):
            for piece in pieces:
                yield from self._stored_blocks(source, piece.entry)
        else:
            yield from self._assembled_blocks(key)

    # -- planning ----------------------------------------------------------------------

    def _pieces(self, key: str) -> list[_Piece] | None:
        """The stored entries of ``key`` in output order, if they are contiguous runs of it."""
        source = self.source
        if not can_copy_bytes(source):
            return None
        entry = source.entry(key)
        source.check_entry(entry)  # every slice inside its data file; slices tile the tensor
        if not entry.slices:
            return [_Piece(entry, 0)]
        shape = entry.shape
        inner = math.prod(shape[1:]) * entry.dtype.itemsize
        pieces = []
        for spec, part in source.slice_entries(key):
            box = box_of(spec, shape)
            if any(box[a] != (0, shape[a]) for a in range(1, len(shape))):
                return None  # cut along another axis: assembled
            pieces.append(_Piece(part, box[0][0] * inner))
        return sorted(pieces, key=lambda p: p.offset)

    @staticmethod
    def _kernel_copies(source: Checkpoint) -> bool:
        return source.location.is_local and source.byte_order == "<"

    # -- byte copies -------------------------------------------------------------------

    def _kernel_copy(self, ckpt: Checkpoint, piece: _Piece, fd: int, at: int) -> None:
        entry = piece.entry
        if entry.size == 0:
            return
        where = f"tensor {key_label(entry.key)!r}"
        src = self._files.open(ckpt.shard_path(entry.shard_id))
        self._files.check_range(src, entry.offset, entry.size, where)
        while self._checks and self._checks[0].done():  # fail early on a damaged tensor
            self._checks.popleft().result()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ckptmap-crc")
        self._checks.append(self._pool.submit(self._check_stored, ckpt, entry))
        try:
            self._files.copy(src, entry.offset, entry.size, fd, at)
        except SourceEnded as err:
            raise truncated(err.source, where, err.position) from None
        except OSError as err:
            raise OutputError(f"cannot write {where} ({err.strerror or err})") from err
        self.tensor_bytes += entry.size

    def _check_stored(self, ckpt: Checkpoint, entry: TensorEntry) -> None:
        """The CRC32C pass over one stored entry (in the worker thread).

        The bytes are mapped a window at a time and checksummed in place (no
        copy out of the page cache); each window is unmapped before the next,
        so the mapping adds at most one window to the resident memory.

        google_crc32c takes only buffers without a release hook (a memoryview
        of a map is refused). A ctypes array over the map is one, without
        importing numpy (0.15-0.3 s of start-up) for it; ctypes needs the map
        writable, so it is private (``ACCESS_COPY``) and never written, which
        leaves its pages the page cache's.
        """
        where = f"tensor {key_label(entry.key)!r}"
        src = self._crc_files.open(ckpt.shard_path(entry.shard_id))
        _check_crc(ckpt, entry, self._mapped_crc(src, entry.offset, entry.size, where))

    def _mapped_crc(self, src: Any, offset: int, size: int, where: str) -> int:
        import ctypes

        import google_crc32c

        crc, pos, end = 0, offset, offset + size
        while pos < end:
            base = pos - pos % mmap.ALLOCATIONGRANULARITY
            length = min(_CRC_WINDOW, end - base)
            self._crc_files.check_range(src, base, length, where)  # never map past the end
            with mmap.mmap(src.fd, length, offset=base, access=mmap.ACCESS_COPY) as window:
                view = (ctypes.c_char * (length - (pos - base))).from_buffer(window, pos - base)
                crc = int(google_crc32c.extend(crc, view))
                del view  # the mapping closes only without exported buffers
            pos = base + length
        return crc

    def _stored_blocks(self, ckpt: Checkpoint, entry: TensorEntry) -> Iterator[memoryview]:
        import numpy as np

        itemsize = entry.dtype.itemsize
        unit = itemsize // 2 if entry.dtype.numpy.kind == "c" else itemsize
        swap = ckpt.byte_order == ">" and unit > 1
        shard = ckpt.shard_name(entry.shard_id)
        step = max(itemsize, self.block_bytes // itemsize * itemsize)
        crc = 0
        for start in range(0, entry.size, step):
            data = ckpt.location.read(shard, entry.offset + start, min(step, entry.size - start))
            crc = crc32c(data, crc)
            if swap:
                data = np.frombuffer(data, f">u{unit}").byteswap().tobytes()
            self.tensor_bytes += len(data)
            yield memoryview(data)
        if entry.size:
            _check_crc(ckpt, entry, crc)

    # -- assembled ---------------------------------------------------------------------

    def _assembled_blocks(self, key: str) -> Iterator[memoryview]:
        import numpy as np

        spec = self._specs[key]
        shape, itemsize = spec.shape, spec.dtype.itemsize
        for block in _row_blocks(shape, itemsize, self.block_bytes):
            values: Any = np.ascontiguousarray(self._read_box(key, block))
            if values.dtype.byteorder == ">":
                values = values.byteswap().view(values.dtype.newbyteorder("<"))
            data = memoryview(values.reshape(-1).view(np.uint8))
            self.tensor_bytes += len(data)
            yield data

    def _read_box(self, key: str, box: Box) -> Any:
        source = self.source
        if can_copy_bytes(source):
            return source.read_box(key, box, verify=True)
        return source.read_box(key, box)


def _row_blocks(shape: tuple[int, ...], itemsize: int, block_bytes: int) -> Iterator[Box]:
    """Boxes covering ``shape`` in C order, each a contiguous run of at most ``block_bytes``.

    A run is cut along the first axis whose inner part fits (leading axes one
    index at a time); a scalar is one empty box; a zero-size tensor none.
    """
    if not shape:
        yield ()
        return
    if math.prod(shape) == 0:
        return
    axis = next(a for a in range(len(shape)) if math.prod(shape[a + 1 :]) * itemsize <= block_bytes)
    run = max(1, block_bytes // (math.prod(shape[axis + 1 :]) * itemsize))
    tail = tuple((0, d) for d in shape[axis + 1 :])

    def outer(prefix: tuple[tuple[int, int], ...], depth: int) -> Iterator[Box]:
        if depth == axis:
            for start in range(0, shape[axis], run):
                yield (*prefix, (start, min(shape[axis], start + run)), *tail)
            return
        for i in range(shape[depth]):
            yield from outer((*prefix, (i, i + 1)), depth + 1)

    yield from outer((), 0)


def _check_crc(ckpt: Checkpoint, entry: TensorEntry, crc: int) -> None:
    if mask_crc(crc) != entry.crc32c:
        raise CorruptCheckpointError(
            ckpt.shard_url(entry.shard_id),
            f"tensor {key_label(entry.key)!r}: CRC32C mismatch: stored 0x{entry.crc32c:08x},"
            f" computed 0x{mask_crc(crc):08x} (the data file is corrupt; copy it again from its"
            " source)",
        )


def pwrite_all(fd: int, data: memoryview, at: int) -> None:
    """Write all of ``data`` to ``fd`` at ``at`` (``OutputError`` if it cannot)."""
    done = 0
    try:
        while done < len(data):
            done += os.pwrite(fd, data[done:], at + done)
    except OSError as err:
        raise OutputError(f"cannot write the output ({err.strerror or err})") from err


class Writeback:
    """Starts the disk writes of each copied range of one output file, in a worker thread.

    :meth:`start` hands a range to the worker, which asks the kernel to begin
    writing it out (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; that call
    can block while the device queue is full, hence the thread). The disk then
    writes what was copied while the next tensors are copied, and the
    ``fsync`` at the end of the file waits only for what is still in flight
    (without it, all of a 1 GB file: 0.4-0.6 s on the bench machine).

    A hint only: where the call does not exist nothing happens, and its errors
    are ignored (the ``fsync`` that follows reports a real write error). Use it
    as a context manager; leaving it waits for the worker, so the file can be
    closed.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._call = _sync_file_range()
        self._pool: ThreadPoolExecutor | None = None

    def start(self, offset: int, length: int) -> None:
        """Have the worker start writing ``length`` bytes at ``offset`` to disk."""
        if self._call is None or length <= 0:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ckptmap-writeback")
        self._pool.submit(self._call, self.fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    def __enter__(self) -> Writeback:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # no C library handle, or a libc without it
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call
