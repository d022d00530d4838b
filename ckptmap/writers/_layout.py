"""How tensors are stored in ``.data`` shards, and their CRC32C (tf-checkpoint-format.md §5).

Numeric tensors are their C-order element bytes in the bundle's byte order
(§5.1, §5.4). String tensors are ``n`` length varints, a 4-byte masked checksum
of the lengths, then the string bytes (§5.2); their entry CRC covers the lengths
fed as uint32, the checksum bytes and the string bytes, not the varints.
Everything here is vectorized with numpy; nothing opens files.
"""

from __future__ import annotations

import struct
from typing import Any

import google_crc32c
import numpy as np
from numpy.typing import NDArray

from ckptmap._format import mask_crc, unmask_crc
from ckptmap.dtypes import DType
from ckptmap.errors import UsageError

MAX_VARINT64_BYTES = 10


class StringLayoutError(Exception):
    """Stored string bytes do not follow §5.2 (callers translate it for the user)."""


def extend_crc(crc: int, data: Any) -> int:
    """Extend a CRC32C over any buffer (bytes, memoryview, numpy array) without copying it."""
    if isinstance(data, bytes):
        return int(google_crc32c.extend(crc, data))
    return int(google_crc32c.extend(crc, np.frombuffer(data, np.uint8)))


# -- numeric tensors (§5.1) ------------------------------------------------------------------


def numeric_bytes(
    arr: NDArray[Any], dtype: DType, byte_order: str, where: str
) -> NDArray[np.uint8]:
    """The stored bytes of a numeric array as a flat uint8 array (a view when possible).

    Raises:
        UsageError: if the array's numpy dtype is not ``dtype``'s.
    """
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype != dtype.numpy:
        raise UsageError(
            f"{where}: array dtype {arr.dtype} does not match {dtype.name} "
            f"(numpy {dtype.numpy}); cast it first, e.g. array.astype(...)"
        )
    flat = np.ascontiguousarray(arr).reshape(-1)
    if byte_order == ">" and dtype.itemsize > 1:
        unit = dtype.itemsize // 2 if dtype.numpy.kind == "c" else dtype.itemsize
        flat = flat.view(f"<u{unit}").byteswap()
    return flat.view(np.uint8)


# -- string tensors (§5.2) -------------------------------------------------------------------


def string_items(arr: NDArray[Any], where: str) -> list[bytes]:
    """The elements of a string array as bytes (``str`` encoded as UTF-8), in C order.

    Raises:
        UsageError: for elements that are neither bytes nor str.
    """
    out: list[bytes] = []
    for item in arr.reshape(-1).tolist():
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, str):
            try:
                out.append(item.encode("utf-8", "surrogateescape"))
            except UnicodeEncodeError:
                raise UsageError(f"{where}: string {item!r} is not valid UTF-8") from None
        elif isinstance(item, bytearray | memoryview):
            out.append(bytes(item))
        else:
            raise UsageError(
                f"{where}: a string tensor holds a {type(item).__name__}, expected bytes or str"
            )
    return out


def _encode_varints(values: NDArray[np.uint64]) -> bytes:
    """Concatenated LEB128 varints of a uint64 array."""
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
    """CRC32C of the string lengths, each fed as uint32 (uint64 if larger)."""
    if lengths.size == 0 or int(lengths.max()) <= 0xFFFFFFFF:
        return extend_crc(0, lengths.astype(f"{byte_order}u4"))
    crc = 0
    for n in lengths.tolist():
        crc = extend_crc(crc, struct.pack(byte_order + ("I" if n <= 0xFFFFFFFF else "Q"), n))
    return crc


def encode_strings(items: list[bytes], byte_order: str) -> tuple[list[bytes], int, int]:
    """The stored form of ``items``: ``(chunks, total size, unmasked entry CRC)``."""
    lengths = np.fromiter((len(s) for s in items), dtype=np.uint64, count=len(items))
    varints = _encode_varints(lengths)
    lengths_crc = length_crc(lengths, byte_order)
    checksum = struct.pack(byte_order + "I", mask_crc(lengths_crc))
    body = b"".join(items)
    crc = extend_crc(extend_crc(lengths_crc, checksum), body)
    return [varints, checksum, body], len(varints) + 4 + len(body), crc


def decode_lengths(u8: NDArray[np.uint8], count: int) -> tuple[int, NDArray[np.uint64]] | None:
    """Decode the ``count`` length varints at the start of ``u8``.

    Returns:
        ``(header_len, lengths)``, or ``None`` if ``u8`` ends inside the lengths.

    Raises:
        StringLayoutError: for an over-long varint.
    """
    if count == 0:
        return 0, np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero(u8[: MAX_VARINT64_BYTES * count] < 0x80)[:count]
    if ends.size < count:
        if u8.size >= MAX_VARINT64_BYTES * count:
            raise StringLayoutError("over-long string length varint")
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    widths = ends - starts + 1
    if int(widths.max()) > MAX_VARINT64_BYTES:
        raise StringLayoutError("over-long string length varint")
    header_len = int(ends[-1]) + 1
    payload = (u8[:header_len] & 0x7F).astype(np.uint64)
    within = np.arange(header_len) - np.repeat(starts, widths)
    lengths = np.add.reduceat(payload << (7 * within).astype(np.uint64), starts)
    return header_len, lengths


def require_lengths(
    found: tuple[int, NDArray[np.uint64]] | None, available: int
) -> tuple[int, NDArray[np.uint64]]:
    """The decoded lengths, which must be followed by the 4 checksum bytes.

    Raises:
        StringLayoutError: if the bytes end too early.
    """
    if found is None or available < found[0] + 4:
        raise StringLayoutError("the bytes end inside the string lengths or their checksum")
    return found


def check_layout(
    head: memoryview, header_len: int, lengths: NDArray[np.uint64], size: int, byte_order: str
) -> int:
    """Check sizes and the length checksum; return the running CRC after the lengths.

    ``head`` holds at least the first ``header_len + 4`` stored bytes.

    Raises:
        StringLayoutError: if the lengths disagree with ``size`` or the checksum.
    """
    if lengths.size and int(lengths.max()) > size:
        raise StringLayoutError("a string length exceeds the tensor's size")
    expected = header_len + 4 + int(lengths.sum())
    if expected != size:
        raise StringLayoutError(f"the string lengths add up to {expected} bytes, not {size}")
    (stored,) = struct.unpack_from(byte_order + "I", head, header_len)
    lengths_crc = length_crc(lengths, byte_order)
    if unmask_crc(stored) != lengths_crc:
        raise StringLayoutError("the string length checksum does not match the lengths")
    return lengths_crc


def string_crc(data: memoryview, count: int, byte_order: str) -> int:
    """The unmasked entry CRC of stored string bytes, checking their layout.

    Raises:
        StringLayoutError: if the bytes do not follow §5.2.
    """
    if count == 0 and len(data) == 0:
        return 0
    found = decode_lengths(np.frombuffer(data, np.uint8), count)
    header_len, lengths = require_lengths(found, len(data))
    lengths_crc = check_layout(data, header_len, lengths, len(data), byte_order)
    return extend_crc(lengths_crc, data[header_len:])
