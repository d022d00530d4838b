"""The index key of one stored slice: TensorFlow's ``EncodeTensorNameSlice`` (§6.4).

A partitioned tensor has a full entry under its own key and one entry per
stored slice under a key built with OrderedCode: ``NumIncreasing(0)``, the
tensor's key as an OrderedCode ``String``, ``NumIncreasing(rank)``, then
``SignedNumIncreasing`` start and length per dimension (length ``-1`` for a
whole dimension). Every slice key therefore begins with byte ``00``, which no
tensor key does (keys are non-empty and sorted as unsigned bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SLICE_KEY_START", "encode_slice_key", "is_slice_key", "slice_key_tensor"]

SLICE_KEY_START = 0x00  # §6.4: NumIncreasing(0) is the single byte 00

# XOR masks for the first two bytes of an n-byte SignedNumIncreasing (n = 1..10).
_SIGNED_HEADER = (
    (0x80, 0x00),
    (0xC0, 0x00),
    (0xE0, 0x00),
    (0xF0, 0x00),
    (0xF8, 0x00),
    (0xFC, 0x00),
    (0xFE, 0x00),
    (0xFF, 0x00),
    (0xFF, 0x80),
    (0xFF, 0xC0),
)


def is_slice_key(raw: bytes) -> bool:
    """True for the index key of a stored slice (not a tensor's own key)."""
    return bool(raw) and raw[0] == SLICE_KEY_START


def slice_key_tensor(raw: bytes) -> bytes | None:
    """The key of the tensor a slice key belongs to; ``None`` if ``raw`` is malformed.

    Only the name is decoded (the OrderedCode ``String`` after the leading
    ``NumIncreasing(0)``); the extents after it are not looked at.

    Example:
        >>> slice_key_tensor(encode_slice_key(b"t_a", [(0, 4), (0, 4)]))
        b't_a'
    """
    if not is_slice_key(raw):
        return None
    name = bytearray()
    pos, end = 1, len(raw)
    while pos + 1 < end:
        byte, following = raw[pos], raw[pos + 1]
        if byte == 0x00 and following == 0x01:
            return bytes(name)
        if byte == 0x00 and following == 0xFF:
            name.append(0x00)
            pos += 2
        elif byte == 0xFF and following == 0x00:
            name.append(0xFF)
            pos += 2
        elif byte in (0x00, 0xFF):
            return None
        else:
            name.append(byte)
            pos += 1
    return None


def encode_slice_key(name: bytes, extents: Sequence[tuple[int, int]]) -> bytes:
    """The index key of one stored slice of the tensor ``name``.

    Args:
        name: the full tensor's key, as bytes.
        extents: ``(start, length)`` per dimension; ``length = -1`` for a whole
            dimension (spelled ``-`` in a slice spec, an empty ``Extent`` on disk).

    Example:
        >>> encode_slice_key(b"t_a", [(0, 4), (0, 4)]).hex(" ")
        '00 74 5f 61 00 01 01 02 80 84 80 84'
    """
    parts = [_num_increasing(0), _string(name), _num_increasing(len(extents))]
    for start, length in extents:
        parts.append(_signed_num_increasing(start))
        parts.append(_signed_num_increasing(length))
    return b"".join(parts)


def _num_increasing(value: int) -> bytes:
    """OrderedCode ``NumIncreasing``: a length byte, then the big-endian bytes."""
    payload = value.to_bytes(8, "big").lstrip(b"\x00")
    return bytes([len(payload)]) + payload


def _string(data: bytes) -> bytes:
    """OrderedCode ``String``: ``00`` and ``ff`` escaped, then the ``00 01`` terminator."""
    if b"\x00" not in data and b"\xff" not in data:
        return data + b"\x00\x01"
    out = bytearray()
    for byte in data:
        if byte == 0x00:
            out += b"\x00\xff"
        elif byte == 0xFF:
            out += b"\xff\x00"
        else:
            out.append(byte)
    return bytes(out) + b"\x00\x01"


def _signed_num_increasing(value: int) -> bytes:
    """OrderedCode ``SignedNumIncreasing`` of a signed 64-bit integer."""
    x = value if value >= 0 else ~value
    n = x.bit_length() // 7 + 1
    raw = bytearray(value.to_bytes(n, "big", signed=True))
    first, second = _SIGNED_HEADER[n - 1]
    raw[0] ^= first
    if n > 1:
        raw[1] ^= second
    return bytes(raw)
