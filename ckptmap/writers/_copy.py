"""Reading source shards for copies: CRC passes and file-to-file copies in the kernel.

Sources are opened read-only, once each. CRCs are computed through one reused
4 MiB buffer, so memory does not grow with tensor size. Bytes are moved with
``os.copy_file_range``; where the kernel or file system cannot (``EXDEV``,
``ENOSYS``, ...), with ``os.sendfile``; failing that, through the same buffer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from ckptmap.errors import CorruptCheckpointError, InputError, MissingInputError
from ckptmap.formats.crc import crc32c
from ckptmap.formats.string_layout import (
    StringLayoutError,
    check_layout,
    decode_lengths,
    require_lengths,
)
from ckptmap.storage.input_files import open_input

log = logging.getLogger(__name__)

CHUNK_SIZE = 4 * 1024 * 1024
_MAX_KERNEL_COPY = 1 << 30  # bytes per copy_file_range / sendfile call
# Errors after which a copy method is abandoned for the next one.
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ETXTBSY}
_METHODS = ("copy_file_range", "sendfile", "buffer")


@dataclass(frozen=True, slots=True)
class Source:
    """One open source file (read-only)."""

    path: Path
    fd: int


class SourceEnded(Exception):
    """A source file ended inside the range being copied (it changed meanwhile)."""

    def __init__(self, source: Source, position: int) -> None:
        super().__init__(position)
        self.source = source
        self.position = position


def truncated(source: Source, where: str, position: int) -> CorruptCheckpointError:
    """The error for a source that ends inside a tensor."""
    return CorruptCheckpointError(
        source.path,
        f"{where}: the file ends at byte {position}, inside the tensor; "
        "the checkpoint is truncated, copy it again",
    )


class SourceFiles:
    """The source files of one writer, with the reused buffer and copy fallbacks.

    ``where`` arguments name the tensor in error messages (``tensor 'a/b'``).
    """

    def __init__(self) -> None:
        self._open: dict[Path, Source] = {}
        self._buffer: bytearray | None = None
        self._methods = list(_METHODS)

    def open(self, src: str | os.PathLike[str]) -> Source:
        """Open ``src`` read-only (once; later calls reuse the descriptor).

        Raises:
            MissingInputError: if it does not exist.
            InputError: if it cannot be read.
        """
        path = Path(os.path.abspath(os.fspath(src)))
        found = self._open.get(path)
        if found is not None:
            return found
        try:
            fd = open_input(path, path.parent)  # regular files inside the model folder only
        except FileNotFoundError:
            raise MissingInputError(path, "source data file not found") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read the source: {err.strerror or err}") from err
        source = Source(path, fd)
        self._open[path] = source
        return source

    def close(self) -> None:
        for source in self._open.values():
            with contextlib.suppress(OSError):  # read-only: nothing to lose
                os.close(source.fd)
        self._open.clear()

    def check_range(self, source: Source, offset: int, size: int, where: str) -> None:
        """Raise :class:`CorruptCheckpointError` if the range ends past the file's end."""
        try:
            length = os.fstat(source.fd).st_size
        except OSError as err:
            raise InputError(f"{source.path}: cannot read the source: {err.strerror}") from err
        if offset + size > length:
            raise CorruptCheckpointError(
                source.path,
                f"{where}: bytes {offset}..{offset + size} lie past the end of the file "
                f"({length} bytes); the checkpoint is truncated, copy it again",
            )

    # -- CRC passes ---------------------------------------------------------------------------

    def crc_ranges(self, pieces: Sequence[tuple[Source, int, int]], where: str) -> int:
        """CRC32C of the concatenated ranges."""
        crc = 0
        for source, offset, size in pieces:
            crc = self._crc_range(source, offset, size, where, crc)
        return crc

    def crc_strings(
        self, source: Source, offset: int, size: int, count: int, byte_order: str, where: str
    ) -> int:
        """The entry CRC of a stored string tensor of ``count`` elements (§5.2), checked.

        Only the lengths (at most 10 bytes per element) are held in memory.

        Raises:
            CorruptCheckpointError: if the bytes are not a valid string tensor.
        """
        if count == 0 and size == 0:
            return 0
        import numpy as np

        view = memoryview(self._chunk_buffer())
        head = bytearray()
        pos, end = offset, offset + size
        try:
            while True:
                got = self._read(source, pos, min(CHUNK_SIZE, end - pos), view, where)
                head += view[:got]
                pos += got
                found = decode_lengths(np.frombuffer(head, np.uint8), count)
                if found is not None or pos >= end:
                    break
            header_len, lengths = require_lengths(found, len(head))
            crc = check_layout(memoryview(head), header_len, lengths, size, byte_order)
        except StringLayoutError as err:
            raise CorruptCheckpointError(
                source.path,
                f"{where}: bytes {offset}..{end} are not a valid string tensor ({err}); "
                "the source checkpoint is corrupt",
            ) from None
        crc = crc32c(memoryview(head)[header_len:], crc)
        del head
        return self._crc_range(source, pos, end - pos, where, crc)

    def _crc_range(self, source: Source, offset: int, size: int, where: str, crc: int) -> int:
        import numpy as np

        buf = self._chunk_buffer()
        view = memoryview(buf)
        arr = np.frombuffer(buf, np.uint8)
        pos, end = offset, offset + size
        while pos < end:
            got = self._read(source, pos, min(CHUNK_SIZE, end - pos), view, where)
            crc = int(google_crc32c.extend(crc, arr[:got]))
            pos += got
        return crc

    def _read(self, source: Source, pos: int, want: int, view: memoryview, where: str) -> int:
        try:
            got = os.preadv(source.fd, [view[:want]], pos)
        except OSError as err:
            raise InputError(f"{source.path}: cannot read {where}: {err.strerror}") from err
        if got <= 0:
            raise truncated(source, where, pos)
        return got

    def _chunk_buffer(self) -> bytearray:
        if self._buffer is None:
            self._buffer = bytearray(CHUNK_SIZE)
        return self._buffer

    # -- copies -------------------------------------------------------------------------------

    def copy(self, source: Source, offset: int, size: int, dst_fd: int, dst: int) -> None:
        """Copy ``size`` bytes at ``offset`` of ``source`` to ``dst_fd`` at ``dst``.

        The destination's file position is unspecified afterwards.

        Raises:
            SourceEnded: if the source ends early.
            OSError: for any other failure.
        """
        done = 0
        while done < size:
            method = self._methods[0]
            want = min(size - done, _MAX_KERNEL_COPY)
            try:
                if method == "copy_file_range":
                    got = os.copy_file_range(source.fd, dst_fd, want, offset + done, dst + done)
                elif method == "sendfile":
                    os.lseek(dst_fd, dst + done, os.SEEK_SET)
                    got = os.sendfile(dst_fd, source.fd, offset + done, want)
                else:
                    got = self._buffer_copy(source, offset + done, dst_fd, dst + done, want)
            except OSError as err:
                if method != "buffer" and err.errno in _UNSUPPORTED:
                    log.debug("%s unavailable (%s); falling back", method, err)
                    self._methods.pop(0)
                    continue
                raise
            if got <= 0:
                raise SourceEnded(source, offset + done)
            done += got

    def _buffer_copy(
        self, source: Source, src_pos: int, dst_fd: int, dst_pos: int, want: int
    ) -> int:
        view = memoryview(self._chunk_buffer())
        got = os.preadv(source.fd, [view[: min(want, CHUNK_SIZE)]], src_pos)
        written = 0
        while written < got:
            written += os.pwrite(dst_fd, view[written:got], dst_pos + written)
        return got
