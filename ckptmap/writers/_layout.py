"""How a writer turns arrays into stored bytes (tf-checkpoint-format.md §5.1, §5.2).

Numeric tensors are their C-order element bytes in the bundle's byte order
(§5.1, §5.4): :func:`numeric_bytes`. String tensors are given as ``bytes`` or
``str`` elements (:func:`string_items`); their stored layout and CRC are the
codec :mod:`ckptmap.formats.string_layout`. Everything here is vectorized
with numpy; nothing opens files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ckptmap.dtypes import DType
from ckptmap.errors import UsageError

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
