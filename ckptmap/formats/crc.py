"""CRC-32C, the masked form TensorFlow stores (tf-checkpoint-format.md §2.2), and combining.

Values returned by :func:`crc32c` are plain (unmasked) CRCs; an index stores
:func:`mask_crc` of them, so that a CRC of bytes holding CRCs stays well mixed.

``crc32c_combine(crc_a, crc_b, len_b)`` is the CRC-32C of ``A + B`` given only
``crc(A)``, ``crc(B)`` and ``len(B)``; it lets a copy that reads every source
byte once give each output piece its CRC and still check the CRC of every
source entry the pieces were cut from.

The method is the classic one (as in zlib's ``crc32_combine``): appending
``len_b`` zero bytes to ``A`` is a linear map on the 32-bit CRC register over
GF(2), i.e. a 32x32 bit matrix; ``crc(A + B) = zeros(len_b) * crc(A) xor crc(B)``
(the pre- and post-inversion of the standard CRC cancel out). The matrix for
``2**k`` zero bytes is the square of the one for ``2**(k-1)``; these are
computed once and cached, so a combine costs at most one matrix-vector product
per set bit of ``len_b`` (about 1,000 Python operations for a gigabyte).

Values are unmasked CRCs (what ``google_crc32c.value`` returns), not the masked
form stored in a TensorFlow index.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import google_crc32c

from ckptmap.errors import UsageError

__all__ = [
    "CRC_MASK_DELTA",
    "crc32c",
    "crc32c_combine",
    "crc32c_concat",
    "mask_crc",
    "unmask_crc",
]

CRC_MASK_DELTA = 0xA282EAD8  # §2.2
_COPY_BELOW = 1 << 16  # smaller buffers are copied to bytes: no numpy import for an index block


def crc32c(data: Any, crc: int = 0) -> int:
    """CRC-32C of the bytes of ``data`` (any contiguous buffer), continuing from ``crc``.

    ``google_crc32c.extend`` takes only buffers without a release hook: a
    ``memoryview`` or ``bytearray`` is copied when small and viewed through
    numpy (no copy) when large, so listing a checkpoint never imports numpy.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    if isinstance(data, bytes):
        return int(google_crc32c.extend(crc, data))
    view = memoryview(data)
    if view.nbytes < _COPY_BELOW:
        return int(google_crc32c.extend(crc, view.tobytes()))
    import numpy as np

    return int(google_crc32c.extend(crc, np.frombuffer(view, dtype=np.uint8)))


def mask_crc(crc: int) -> int:
    """Mask a CRC the way TensorFlow stores it (rotate right by 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Invert :func:`mask_crc`."""
    rot = (masked - CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# -- combining: the CRC of a concatenation from the CRCs of its parts
# CRC-32C (Castagnoli) polynomial, bit-reflected.
_POLY = 0x82F63B78

# A matrix is 32 columns: column i is the image of the register value 1 << i.
_Matrix = tuple[int, ...]


def _times(matrix: _Matrix, vector: int) -> int:
    """The matrix applied to a 32-bit vector over GF(2)."""
    out = 0
    i = 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _square(matrix: _Matrix) -> _Matrix:
    """The matrix multiplied by itself."""
    return tuple(_times(matrix, column) for column in matrix)


def _one_zero_bit() -> _Matrix:
    """The operator for feeding one zero bit into the (reflected) register."""
    return (_POLY, *(1 << (i - 1) for i in range(1, 32)))


def _one_zero_byte() -> _Matrix:
    matrix = _one_zero_bit()
    for _ in range(3):  # 1 -> 2 -> 4 -> 8 bits
        matrix = _square(matrix)
    return matrix


# _ZEROS[k]: the operator for appending 2**k zero bytes.
_ZEROS: list[_Matrix] = [_one_zero_byte()]


def _zeros(k: int) -> _Matrix:
    while len(_ZEROS) <= k:
        _ZEROS.append(_square(_ZEROS[-1]))
    return _ZEROS[k]


def crc32c_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """The CRC-32C of ``A + B`` from ``crc(A)``, ``crc(B)`` and ``len(B)``.

    Args:
        crc_a: unmasked CRC-32C of the first part.
        crc_b: unmasked CRC-32C of the second part.
        len_b: length of the second part in bytes (``>= 0``).

    Returns:
        The unmasked CRC-32C of the concatenation.

    Raises:
        UsageError: if ``len_b`` is negative.

    Example:
        >>> import google_crc32c
        >>> a, b = b"hello ", b"world"
        >>> crc32c_combine(google_crc32c.value(a), google_crc32c.value(b), len(b)) == (
        ...     google_crc32c.value(a + b))
        True
    """
    if len_b < 0:
        raise UsageError(f"crc32c_combine: len_b must not be negative, not {len_b}")
    crc = crc_a & 0xFFFFFFFF
    k = 0
    while len_b:
        if len_b & 1:
            crc = _times(_zeros(k), crc)
        len_b >>= 1
        k += 1
    return crc ^ (crc_b & 0xFFFFFFFF)


def crc32c_concat(parts: Iterable[tuple[int, int]]) -> int:
    """The CRC-32C of consecutive parts given as ``(crc, length)`` pairs, in order.

    The CRC of no parts (the empty string) is 0.
    """
    crc = 0
    for part_crc, length in parts:
        crc = crc32c_combine(crc, part_crc, length)
    return crc
