"""The wire layout of a ``BundleEntryProto`` as TensorFlow writes it (tf-checkpoint-format.md §4.2).

TensorFlow serialises an entry's fields in field-number order and leaves out
those at their default: ``dtype`` (1, varint), ``shape`` (2, a
``TensorShapeProto``), ``shard_id`` (3), ``offset`` (4), ``size`` (5, varints),
``crc32c`` (6, fixed32), ``slices`` (7). :func:`plain_entry_fields` reads an
entry of exactly that layout without slices, several times faster than a
protobuf parse; it answers ``None`` for anything else (slices, a field out of
order or repeated, an unknown field, a 10-byte varint, a truncation), which
the caller then parses with protobuf. For the entries it accepts, the values
are the ones protobuf would give: no field repeats (so nothing merges), every
value fits its field's type, and the shape is the raw bytes of field 2.
:func:`plain_shape_dims` reads those bytes when they are a ``TensorShapeProto``
as TensorFlow writes it: one ``dim`` (field 2) per dimension, holding only its
``size`` (field 1, left out when 0); ``None`` for anything else (a dimension
name, ``unknown_rank``, a negative size), which protobuf then decides.
:func:`plain_sliced_entry` reads the entry of a partitioned tensor as
TensorFlow writes it: ``dtype``, ``shape``, then one ``slices`` message per
stored slice, each an ``extent`` (field 1) per dimension holding ``start``
(1, left out when 0) and ``length`` (2, the ``has_length`` oneof).
"""

from __future__ import annotations

import re

__all__ = [
    "PlainEntry",
    "PlainExtents",
    "plain_entry_fields",
    "plain_shape_dims",
    "plain_sliced_entry",
]

# dtype, shape (raw TensorShapeProto bytes), shard_id, offset, size, crc32c (masked)
PlainEntry = tuple[int, bytes, int, int, int, int]
# one slice: (start, length) per dimension, length -1 where the extent has none
PlainExtents = tuple[tuple[int, int], ...]

_CRC_TAG = 0x35  # field 6, wire type 5 (fixed32)
_SHAPE_FIELD = 2  # wire type 2 (length-delimited); fields 1, 3, 4, 5 are varints (wire type 0)
_LAST_VARINT_FIELD = 5
_INT32_FIELDS = (1, 3)  # dtype (an enum) and shard_id are int32
_MAX_SHIFT = 56  # at most 9 varint bytes: values below 2**63, which every field holds as is
_INT32_LIMIT = 2**31
# What follows the shape in the common layout: shard_id, offset, size (each a varint
# of at most 9 bytes, each optional) and the crc32c, then nothing.
_TAIL = re.compile(
    rb"(?:\x18([\x80-\xff]{0,8}[\x00-\x7f]))?(?:\x20([\x80-\xff]{0,8}[\x00-\x7f]))?"
    rb"(?:\x28([\x80-\xff]{0,8}[\x00-\x7f]))?(?:\x35(.{4}))?",
    re.DOTALL,
)


def _varint(data: bytes | None) -> int:
    """The value of a whole varint of at most 9 bytes (``None``: an absent field, 0).

    Byte ``i`` holds bits ``7i .. 7i+6`` of the value in its low 7 bits: read as one
    little-endian number, those bits shifted right by ``i`` land in place.
    """
    if data is None:
        return 0
    n = len(data)
    if n == 1:
        return data[0]
    x = int.from_bytes(data, "little")
    if n == 2:
        return (x & 0x7F) | ((x >> 1) & 0x3F80)
    if n == 3:
        return (x & 0x7F) | ((x >> 1) & 0x3F80) | ((x >> 2) & 0x1FC000)
    if n == 4:  # offsets below 256 MiB
        return (x & 0x7F) | ((x >> 1) & 0x3F80) | ((x >> 2) & 0x1FC000) | ((x >> 3) & 0xFE00000)
    if n == 5:  # offsets below 32 GiB
        return (
            (x & 0x7F)
            | ((x >> 1) & 0x3F80)
            | ((x >> 2) & 0x1FC000)
            | ((x >> 3) & 0xFE00000)
            | ((x >> 4) & 0x7F0000000)
        )
    value = x & 0x7F
    for i in range(1, n):
        value |= (x >> i) & (0x7F << (7 * i))
    return value


