"""Byte-level pieces shared by the tensor-bundle reader and writer.

Masked CRC32C (tf-checkpoint-format.md §2.2), varints (§2.1), the table
constants (§3) and the OrderedCode encoding of slice keys (§6.4). Nothing here
opens files.
"""

from __future__ import annotations

from collections.abc import Sequence

import google_crc32c

# §3.7: the last 8 bytes of every .index file.
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C
MAX_BLOCK_HANDLE_SIZE = 20  # two varint64
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1
# §2.2
CRC_MASK_DELTA = 0xA282EAD8
# §4.1: the tensor-bundle format version this code reads and writes.
BUNDLE_VERSION = 1


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (0 to start).

    ``google_crc32c.extend`` takes only read-only buffers; other buffers are
    viewed (not copied) through numpy.
    """
    if isinstance(data, bytes):
        return int(google_crc32c.extend(crc, data))
    import numpy as np  # only for non-bytes buffers; listing stays numpy-free

    return int(google_crc32c.extend(crc, np.frombuffer(data, dtype=np.uint8)))


def mask_crc(crc: int) -> int:
    """Mask a CRC the way TensorFlow stores it (rotate right by 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Invert :func:`mask_crc`."""
    rot = (masked - CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 of a non-negative integer."""
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# ---------------------------------------------------------------------------
# OrderedCode (§6.4): the slice keys of partitioned tensors.
# ---------------------------------------------------------------------------

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


def encode_num_increasing(value: int) -> bytes:
    """OrderedCode ``NumIncreasing``: a length byte, then the big-endian bytes."""
    payload = value.to_bytes(8, "big").lstrip(b"\x00")
    return bytes([len(payload)]) + payload


def encode_string(data: bytes) -> bytes:
    """OrderedCode ``String``: ``00`` and ``ff`` escaped, then the ``00 01`` terminator."""
    return _escape(data) + b"\x00\x01"


def _escape(data: bytes) -> bytes:
    if b"\x00" not in data and b"\xff" not in data:
        return data
    out = bytearray()
    for byte in data:
        if byte == 0x00:
            out += b"\x00\xff"
        elif byte == 0xFF:
            out += b"\xff\x00"
        else:
            out.append(byte)
    return bytes(out)


def encode_signed_num_increasing(value: int) -> bytes:
    """OrderedCode ``SignedNumIncreasing`` of a signed 64-bit integer."""
    x = value if value >= 0 else ~value
    n = x.bit_length() // 7 + 1
    raw = bytearray(value.to_bytes(n, "big", signed=True))
    first, second = _SIGNED_HEADER[n - 1]
    raw[0] ^= first
    if n > 1:
        raw[1] ^= second
    return bytes(raw)


def decode_signed_num_increasing(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a ``SignedNumIncreasing`` at ``buf[pos]``; returns ``(value, next_pos)``.

    Raises:
        ValueError: if the bytes end early.
    """
    if pos >= len(buf):
        raise ValueError("truncated signed number")
    negative = buf[pos] < 0x80
    flip = 0xFF if negative else 0x00
    b0 = buf[pos] ^ flip
    # count the 1-bits after the sign bit: n - 1
    ones = 0
    bit = 0x40
    while bit and b0 & bit:
        ones += 1
        bit >>= 1
    if ones == 7:
        if pos + 1 >= len(buf):
            raise ValueError("truncated signed number")
        b1 = buf[pos + 1] ^ flip
        bit = 0x80
        while bit and b1 & bit:
            ones += 1
            bit >>= 1
    n = ones + 1
    if pos + n > len(buf):
        raise ValueError("truncated signed number")
    raw = int.from_bytes(bytes(b ^ flip for b in buf[pos : pos + n]), "big")
    payload_bits = 8 * n - n - 1
    value = raw & ((1 << payload_bits) - 1)
    if negative:
        value = -value - 1
    return value, pos + n


def encode_slice_key(name: bytes, extents: Sequence[tuple[int, int]]) -> bytes:
    """The index key of one stored slice (``EncodeTensorNameSlice``).

    Args:
        name: the full tensor's key, as bytes.
        extents: ``(start, length)`` per dimension; ``length = -1`` for a whole
            dimension (spelled ``-`` in a slice spec, an empty ``Extent`` on disk).
    """
    parts = [encode_num_increasing(0), encode_string(name), encode_num_increasing(len(extents))]
    for start, length in extents:
        parts.append(encode_signed_num_increasing(start))
        parts.append(encode_signed_num_increasing(length))
    return b"".join(parts)
