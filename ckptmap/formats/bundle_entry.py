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
value fits its field's type, and the shape is the raw bytes of field 2,
decoded by the caller.
"""

from __future__ import annotations

__all__ = ["PlainEntry", "plain_entry_fields"]

# dtype, shape (raw TensorShapeProto bytes), shard_id, offset, size, crc32c (masked)
PlainEntry = tuple[int, bytes, int, int, int, int]

_CRC_TAG = 0x35  # field 6, wire type 5 (fixed32)
_SHAPE_FIELD = 2  # wire type 2 (length-delimited); fields 1, 3, 4, 5 are varints (wire type 0)
_LAST_VARINT_FIELD = 5
_INT32_FIELDS = (1, 3)  # dtype (an enum) and shard_id are int32
_MAX_SHIFT = 56  # at most 9 varint bytes: values below 2**63, which every field holds as is


def plain_entry_fields(data: bytes) -> PlainEntry | None:
    """The fields of an unsliced entry in TensorFlow's layout, or ``None`` for any other bytes.

    Example:
        >>> plain_entry_fields(bytes.fromhex("0801120412020804 2010 2810 35b96f57d8"))
        (1, b'\\x12\\x02\\x08\\x04', 0, 16, 16, 3629608889)
    """
    n = len(data)
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
