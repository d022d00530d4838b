"""Stored bytes to arrays, and their CRC32C: the values of one bundle entry (§5).

Numeric tensors are their C-order element bytes in the bundle's byte order
(§5.1, §5.4); a little-endian one comes back as a read-only view of the bytes
given (a memory map stays shared). String tensors follow the layout of
:mod:`ckptmap.formats.string_layout`. With ``verify`` the entry's CRC32C is
checked on the way. Errors are made by the caller's ``bad_data`` so that they
name the shard and the tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ckptmap.errors import CorruptCheckpointError
from ckptmap.formats.crc import crc32c, mask_crc
from ckptmap.readers._bundle_index import TensorEntry

if TYPE_CHECKING:
    import numpy as np

BadData = Callable[[TensorEntry, str], CorruptCheckpointError]


def decode_values(
    entry: TensorEntry, view: memoryview, byte_order: str, bad_data: BadData, *, verify: bool
) -> np.ndarray:
    """The read-only array stored in ``view``, the bytes of the data entry ``entry``.

    Raises:
        CorruptCheckpointError: on a bad string layout, or (with ``verify``) a bad CRC.
    """
    if entry.dtype.is_string:
        return _strings(entry, view, byte_order, bad_data, verify=verify)
    if verify:
        check_crc(entry, crc32c(view), bad_data)
    return _numeric(entry, view, byte_order)


def verify_bytes(entry: TensorEntry, view: memoryview, byte_order: str, bad_data: BadData) -> None:
    """Check the CRC32C (and for strings the layout) of an entry's stored bytes.

    Raises:
        CorruptCheckpointError: if they do not match.
    """
    if entry.dtype.is_string:
        _string_layout(entry, view, byte_order, bad_data, verify=True)
    else:
        check_crc(entry, crc32c(view), bad_data)


def check_crc(entry: TensorEntry, actual: int, bad_data: BadData) -> None:
    """Compare an unmasked CRC with the one stored in the entry.

    Raises:
        CorruptCheckpointError: if they differ.
    """
    if mask_crc(actual) != entry.crc32c:
        raise bad_data(
            entry,
            f"CRC32C mismatch: stored 0x{entry.crc32c:08x}, computed 0x{mask_crc(actual):08x}",
        )


def _numeric(entry: TensorEntry, view: memoryview, byte_order: str) -> np.ndarray:
    import numpy as np

    dtype = entry.dtype.numpy
    count = entry.num_elements
    if count == 0:
        empty = np.empty(entry.shape, dtype=dtype)
        empty.flags.writeable = False
        return empty
    unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    if byte_order == "<" or unit == 1:
        return np.frombuffer(view, dtype=dtype, count=count).reshape(entry.shape)
    # §5.4: a big-endian bundle; swap every scalar (each half of a complex).
    swapped = np.frombuffer(view, dtype=np.dtype(f">u{unit}")).astype(f"<u{unit}")
    array = swapped.view(dtype).reshape(entry.shape)
    array.flags.writeable = False
    return array


def _string_layout(
    entry: TensorEntry, view: memoryview, byte_order: str, bad_data: BadData, *, verify: bool
) -> tuple[int, np.ndarray]:
    """Decode and check the layout of a string tensor; ``(header_len, lengths)``."""
    from ckptmap.formats.string_layout import StringLayoutError, decode_layout

    try:
        header_len, lengths, lengths_crc = decode_layout(view, entry.num_elements, byte_order)
    except StringLayoutError as err:
        raise bad_data(entry, str(err)) from None
    if verify:
        check_crc(entry, crc32c(view[header_len:], lengths_crc), bad_data)
    return header_len, lengths


def _strings(
    entry: TensorEntry, view: memoryview, byte_order: str, bad_data: BadData, *, verify: bool
) -> np.ndarray:
    import numpy as np

    from ckptmap.formats.string_layout import split_strings

    header_len, lengths = _string_layout(entry, view, byte_order, bad_data, verify=verify)
    out = np.empty(len(lengths), dtype=object)
    out[:] = split_strings(view, header_len, lengths)
    result = out.reshape(entry.shape)
    result.flags.writeable = False
    return result
