"""A LevelDB-format table builder: the ``.index`` file of a tensor bundle.

This follows TensorFlow's table builder step by step (tf-checkpoint-format.md
§3.8) so that, given the same keys and values, it writes the same bytes as
TensorFlow: 256 KiB data blocks, a restart point every 16 entries, an index
block with a restart at every entry, an empty metaindex block, no compression,
and a 48-byte footer ending in the table magic. Keys are compared as unsigned
bytes, exactly like Python compares ``bytes``.

Nothing here knows about tensors; :mod:`ckptmap.writers.tf_bundle` feeds it the
serialized header and entries.
"""

from __future__ import annotations

import struct
from typing import Protocol

from ckptmap.errors import UsageError
from ckptmap.formats.crc import crc32c, mask_crc
from ckptmap.formats.table import (
    BLOCK_TRAILER_SIZE,
    FOOTER_SIZE,
    NO_COMPRESSION,
    TABLE_MAGIC,
    encode_varint,
)

# §3.8: the parameters TensorFlow uses for bundle indexes.
BLOCK_SIZE = 256 * 1024
RESTART_INTERVAL = 16
INDEX_RESTART_INTERVAL = 1
# table_builder.cc: an entry this many times the block size gets a block of its own.
_OVERLY_LARGE_BLOCK_RATIO = 2
# §3.7: two block handles, zero padded to 40 bytes, then the 8-byte magic.
_HANDLES_SIZE = FOOTER_SIZE - 8

_U32 = struct.Struct("<I")
_MAGIC = struct.Struct("<Q")
_TRAILER = struct.Struct("<BI")  # compression type, masked CRC32C


class BinaryWriter(Protocol):
    """Anything with a ``write(bytes)`` method (an open binary file, ``io.BytesIO``)."""

    def write(self, data: bytes, /) -> int | None: ...


def shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key ``s`` with ``start <= s < limit`` (TensorFlow's ``FindShortestSeparator``).

    If the keys differ at byte ``i`` (not counting one being a prefix of the
    other) and ``start[i] + 1 < limit[i]``, the separator is ``start[:i]`` plus
    that incremented byte; otherwise ``start`` itself.
    """
    common = min(len(start), len(limit))
    i = 0
    while i < common and start[i] == limit[i]:
        i += 1
    if i >= common:
        return start
    byte = start[i]
    if byte < 0xFF and byte + 1 < limit[i]:
        return start[:i] + bytes([byte + 1])
    return start


def short_successor(key: bytes) -> bytes:
    """A short key ``>= key`` (TensorFlow's ``FindShortSuccessor``).

    The first byte that is not ``ff`` is incremented and the rest dropped; a key
    made only of ``ff`` bytes (or empty) is returned unchanged.
    """
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


class _BlockBuilder:
    """Prefix-compressed entries followed by the restart array (§3.1)."""

    __slots__ = ("_buffer", "_counter", "_last_key", "_restart_interval", "_restarts")

    def __init__(self, restart_interval: int) -> None:
        self._restart_interval = restart_interval
        self._buffer = bytearray()
        self._restarts = [0]
        self._counter = 0
        self._last_key = b""

    @property
    def empty(self) -> bool:
        return not self._buffer

    def size_estimate(self) -> int:
        """Bytes the block would take if finished now (TensorFlow's estimate)."""
        return len(self._buffer) + 4 * len(self._restarts) + 4

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self._counter < self._restart_interval:
            last = self._last_key
            limit = min(len(last), len(key))
            while shared < limit and last[shared] == key[shared]:
                shared += 1
        else:
            self._restarts.append(len(self._buffer))
            self._counter = 0
        buf = self._buffer
        buf += encode_varint(shared)
        buf += encode_varint(len(key) - shared)
        buf += encode_varint(len(value))
        buf += key[shared:]
        buf += value
        self._last_key = key
        self._counter += 1

    def finish(self) -> bytes:
        """The block's bytes; the builder is reset for the next block."""
        out = self._buffer
        for offset in self._restarts:
            out += _U32.pack(offset)
        out += _U32.pack(len(self._restarts))
        self._buffer = bytearray()
        self._restarts = [0]
        self._counter = 0
        self._last_key = b""
        return bytes(out)


def _encode_handle(offset: int, size: int) -> bytes:
    return encode_varint(offset) + encode_varint(size)


class TableBuilder:
    """Write a sorted key/value table in TensorFlow's (LevelDB) table format.

    Add keys in strictly increasing unsigned-byte order with :meth:`add`, then
    call :meth:`finish` once. Blocks are written to ``out`` as they fill up, so
    memory stays bounded by one block plus the index.

    Args:
        out: where the bytes go (a binary file opened for writing).
        block_size: target data block size in bytes (TensorFlow: 262144).
        restart_interval: entries between restart points in data blocks
            (TensorFlow: 16). Other values make valid tables that are not
            byte-identical to TensorFlow's; tests use small ones.

    Example:
        >>> import io
        >>> buf = io.BytesIO()
        >>> table = TableBuilder(buf)
        >>> table.add(b"a", b"1")
        >>> table.finish()
        82
    """

    def __init__(
        self,
        out: BinaryWriter,
        *,
        block_size: int = BLOCK_SIZE,
        restart_interval: int = RESTART_INTERVAL,
    ) -> None:
        if block_size < 1 or restart_interval < 1:
            raise UsageError(
                f"table block_size ({block_size}) and restart_interval ({restart_interval}) "
                "must be at least 1"
            )
        self._out = out
        self._block_size = block_size
        self._data_block = _BlockBuilder(restart_interval)
        self._index_block = _BlockBuilder(INDEX_RESTART_INTERVAL)
        self._offset = 0
        self._num_entries = 0
        self._last_key = b""
        self._pending_handle: tuple[int, int] | None = None
        self._finished = False

    @property
    def num_entries(self) -> int:
        """Number of key/value pairs added so far."""
        return self._num_entries

    def add(self, key: bytes, value: bytes) -> None:
        """Append one entry.

        Raises:
            UsageError: if ``key`` is not greater than the previous key, or the
                table is already finished.
        """
        if self._finished:
            raise UsageError("cannot add to a table after finish()")
        if self._num_entries > 0:
            if key <= self._last_key:
                raise UsageError(
                    f"table keys must be strictly increasing: {key!r} after {self._last_key!r}"
                )
            if len(key) + len(value) >= _OVERLY_LARGE_BLOCK_RATIO * self._block_size:
                self._flush()
        if self._pending_handle is not None:
            separator = shortest_separator(self._last_key, key)
            self._index_block.add(separator, _encode_handle(*self._pending_handle))
            self._pending_handle = None
        self._last_key = key
        self._num_entries += 1
        self._data_block.add(key, value)
        if self._data_block.size_estimate() >= self._block_size:
            self._flush()

    def finish(self) -> int:
        """Write the last data block, the metaindex and index blocks and the footer.

        Returns:
            The total size of the table in bytes.
        """
        if self._finished:
            raise UsageError("table finish() called twice")
        self._flush()
        self._finished = True
        metaindex = self._write_block(_BlockBuilder(RESTART_INTERVAL).finish())
        if self._pending_handle is not None:
            successor = short_successor(self._last_key)
            self._index_block.add(successor, _encode_handle(*self._pending_handle))
            self._pending_handle = None
        index = self._write_block(self._index_block.finish())
        handles = _encode_handle(*metaindex) + _encode_handle(*index)
        footer = handles.ljust(_HANDLES_SIZE, b"\x00") + _MAGIC.pack(TABLE_MAGIC)
        self._out.write(footer)
        self._offset += len(footer)
        return self._offset

    def _flush(self) -> None:
        if self._data_block.empty:
            return
        self._pending_handle = self._write_block(self._data_block.finish())

    def _write_block(self, contents: bytes) -> tuple[int, int]:
        """Write a block and its trailer; return its handle ``(offset, size)``."""
        handle = (self._offset, len(contents))
        crc = crc32c(bytes([NO_COMPRESSION]), crc32c(contents))
        self._out.write(contents)
        self._out.write(_TRAILER.pack(NO_COMPRESSION, mask_crc(crc)))
        self._offset += len(contents) + BLOCK_TRAILER_SIZE
        return handle


def build_table(
    items: list[tuple[bytes, bytes]],
    *,
    block_size: int = BLOCK_SIZE,
    restart_interval: int = RESTART_INTERVAL,
) -> bytes:
    """Build a whole table in memory from sorted ``(key, value)`` pairs.

    Raises:
        UsageError: if the keys are not strictly increasing.
    """
    import io

    buf = io.BytesIO()
    table = TableBuilder(buf, block_size=block_size, restart_interval=restart_interval)
    for key, value in items:
        table.add(key, value)
    table.finish()
    return buf.getvalue()
