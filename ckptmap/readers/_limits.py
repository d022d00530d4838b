"""What can be the shape of a real tensor, for the readers of model descriptions.

A graph or a JSON spec names shapes as plain integers, so a damaged or hostile
file can claim a dimension of ``2**70`` or a rank of a thousand. Such a shape is
refused here, once, before anything is planned from it:

* a dimension is ``-1`` (unknown, where the caller allows it) or from 0 to
  :data:`MAX_DIM`; anything else is malformed input (:class:`GraphError`);
* the element count (the product of the known dimensions) is at most
  :data:`MAX_ELEMENTS`, else the input is malformed (:class:`GraphError`);
* the rank is at most :data:`MAX_RANK`, numpy's limit; a higher rank is
  unsupported (:class:`UnsupportedInputError`).

Every message starts with ``where``, which names the file and the key.
"""

from __future__ import annotations

from collections.abc import Sequence

from ckptmap.errors import GraphError, UnsupportedInputError

MAX_RANK = 64  # numpy's NPY_MAXDIMS
MAX_DIM = 2**62
MAX_ELEMENTS = 2**62
UNKNOWN_DIM = -1


def check_shape(shape: Sequence[int], where: str, *, unknown_ok: bool = False) -> None:
    """Raise unless ``shape`` can be the shape of a real tensor.

    Args:
        shape: the dimensions.
        where: the file and key, for the message (``graph.pbtxt: key 'emb'``).
        unknown_ok: allow ``-1`` (an unknown dimension, as in a graph's shape attr).

    Raises:
        UnsupportedInputError: if the rank is above :data:`MAX_RANK`.
        GraphError: if a dimension is negative (other than an allowed ``-1``) or
            above :data:`MAX_DIM`, or the element count is above :data:`MAX_ELEMENTS`.
    """
    if len(shape) > MAX_RANK:
        raise UnsupportedInputError(
            f"{where}: rank {len(shape)} is more than ckptmap supports "
            f"(at most {MAX_RANK} dimensions, numpy's limit)"
        )
    count = 1
    for axis, dim in enumerate(shape):
        if dim == UNKNOWN_DIM and unknown_ok:
            continue
        if dim < 0:
            allowed = " (only -1, unknown, may be negative)" if unknown_ok else ""
            raise GraphError(
                f"{where}: dimension {axis} is {dim}, negative{allowed}; "
                "no tensor has such a shape (the file is corrupt)"
            )
        if dim > MAX_DIM:
            raise GraphError(
                f"{where}: dimension {axis} is {_show(dim)}, beyond 2**62; "
                "no tensor has such a shape (the file is corrupt)"
            )
        count *= dim
    if count > MAX_ELEMENTS:
        raise GraphError(
            f"{where}: the shape has {_show(count)} elements, beyond 2**62; "
            "no tensor has such a shape (the file is corrupt)"
        )


def _show(value: int) -> str:
    """An integer for a message: in full below 2**100, else its size as a power of two."""
    return str(value) if value.bit_length() <= 100 else f"about 2**{value.bit_length() - 1}"