def plain_entry_fields(data: bytes) -> PlainEntry | None:
    """The fields of an unsliced entry in TensorFlow's layout, or ``None`` for any other bytes.

    Example:
        >>> plain_entry_fields(bytes.fromhex("0801120412020804 2010 2810 35b96f57d8"))
        (1, b'\\x12\\x02\\x08\\x04', 0, 16, 16, 3629608889)
    """
    n = len(data)
    # The common case: a one-byte dtype and a shape shorter than 128 bytes, then
    # the tail; the same values as the general loop below, which decides the rest.
    if n >= 4 and data[0] == 0x08 and data[2] == 0x12 and data[1] < 0x80 and data[3] < 0x80:
        head = 4 + data[3]
        tail = _TAIL.fullmatch(data, head) if head <= n else None
        if tail is not None:
            shard, offset, size, crc = tail.groups()
            shard_id = 0 if shard is None else _varint(shard)
            if shard_id < _INT32_LIMIT:
                return (
                    data[1],
                    data[4:head],
                    shard_id,
                    _varint(offset),
                    _varint(size),
                    0 if crc is None else int.from_bytes(crc, "little"),
                )
    pos = 0
    last = 0
    values = [0, 0, 0, 0, 0, 0]  # by field number - 1; the shape is kept apart
    shape = b""
    while pos < n:
        tag = data[pos]
        pos += 1
        if tag == _CRC_TAG:
            if last >= 6 or pos + 4 > n:
                return None
            values[5] = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
            last = 6
            continue
        field = tag >> 3
        wire = tag & 7
        if field <= last or field > _LAST_VARINT_FIELD or wire != (field == _SHAPE_FIELD) * 2:
            return None
        last = field
        if pos >= n:
            return None
        value = data[pos]
        pos += 1
        if value >= 0x80:
            value &= 0x7F
            shift = 7
            while True:
                if pos >= n or shift > _MAX_SHIFT:
                    return None
                byte = data[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
        if field == _SHAPE_FIELD:
            if value > n - pos:
                return None
            shape = data[pos : pos + value]
            pos += value
        elif field in _INT32_FIELDS and value >= 2**31:
            return None  # protobuf would keep the low 32 bits, as a signed number
        else:
            values[field - 1] = value
    return values[0], shape, values[2], values[3], values[4], values[5]


def plain_shape_dims(data: bytes) -> tuple[int, ...] | None:
    """The dimensions of a ``TensorShapeProto`` in TensorFlow's layout, or ``None``.

    Example:
        >>> plain_shape_dims(bytes.fromhex("12020804 1200 12030880 01"))
        (4, 0, 128)
        >>> plain_shape_dims(b"")  # a scalar
        ()
        >>> plain_shape_dims(bytes.fromhex("1801")) is None  # unknown_rank: left to protobuf
        True
    """
    dims = []
    pos, n = 0, len(data)
    while pos < n:
        end = _message_end(data, pos, n, 0x12)
        if end is None:
            return None
        if end == pos + 2:
            dims.append(0)  # an empty dim: size 0
        else:
            size = _field(data, pos + 2, end, 0x08)  # the size varint must fill the dim
            if size is None or size[1] != end:
                return None
            dims.append(size[0])
        pos = end
    return tuple(dims)


def _message_end(data: bytes, pos: int, end: int, tag: int) -> int | None:
    """Where the embedded message of field ``tag`` at ``pos`` ends (it starts at ``pos + 2``).

    ``None`` if another tag is there, or its length is not one byte, or the
    message runs past ``end``.
    """
    if pos + 1 >= end or data[pos] != tag or data[pos + 1] >= 0x80:
        return None
    stop = pos + 2 + data[pos + 1]
    return stop if stop <= end else None


def _field(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int] | None:
    """The varint of field ``tag`` at ``pos`` (at most 9 bytes) and the position after it.

    ``None`` if another tag is there, or the varint is cut by ``end`` or too long.
    """
    if pos >= end or data[pos] != tag:
        return None
    start = pos + 1
    pos = start
    while pos < end and data[pos] >= 0x80:
        pos += 1
    if pos >= end or pos - start >= 9:
        return None
    return _varint(data[start : pos + 1]), pos + 1


def _extents(data: bytes, pos: int, end: int) -> PlainExtents | None:
    """The extents of the ``TensorSliceProto`` in ``data[pos:end]``, or ``None``."""
    extents = []
    while pos < end:
        stop = _message_end(data, pos, end, 0x0A)
        if stop is None:
            return None
        pos += 2
        start = length = None
        if pos < stop and data[pos] == 0x08:
            start = _field(data, pos, stop, 0x08)
            if start is None:
                return None
            pos = start[1]
        if pos < stop:
            length = _field(data, pos, stop, 0x10)
            if length is None or length[1] != stop:
                return None
            pos = stop
        extents.append((0 if start is None else start[0], -1 if length is None else length[0]))
    return tuple(extents)


def plain_sliced_entry(data: bytes) -> tuple[int, bytes, tuple[PlainExtents, ...]] | None:
    """The dtype, raw shape and slices of a partitioned tensor's entry, or ``None``.

    ``None`` for any other layout (a field out of order or repeated, any data
    field, a length of 128 bytes or more, a truncation): protobuf decides.

    Example:
        >>> plain_sliced_entry(bytes.fromhex("0801 1204 12020804 3a04 0a021002 3a06 0a0408021002"))
        (1, b'\\x12\\x02\\x08\\x04', (((0, 2),), ((2, 2),)))
    """
    n = len(data)
    dtype = _field(data, 0, n, 0x08)
    if dtype is None or dtype[0] >= _INT32_LIMIT:
        return None
    shape_end = _message_end(data, dtype[1], n, 0x12)
    if shape_end is None:
        return None
    shape = data[dtype[1] + 2 : shape_end]
    pos = shape_end
    slices = []
    while pos < n:
        end = _message_end(data, pos, n, 0x3A)
        if end is None:
            return None
        extents = _extents(data, pos + 2, end)
        if extents is None:
            return None
        slices.append(extents)
        pos = end
    if not slices:
        return None
    return dtype[0], shape, tuple(slices)
