"""CRC-32C and the masked form TensorFlow stores (tf-checkpoint-format.md §2.2).

Values returned by :func:`crc32c` are plain (unmasked) CRCs; an index stores
:func:`mask_crc` of them, so that a CRC of bytes holding CRCs stays well mixed.
"""

from __future__ import annotations

from typing import Any

import google_crc32c

__all__ = ["CRC_MASK_DELTA", "crc32c", "mask_crc", "unmask_crc"]

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
