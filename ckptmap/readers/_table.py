"""The ``.index`` file of a tensor bundle: a LevelDB-format sorted table.

This module knows blocks, restart arrays, block handles and the footer
(tf-checkpoint-format.md §3); it knows nothing about tensors. Every decoder
takes ``(buf, offset)`` on a ``memoryview`` and returns ``(value, next_offset)``.
Every offset and length read from the file is checked against the bytes that
are really there before anything is sliced, so a damaged or hostile file fails
with :class:`~ckptmap.errors.CorruptCheckpointError`, never with an
``IndexError`` or a huge allocation.

Blocks are stored as they are (type 0, what TensorFlow 2.x writes) or as raw
Snappy (type 1, what TensorFlow 1.x wrote and every release still reads;
§3.2). Snappy is decoded by ``cramjam``, a maintained binding of the Rust
``snap`` crate with wheels for Linux, macOS and Windows on x86-64 and arm64
and no dependencies of its own; the pure-Python ``python-snappy`` needs a C
library at build time and ``snappy`` re-implementations in Python are slow and
unmaintained. Raw Snappy begins with the decompressed length as a varint
(§3.2): it is checked against what the compressed bytes can possibly expand
to before anything is allocated.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from ckptmap.errors import CorruptCheckpointError, MissingInputError
from ckptmap.formats.crc import crc32c, unmask_crc
from ckptmap.formats.table import (
    BLOCK_TRAILER_SIZE,
    FOOTER_SIZE,
    MAX_VARINT32_BYTES,
    MAX_VARINT64_BYTES,
    NO_COMPRESSION,
    SNAPPY_COMPRESSION,
    TABLE_MAGIC,
    read_varint,
)
from ckptmap.storage.input_files import open_input

_U32 = struct.Struct("<I")  # restart offsets, restart count (§3.1), masked CRC (§3.2)
_U64 = struct.Struct("<Q")  # the footer magic (§3.7)
_MAGIC_OFFSET = FOOTER_SIZE - _U64.size  # §3.7: magic in the last 8 bytes
_HANDLES_SIZE = FOOTER_SIZE - _U64.size  # §3.7: two handles, zero padded to 40 bytes
_FIX = "the file is corrupt or truncated; copy it again from its source"
# Raw Snappy's best expansion is a 3-byte copy element producing 64 bytes, so no
# valid stream of n bytes decompresses to more than 64 * n / 3 bytes.
_SNAPPY_MAX_EXPANSION = 22


class TableFormatError(Exception):
    """Internal: a structural problem, translated into CorruptCheckpointError with the path."""


@dataclass(frozen=True, slots=True)
class BlockHandle:
    """Where one block lies in the file (§3.3).

    Attributes:
        offset: the block's first byte.
        size: the block's length, without its 5-byte trailer.
    """

    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Footer:
    """The last 48 bytes of an ``.index`` file (§3.7).

    Attributes:
        metaindex: handle of the (empty) metaindex block.
        index: handle of the index block.
    """

    metaindex: BlockHandle
    index: BlockHandle


@dataclass(frozen=True, slots=True)
class Table:
    """A decoded table: every key with its value, in file order.

    Attributes:
        path: the ``.index`` file.
        keys: the keys as bytes, strictly increasing as unsigned bytes.
        values: the value of each key (views into ``data``, or into the decompressed
            block where a block is Snappy-compressed).
        data: the whole file.
    """

    path: Path
    keys: list[bytes]
    values: list[memoryview]
    data: memoryview


def decode_varint(buf: memoryview, pos: int, limit: int, max_bytes: int) -> tuple[int, int]:
    """Decode an unsigned varint at ``buf[pos]`` that must end before ``limit`` (§2.1).

    Returns:
        ``(value, next_offset)``.

    Raises:
        TableFormatError: if the varint runs past ``limit`` or is longer than ``max_bytes``.
    """
    found = read_varint(buf, pos, limit, max_bytes)
    if found is None:
        end = max(pos, min(limit, pos + max_bytes))
        raise TableFormatError(f"truncated or over-long varint at offset {end}")
    return found


def decode_block_handle(buf: memoryview, pos: int, limit: int) -> tuple[BlockHandle, int]:
    """Decode a ``BlockHandle`` (two varint64) at ``buf[pos]`` (§3.3)."""
    offset, pos = decode_varint(buf, pos, limit, MAX_VARINT64_BYTES)
    size, pos = decode_varint(buf, pos, limit, MAX_VARINT64_BYTES)
    return BlockHandle(offset, size), pos


def decode_footer(buf: memoryview, pos: int) -> tuple[Footer, int]:
    """Decode the 48-byte footer starting at ``buf[pos]`` (§3.7).

    Raises:
        TableFormatError: if the bytes are missing or the magic number is wrong.
    """
    if pos < 0 or pos + FOOTER_SIZE > len(buf):
        raise TableFormatError(
            f"file is {len(buf)} bytes, too short for the {FOOTER_SIZE}-byte table footer"
        )
    (magic,) = _U64.unpack_from(buf, pos + _MAGIC_OFFSET)
    if magic != TABLE_MAGIC:
        raise TableFormatError(
            f"bad table magic 0x{magic:016x} (expected 0x{TABLE_MAGIC:016x}): "
            "not a TensorFlow V2 checkpoint index"
        )
    limit = pos + _HANDLES_SIZE
    metaindex, next_pos = decode_block_handle(buf, pos, limit)
    index, _ = decode_block_handle(buf, next_pos, limit)
    return Footer(metaindex, index), pos + FOOTER_SIZE


def read_block(buf: memoryview, handle: BlockHandle, end: int, what: str) -> memoryview:
    """Return the contents of the block at ``handle`` after checking its trailer (§3.2).

    A Snappy-compressed block is decompressed (its CRC covers the compressed bytes).

    Args:
        buf: the whole file.
        handle: where the block is.
        end: blocks must end (trailer included) at or before this offset.
        what: the block's role, for messages (``"index block"``).

    Raises:
        TableFormatError: if the block lies outside ``[0, end)``, its CRC is
            wrong or its Snappy stream is corrupt.
    """
    start, size = handle.offset, handle.size
    if start + size + BLOCK_TRAILER_SIZE > end:
        raise TableFormatError(
            f"{what} at offset {start} with size {size} runs past the end of the table "
            f"(offset {end})"
        )
    block = buf[start : start + size]
    ctype = buf[start + size]
    (stored,) = _U32.unpack_from(buf, start + size + 1)
    actual = crc32c(bytes(buf[start : start + size + 1]))  # blocks are small: no numpy
    if actual != unmask_crc(stored):
        raise TableFormatError(f"{what} CRC mismatch at offset {start}")
    if ctype == SNAPPY_COMPRESSION:
        return decompress_snappy(block, f"{what} at offset {start}")
    if ctype != NO_COMPRESSION:
        raise TableFormatError(f"{what} at offset {start} has unknown compression type {ctype}")
    return block


def decompress_snappy(block: memoryview, what: str) -> memoryview:
    """Decompress one raw-Snappy block, bounding its size before allocating it (§3.2).

    Raises:
        TableFormatError: if the stated length is more than the bytes can hold
            or the stream does not decode to exactly that length.
    """
    length, _ = decode_varint(block, 0, len(block), MAX_VARINT32_BYTES)
    if length > _SNAPPY_MAX_EXPANSION * len(block):
        raise TableFormatError(
            f"{what}: Snappy block of {len(block)} bytes claims to expand to {length} bytes"
        )
    import cramjam  # some TensorFlow 1.x indexes only: bundles are written uncompressed (§3.2)

    out = bytearray(length)
    try:
        written = cramjam.snappy.decompress_raw_into(block, out)
    except cramjam.DecompressionError:
        raise TableFormatError(f"{what}: the Snappy-compressed block does not decode") from None
    if written != length:
        raise TableFormatError(
            f"{what}: Snappy block decodes to {written} bytes, not the {length} it states"
        )
    return memoryview(out)


def decode_restarts(block: memoryview, pos: int) -> tuple[tuple[int, ...], int]:
    """Decode the restart array at the end of ``block`` (§3.1).

    ``pos`` is ignored except as the lower bound of the array: the array is
    anchored at the block's end. Returns ``(restart offsets, end of entries)``,
    where the second value is where the entries stop.

    Raises:
        TableFormatError: if the count does not fit or an offset is out of range.
    """
    size = len(block)
    if size - pos < _U32.size:
        raise TableFormatError(f"block of {size} bytes is too short for its restart count")
    (count,) = _U32.unpack_from(block, size - _U32.size)
    if count > (size - pos - _U32.size) // _U32.size:
        raise TableFormatError(f"block of {size} bytes cannot hold {count} restart points")
    entries_end = size - _U32.size * (count + 1)
    restarts = struct.unpack_from(f"<{count}I", block, entries_end)
    previous = -1
    for restart in restarts:
        if restart <= previous or restart > max(entries_end - 1, 0):
            raise TableFormatError(f"restart offset {restart} is out of order or out of range")
        previous = restart
    if entries_end and (not restarts or restarts[0] != 0):
        raise TableFormatError("the first restart point of a block must be at offset 0")
    return restarts, entries_end


def decode_block(
    block: memoryview, pos: int, keys: list[bytes], values: list[memoryview], what: str
) -> int:
    """Decode every entry of a block (§3.1) onto ``keys`` and ``values``; its end offset.

    Keys are rebuilt from their prefix compression, and each must be greater
    than the one before it (the first, than the last of ``keys``: a table's
    blocks continue each other); values are views into ``block``. ``what``
    names the block in messages.

    Raises:
        TableFormatError: on any length that does not fit, a restart entry
            that shares bytes with its predecessor, or a key out of order.
    """
    restarts, limit = decode_restarts(block, pos)
    restart_set = frozenset(restarts)
    raw = bytes(block[:limit])  # indexing bytes is faster than a memoryview
    key = b""
    previous = keys[-1] if keys else None
    add_key, add_value = keys.append, values.append
    while pos < limit:
        entry_at = pos
        # The three lengths are one-byte varints in all but huge entries: read
        # them inline, and take the general decoder otherwise.
        if pos + 3 <= limit and raw[pos] < 0x80 and raw[pos + 1] < 0x80 and raw[pos + 2] < 0x80:
            shared, non_shared, value_len = raw[pos], raw[pos + 1], raw[pos + 2]
            pos += 3
        else:
            shared, pos = decode_varint(block, pos, limit, MAX_VARINT32_BYTES)
            non_shared, pos = decode_varint(block, pos, limit, MAX_VARINT32_BYTES)
            value_len, pos = decode_varint(block, pos, limit, MAX_VARINT32_BYTES)
        if shared > len(key) or (shared and entry_at in restart_set):
            raise TableFormatError(
                f"entry at block offset {entry_at} shares {shared} bytes with a "
                f"{len(key)}-byte previous key"
            )
        key_end = pos + non_shared
        value_end = key_end + value_len
        if value_end > limit:
            raise TableFormatError(
                f"entry at block offset {entry_at} ({non_shared} key bytes, {value_len} value "
                f"bytes) runs past the entries' end at {limit}"
            )
        key = key[:shared] + raw[pos:key_end]
        if previous is not None and key <= previous:
            raise TableFormatError(
                f"key {key!r} in {what} is not greater than the key before it "
                "(keys must be sorted and unique)"
            )
        previous = key
        add_key(key)
        add_value(block[key_end:value_end])
        pos = value_end
    return pos


def decode_table(buf: memoryview) -> tuple[list[bytes], list[memoryview]]:
    """Decode a whole table held in ``buf``: footer, index block, data blocks (§3).

    Returns:
        The keys (strictly increasing as unsigned bytes) and their values.

    Raises:
        TableFormatError: on any structural problem.
    """
    footer_at = len(buf) - FOOTER_SIZE
    footer, _ = decode_footer(buf, footer_at)
    index_block = read_block(buf, footer.index, footer_at, "index block")
    handles: list[memoryview] = []
    decode_block(index_block, 0, [], handles, "the index block")
    keys: list[bytes] = []
    values: list[memoryview] = []
    for number, handle_bytes in enumerate(handles):
        handle, _ = decode_block_handle(handle_bytes, 0, len(handle_bytes))
        block = read_block(buf, handle, footer_at, f"data block {number}")
        decode_block(block, 0, keys, values, f"data block {number}")
    return keys, values


def read_table(path: str | os.PathLike[str]) -> Table:
    """Read and decode the ``.index`` file at ``path``.

    Every block's CRC is checked; the whole file is read once (index files
    are small: about 100 bytes per tensor).

    Raises:
        MissingInputError: if the file does not exist.
        CorruptCheckpointError: if the table is damaged, naming the file.
    """
    path = Path(path)
    try:
        fd = open_input(path, path.parent)  # regular files inside the model folder only
        with os.fdopen(fd, "rb") as file:
            data = memoryview(file.read())
    except FileNotFoundError:
        raise MissingInputError(path, "checkpoint index file not found") from None
    except IsADirectoryError:
        raise MissingInputError(path, "is a folder, not a checkpoint index file") from None
    except OSError as err:
        raise CorruptCheckpointError(path, f"cannot read the index file ({err.strerror})") from err
    return decode_index(data, path)


def decode_index(
    data: bytes | memoryview, path: str | os.PathLike[str], where: str | None = None
) -> Table:
    """Decode the bytes of an ``.index`` file read from ``path`` (named ``where`` in messages).

    Raises:
        CorruptCheckpointError: if the table is damaged, naming the file.
    """
    where = where or os.fspath(path)
    view = data if isinstance(data, memoryview) else memoryview(data)
    try:
        keys, values = decode_table(view)
    except TableFormatError as err:
        raise CorruptCheckpointError(where, f"{err} ({_FIX})") from None
    return Table(Path(path), keys, values, view)
