"""Constants of the ``.index`` table and its varints (tf-checkpoint-format.md §2.1, §3, §4.1).

The table is LevelDB's sorted-table format; :mod:`ckptmap.readers._table`
decodes it and :mod:`ckptmap.writers._table` builds it from these facts.
"""

from __future__ import annotations

__all__ = [
    "BLOCK_TRAILER_SIZE",
    "BUNDLE_VERSION",
    "FOOTER_SIZE",
    "MAX_BLOCK_HANDLE_SIZE",
    "NO_COMPRESSION",
    "SNAPPY_COMPRESSION",
    "MAX_VARINT32_BYTES",
    "MAX_VARINT64_BYTES",
    "TABLE_MAGIC",
    "encode_varint",
    "read_varint",
]

TABLE_MAGIC = 0xDB4775248B80FB57  # §3.7: the last 8 bytes of every .index file
FOOTER_SIZE = 48  # §3.7
BLOCK_TRAILER_SIZE = 5  # §3.2: compression type byte + masked CRC32C
MAX_BLOCK_HANDLE_SIZE = 20  # §3.3: two varint64
NO_COMPRESSION = 0  # §3.2
SNAPPY_COMPRESSION = 1  # §3.2
BUNDLE_VERSION = 1  # §4.1: the tensor-bundle format version this code reads and writes


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 of a non-negative integer (§2.1).

    Raises:
        ValueError: for a negative number.

    Example:
        >>> encode_varint(300).hex()
        'ac02'
    """
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


MAX_VARINT32_BYTES = 5  # §2.1
MAX_VARINT64_BYTES = 10


def read_varint(
    data: bytes | memoryview, pos: int, limit: int, max_bytes: int = MAX_VARINT64_BYTES
) -> tuple[int, int] | None:
    """The unsigned varint at ``data[pos]`` and the offset after it (§2.1).

    ``None`` if it runs to ``limit`` or past ``max_bytes`` bytes unfinished.

    Example:
        >>> read_varint(bytes.fromhex("ac02ff"), 0, 3)
        (300, 2)
    """
    if pos < limit:
        byte = data[pos]
        if byte < 0x80:  # the common one-byte case, without the loop
            return byte, pos + 1
    result = 0
    shift = 0
    for i in range(pos, min(limit, pos + max_bytes)):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i + 1
        shift += 7
    return None
