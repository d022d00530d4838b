"""TensorFlow ``DataType`` values and their numpy equivalents, in one table.

Facts from tf-checkpoint-format.md §4.4: every numeric type is stored in C order
with the byte order of the bundle header; ``int4``/``uint4`` take one byte per
element; strings have their own layout (§5.2) and map to numpy ``object`` arrays
of ``bytes``. Quantized types share a numpy dtype with a plain integer type, so
the TensorFlow enum always travels with the array (:class:`DType`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from ckptmap.errors import UnsupportedInputError


@dataclass(frozen=True, slots=True)
class DType:
    """One TensorFlow dtype.

    Attributes:
        enum: the ``DataType`` enum value stored in a ``BundleEntryProto``.
        name: the name users see; the numpy name where one exists (``float32``,
            ``bfloat16``), TensorFlow's otherwise (``qint8``, ``string``).
        numpy: the little-endian numpy dtype of one element (``object`` for strings).
        copyable: whether TensorFlow can re-slice a stored tensor of this type
            (tf-checkpoint-format.md §8.1); other types need exact slice matches.
    """

    enum: int
    name: str
    numpy: np.dtype[Any]
    copyable: bool

    @property
    def is_string(self) -> bool:
        return self.enum == DT_STRING

    @property
    def itemsize(self) -> int:
        """Bytes per element on disk (0 for strings, whose size varies)."""
        return 0 if self.is_string else int(self.numpy.itemsize)


DT_FLOAT = 1
DT_STRING = 7
DT_INT64 = 9
DT_VARIANT = 21
DT_RESOURCE = 20
REF_OFFSET = 100  # DT_<x>_REF = DT_<x> + 100, only in graph op signatures

_TABLE: tuple[tuple[int, str, object, bool], ...] = (
    # enum, name, numpy dtype, copyable by TF's slice-restore path (§8.1)
    (1, "float32", np.dtype("<f4"), True),
    (2, "float64", np.dtype("<f8"), True),
    (3, "int32", np.dtype("<i4"), True),
    (4, "uint8", np.dtype("u1"), True),
    (5, "int16", np.dtype("<i2"), True),
    (6, "int8", np.dtype("i1"), True),
    (7, "string", np.dtype(object), False),
    (8, "complex64", np.dtype("<c8"), True),
    (9, "int64", np.dtype("<i8"), True),
    (10, "bool", np.dtype(bool), True),
    (11, "qint8", np.dtype("i1"), True),
    (12, "quint8", np.dtype("u1"), True),
    (13, "qint32", np.dtype("<i4"), True),
    (14, "bfloat16", np.dtype(ml_dtypes.bfloat16), True),
    (15, "qint16", np.dtype("<i2"), False),
    (16, "quint16", np.dtype("<u2"), False),
    (17, "uint16", np.dtype("<u2"), False),
    (18, "complex128", np.dtype("<c16"), True),
    (19, "float16", np.dtype("<f2"), False),
    (22, "uint32", np.dtype("<u4"), False),
    (23, "uint64", np.dtype("<u8"), False),
    (24, "float8_e5m2", np.dtype(ml_dtypes.float8_e5m2), False),
    (25, "float8_e4m3fn", np.dtype(ml_dtypes.float8_e4m3fn), False),
    (26, "float8_e4m3fnuz", np.dtype(ml_dtypes.float8_e4m3fnuz), False),
    (27, "float8_e4m3b11fnuz", np.dtype(ml_dtypes.float8_e4m3b11fnuz), False),
    (28, "float8_e5m2fnuz", np.dtype(ml_dtypes.float8_e5m2fnuz), False),
    (29, "int4", np.dtype(ml_dtypes.int4), False),
    (30, "uint4", np.dtype(ml_dtypes.uint4), False),
    (31, "int2", np.dtype(ml_dtypes.int2), False),
    (32, "uint2", np.dtype(ml_dtypes.uint2), False),
    (33, "float4_e2m1fn", np.dtype(ml_dtypes.float4_e2m1fn), False),
)

BY_ENUM: dict[int, DType] = {
    enum: DType(enum, name, np.dtype(dt), copyable)  # type: ignore[call-overload]
    for enum, name, dt, copyable in _TABLE
}
BY_NAME: dict[str, DType] = {d.name: d for d in BY_ENUM.values()}
# TensorFlow spellings accepted on input (JSON specs, graph attrs) besides ours.
_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "bytes": "string"}

# numpy dtype -> TF enum, for arrays handed to the writer without an explicit dtype.
# Plain types win over quantized ones that share a numpy dtype.
_FROM_NUMPY: dict[np.dtype[Any], DType] = {}
for _d in reversed(list(BY_ENUM.values())):
    if _d.name.startswith(("q",)):
        continue
    _FROM_NUMPY[_d.numpy] = _d


def dtype_from_enum(enum: int, *, where: str = "") -> DType:
    """Return the dtype for a ``DataType`` enum value.

    ``*_REF`` values (graph op signatures) are mapped to their base type.

    Raises:
        UnsupportedInputError: for values with no stored form (resource, variant, unknown).
    """
    base = enum - REF_OFFSET if enum > REF_OFFSET else enum
    try:
        return BY_ENUM[base]
    except KeyError:
        prefix = f"{where}: " if where else ""
        if base == DT_VARIANT:
            what = "DT_VARIANT (tf.data iterator state), which ckptmap cannot read"
        elif base == DT_RESOURCE:
            what = "DT_RESOURCE, which is never stored in a checkpoint"
        else:
            what = f"unknown TensorFlow dtype enum {enum}"
        raise UnsupportedInputError(
            f"{prefix}{what} (upgrade ckptmap or drop this tensor with a filter)"
        ) from None


def dtype_from_name(name: str) -> DType:
    """Return the dtype called ``name`` (``float32``, ``bfloat16``, ``DT_FLOAT``, ``float``).

    Raises:
        UnsupportedInputError: if no dtype has that name.
    """
    key = name.strip().lower()
    if key.startswith("dt_"):
        key = key[3:]
        if key.endswith("_ref"):
            key = key[:-4]
    key = _ALIASES.get(key, key)
    try:
        return BY_NAME[key]
    except KeyError:
        choices = ", ".join(sorted(BY_NAME))
        raise UnsupportedInputError(
            f"unknown dtype {name!r} (expected one of: {choices})"
        ) from None


def dtype_from_numpy(dtype: np.dtype[Any]) -> DType:
    """Return the TF dtype of a numpy dtype (non-native byte order is accepted).

    Raises:
        UnsupportedInputError: if TensorFlow has no such dtype.
    """
    dt = np.dtype(dtype)
    if dt.kind in "SUO":
        return BY_NAME["string"]
    native = dt.newbyteorder("<") if dt.byteorder == ">" else dt
    found = _FROM_NUMPY.get(native)
    if found is None:
        raise UnsupportedInputError(f"numpy dtype {dt} has no TensorFlow equivalent")
    return found
