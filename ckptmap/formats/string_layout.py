"""How a string tensor is stored in a data shard (tf-checkpoint-format.md §5.2).

The ``n`` element lengths come first as varints, then a 4-byte checksum (the
masked CRC32C of the lengths fed as uint32 each, uint64 for a length of 2**32
or more, in the bundle's byte order), then every element's bytes in C order.
The entry CRC in the index covers the lengths as fed to the checksum, the
checksum bytes and the element bytes; not the varints.

Both directions live here: :func:`encode_strings` for the writer; for the
readers and for checked copies, :func:`decode_layout` of a whole tensor, made
of :func:`decode_lengths`, :func:`require_lengths` and :func:`check_layout`
(which need the first bytes alone, so a copy can stream the rest), then
:func:`string_crc` and :func:`split_strings`. Lengths are
decoded with numpy, not byte by byte. A layout error is a
:class:`StringLayoutError` whose message names no file: callers add where the
bytes came from. numpy is imported on first use, so the index reader takes
the constants without it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ckptmap.formats.crc import crc32c, mask_crc

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "LENGTH_CHECKSUM_SIZE",
    "MAX_LENGTH_VARINT_BYTES",
    "StringLayoutError",
    "check_layout",
    "decode_layout",
    "decode_lengths",
    "encode_strings",
    "length_crc",
    "require_lengths",
    "split_strings",
    "string_crc",
]

LENGTH_CHECKSUM_SIZE = 4  # §5.2
MAX_LENGTH_VARINT_BYTES = 9  # a 10-byte varint would be a string of 2**63 bytes or more
_U32_MAX = 0xFFFFFFFF


class StringLayoutError(Exception):
    """Stored string bytes do not follow §5.2 (the message names no file)."""


# -- encoding ---------------------------------------------------------------------


def _encode_varints(values: NDArray[np.uint64]) -> bytes:
    """Concatenated LEB128 varints of a uint64 array."""
    import numpy as np

    if values.size == 0:
        return b""
    widest = max(1, (int(values.max()).bit_length() + 6) // 7)
    shifts = (7 * np.arange(widest, dtype=np.uint64))[None, :]
    groups = (values[:, None] >> shifts) & np.uint64(0x7F)
    nbytes = np.ones(values.size, dtype=np.int64)
    for k in range(1, widest):
        nbytes += (values >> np.uint64(7 * k)) != 0
    position = np.arange(widest)[None, :]
    more = position < (nbytes - 1)[:, None]
    encoded = (groups | (more.astype(np.uint64) << np.uint64(7))).astype(np.uint8)
    return bytes(encoded[position < nbytes[:, None]].tobytes())


def length_crc(lengths: NDArray[np.uint64], byte_order: str) -> int:
    """The unmasked CRC32C of the lengths, each fed as uint32 (uint64 if larger)."""

    if lengths.size == 0 or int(lengths.max()) <= _U32_MAX:
        return crc32c(lengths.astype(f"{byte_order}u4"))
    crc = 0
    for n in lengths.tolist():
        crc = crc32c(struct.pack(byte_order + ("I" if n <= _U32_MAX else "Q"), n), crc)
    return crc


def encode_strings(items: list[bytes], byte_order: str) -> tuple[list[bytes], int, int]:
    """The stored form of ``items``: ``(chunks, total size, unmasked entry CRC)``.

    Example:
        >>> chunks, size, _ = encode_strings([b"hi", b""], "<")
        >>> b"".join(chunks).hex(" "), size
        ('02 00 78 27 0b 34 68 69', 8)
    """
    import numpy as np

    lengths = np.fromiter((len(s) for s in items), dtype=np.uint64, count=len(items))
    varints = _encode_varints(lengths)
    lengths_crc = length_crc(lengths, byte_order)
    checksum = struct.pack(byte_order + "I", mask_crc(lengths_crc))
    body = b"".join(items)
    crc = crc32c(body, crc32c(checksum, lengths_crc))
    return [varints, checksum, body], len(varints) + LENGTH_CHECKSUM_SIZE + len(body), crc


# -- decoding ---------------------------------------------------------------------


def decode_lengths(u8: NDArray[np.uint8], count: int) -> tuple[int, NDArray[np.uint64]] | None:
    """Decode the ``count`` length varints at the start of ``u8``.

    Returns:
        ``(header_len, lengths)``: where the varints end and the lengths
        (uint64); ``None`` if ``u8`` ends inside them (read more, or see
        :func:`require_lengths`).

    Raises:
        StringLayoutError: for an over-long varint.
    """
    import numpy as np

    if count == 0:
        return 0, np.zeros(0, dtype=np.uint64)
    scan = u8[: MAX_LENGTH_VARINT_BYTES * count]
    ends = np.flatnonzero(scan < 0x80)[:count]
    if ends.size < count:
        if scan.size >= MAX_LENGTH_VARINT_BYTES * count:
            raise StringLayoutError("a string length is an over-long varint")
        return None
    starts = np.empty(count, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    widths = ends - starts + 1
    if int(widths.max()) > MAX_LENGTH_VARINT_BYTES:
        raise StringLayoutError("a string length is an over-long varint")
    header_len = int(ends[-1]) + 1
    digit = np.arange(header_len, dtype=np.int64) - np.repeat(starts, widths)
    groups = (scan[:header_len] & 0x7F).astype(np.uint64) << (7 * digit).astype(np.uint64)
    return header_len, np.add.reduceat(groups, starts)


def require_lengths(
    found: tuple[int, NDArray[np.uint64]] | None, available: int
) -> tuple[int, NDArray[np.uint64]]:
    """The decoded lengths, which must be followed by the 4 checksum bytes within ``available``.

    Raises:
        StringLayoutError: if the bytes end too early.
    """
    if found is None or available < found[0] + LENGTH_CHECKSUM_SIZE:
        raise StringLayoutError("the bytes end inside the string lengths or their checksum")
    return found


def check_layout(
    head: Any, header_len: int, lengths: NDArray[np.uint64], size: int, byte_order: str
) -> int:
    """Check the lengths against ``size`` and their checksum; return the lengths' unmasked CRC.

    ``head`` holds at least the first ``header_len + 4`` of the ``size`` stored bytes.

    Raises:
        StringLayoutError: if the lengths disagree with ``size`` or the checksum.
    """
    import numpy as np

    stored = size - header_len - LENGTH_CHECKSUM_SIZE
    # compare in float first: the exact uint64 sum of hostile lengths could wrap around
    if lengths.size and (
        int(lengths.max()) > stored
        or float(lengths.sum(dtype=np.float64)) > stored + 1
        or int(lengths.sum()) != stored
    ):
        raise StringLayoutError(f"the string lengths do not add up to the {stored} bytes stored")
    if not lengths.size and stored:
        raise StringLayoutError(f"the string lengths do not add up to the {stored} bytes stored")
    (checksum,) = struct.unpack_from(byte_order + "I", head, header_len)
    lengths_crc = length_crc(lengths, byte_order)
    if checksum != mask_crc(lengths_crc):
        raise StringLayoutError("the string length checksum does not match the lengths")
    return lengths_crc


def decode_layout(data: Any, count: int, byte_order: str) -> tuple[int, NDArray[np.uint64], int]:
    """Decode and check the layout of a whole stored string tensor.

    Returns:
        ``(header_len, lengths, lengths_crc)``; the element bytes start at
        ``header_len + 4``. Zero bytes are the layout of zero elements.

    Raises:
        StringLayoutError: if the bytes do not follow §5.2.
    """
    import numpy as np

    view = memoryview(data).cast("B")
    size = view.nbytes
    if size == 0 and count == 0:
        return 0, np.zeros(0, dtype=np.uint64), 0
    u8 = np.frombuffer(view, dtype=np.uint8)[: max(0, size - LENGTH_CHECKSUM_SIZE)]
    header_len, lengths = require_lengths(decode_lengths(u8, count), size)
    return header_len, lengths, check_layout(view, header_len, lengths, size, byte_order)


def string_crc(data: Any, count: int, byte_order: str) -> int:
    """The unmasked entry CRC of a whole stored string tensor, checking its layout.

    Raises:
        StringLayoutError: if the bytes do not follow §5.2.
    """
    view = memoryview(data).cast("B")
    header_len, _, lengths_crc = decode_layout(view, count, byte_order)
    return crc32c(view[header_len:], lengths_crc)


def split_strings(data: Any, header_len: int, lengths: NDArray[np.uint64]) -> list[bytes]:
    """The elements of a stored string tensor whose layout :func:`decode_layout` checked."""
    import numpy as np

    if not lengths.size:
        return []
    view = memoryview(data).cast("B")
    blob = bytes(view[header_len + LENGTH_CHECKSUM_SIZE :])
    stops = np.cumsum(lengths, dtype=np.uint64).tolist()
    starts = [0, *stops[:-1]]
    return [blob[a:b] for a, b in zip(starts, stops, strict=True)]
