"""The index key of one stored slice: TensorFlow's ``EncodeTensorNameSlice`` (§6.4).

A partitioned tensor has a full entry under its own key and one entry per
stored slice under a key built with OrderedCode: ``NumIncreasing(0)``, the
tensor's key as an OrderedCode ``String``, ``NumIncreasing(rank)``, then
``SignedNumIncreasing`` start and length per dimension (length ``-1`` for a
whole dimension). Every slice key therefore begins with byte ``00``, which no
tensor key does (keys are non-empty and sorted as unsigned bytes).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

__all__ = [
    "SLICE_KEY_START",
    "decode_slice_key",
    "encode_slice_key",
    "is_slice_key",
    "key_label",
    "slice_key_tensor",
    "sliced_name",
]

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
    terminator = raw.find(b"\x00\x01", 1)
    plain = raw[1:terminator]
    if terminator > 0 and b"\x00" not in plain and b"\xff" not in plain:
        return plain  # nothing escaped: the loop below would copy these bytes as they are
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


def decode_slice_key(raw: bytes) -> tuple[bytes, list[tuple[int, int]]] | None:
    """The tensor key and ``(start, length)`` extents of a slice key; ``None`` if malformed.

    Example:
        >>> decode_slice_key(encode_slice_key(b"w", [(0, 4), (4, -1)]))
        (b'w', [(0, 4), (4, -1)])
    """
    name = slice_key_tensor(raw)
    if name is None:
        return None
    pos = 1 + len(_string(name))
    if pos >= len(raw) or raw[pos] > 8:  # NumIncreasing: 0 (rank 0: one byte 00) to 8 bytes
        return None
    size = raw[pos]
    rank = int.from_bytes(raw[pos + 1 : pos + 1 + size], "big")
    pos += 1 + size
    extents: list[tuple[int, int]] = []
    for _ in range(rank):
        start, pos = _signed_num(raw, pos)
        length, pos = _signed_num(raw, pos)
        if start is None or length is None:
            return None
        extents.append((start, length))
    return (name, extents) if pos == len(raw) else None


def sliced_name(name: str, extents: Sequence[tuple[int, int]] | None) -> str:
    """How messages name a stored slice: ``name[slice spec]`` (``w[0,4:-]``), else ``name``.

    The spec is TensorFlow's per-dimension ``start,length`` with ``-`` for a
    whole dimension. A scalar's only slice (rank 0, as V1 checkpoints store
    it) is the tensor itself: ``name``.

    >>> sliced_name("w", [(0, 4), (0, -1)])
    'w[0,4:-]'
    >>> sliced_name("global_step", [])
    'global_step'
    """
    if not extents:
        return name
    spec = ":".join("-" if length == -1 else f"{start},{length}" for start, length in extents)
    return f"{name}[{spec}]"


def key_label(key: str | bytes) -> str:
    """An index key as messages show it: the tensor key, or ``name[slice spec]`` for a slice key.

    Never the raw slice key (its ``00`` bytes and OrderedCode numbers); a
    malformed slice key shows as ``slice key <hex>``.

    >>> key_label(encode_slice_key(b"w", [(0, 4), (0, -1)]))
    'w[0,4:-]'
    """
    raw = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
    if not is_slice_key(raw):
        return raw.decode("utf-8", "backslashreplace")
    decoded = decode_slice_key(raw)
    if decoded is None:
        return f"slice key {raw.hex()}"
    name, extents = decoded
    return sliced_name(name.decode("utf-8", "backslashreplace"), extents)


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


@functools.lru_cache(maxsize=256)  # ranks: a handful of values
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


def _signed_num(raw: bytes, pos: int) -> tuple[int | None, int]:
    """Decode one ``SignedNumIncreasing`` at ``pos``: (value or None if malformed, next pos)."""
    if pos >= len(raw):
        return None, pos
    head = raw[pos] << 8 | (raw[pos + 1] if pos + 1 < len(raw) else 0)
    if not head & 0x8000:  # a negative number: the length is coded by leading zeros
        head ^= 0xFFFF
    n = 16 - (~head & 0xFFFF).bit_length()  # the leading ones give the length
    if not 1 <= n <= len(_SIGNED_HEADER) or pos + n > len(raw):
        return None, pos
    data = bytearray(raw[pos : pos + n])
    first, second = _SIGNED_HEADER[n - 1]
    data[0] ^= first
    if n > 1:
        data[1] ^= second
    return int.from_bytes(data, "big", signed=True), pos + n


@functools.lru_cache(maxsize=4096)  # starts and lengths repeat across a model's slices
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
