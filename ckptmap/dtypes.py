"""TensorFlow ``DataType`` values and their numpy equivalents, in one table.

Facts from tf-checkpoint-format.md §4.4: every numeric type is stored in C order
with the byte order of the bundle header; ``int4``/``uint4`` take one byte per
element; strings have their own layout (§5.2) and map to numpy ``object`` arrays
of ``bytes``. Quantized types share a numpy dtype with a plain integer type, so
the TensorFlow enum always travels with the array (:class:`DType`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ckptmap.errors import UnsupportedInputError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class DType:
    """One TensorFlow dtype.

    Attributes:
        enum: the ``DataType`` enum value stored in a ``BundleEntryProto``.
        name: the name users see; the numpy name where one exists (``float32``,
            ``bfloat16``), TensorFlow's otherwise (``qint8``, ``string``).
        numpy_spec: the little-endian numpy dtype of one element, as a string
            numpy understands (``"<f4"``), ``"ml_dtypes:<name>"`` for the
            ml_dtypes types, or ``"object"`` for strings. Listing a checkpoint
            needs no numpy, so the dtype object is made on first use
            (:attr:`numpy`).
        copyable: whether TensorFlow can re-slice a stored tensor of this type
            (tf-checkpoint-format.md §8.1); other types need exact slice matches.
        itemsize: bytes per element on disk (0 for strings, whose size varies).
    """

    enum: int
    name: str
    numpy_spec: str
    copyable: bool
    itemsize: int

    @property
    def is_string(self) -> bool:
        return self.enum == DT_STRING

    @property
    def numpy(self) -> np.dtype[Any]:
        """The numpy dtype of one element (imports numpy and ml_dtypes on first use)."""
        return _numpy_dtype(self.numpy_spec)


_NUMPY_CACHE: dict[str, Any] = {}


def _numpy_dtype(spec: str) -> np.dtype[Any]:
    found = _NUMPY_CACHE.get(spec)
    if found is None:
        import numpy

        if spec.startswith("ml_dtypes:"):
            import ml_dtypes

            found = numpy.dtype(getattr(ml_dtypes, spec.split(":", 1)[1]))
        else:
            found = numpy.dtype(spec)
        _NUMPY_CACHE[spec] = found
    return found


DT_FLOAT = 1
DT_STRING = 7
DT_VARIANT = 21
DT_RESOURCE = 20
REF_OFFSET = 100  # DT_<x>_REF = DT_<x> + 100, only in graph op signatures

_TABLE: tuple[tuple[int, str, str, bool, int], ...] = (
    # enum, name, numpy dtype, copyable by TF's slice-restore path (§8.1), bytes per element
    (1, "float32", "<f4", True, 4),
    (2, "float64", "<f8", True, 8),
    (3, "int32", "<i4", True, 4),
    (4, "uint8", "u1", True, 1),
    (5, "int16", "<i2", True, 2),
    (6, "int8", "i1", True, 1),
    (7, "string", "object", False, 0),
    (8, "complex64", "<c8", True, 8),
    (9, "int64", "<i8", True, 8),
    (10, "bool", "?", True, 1),
    (11, "qint8", "i1", True, 1),
    (12, "quint8", "u1", True, 1),
    (13, "qint32", "<i4", True, 4),
    (14, "bfloat16", "ml_dtypes:bfloat16", True, 2),
    (15, "qint16", "<i2", False, 2),
    (16, "quint16", "<u2", False, 2),
    (17, "uint16", "<u2", False, 2),
    (18, "complex128", "<c16", True, 16),
    (19, "float16", "<f2", False, 2),
    (22, "uint32", "<u4", False, 4),
    (23, "uint64", "<u8", False, 8),
    (24, "float8_e5m2", "ml_dtypes:float8_e5m2", False, 1),
    (25, "float8_e4m3fn", "ml_dtypes:float8_e4m3fn", False, 1),
    (26, "float8_e4m3fnuz", "ml_dtypes:float8_e4m3fnuz", False, 1),
    (27, "float8_e4m3b11fnuz", "ml_dtypes:float8_e4m3b11fnuz", False, 1),
    (28, "float8_e5m2fnuz", "ml_dtypes:float8_e5m2fnuz", False, 1),
    (29, "int4", "ml_dtypes:int4", False, 1),
    (30, "uint4", "ml_dtypes:uint4", False, 1),
    (31, "int2", "ml_dtypes:int2", False, 1),
    (32, "uint2", "ml_dtypes:uint2", False, 1),
    (33, "float4_e2m1fn", "ml_dtypes:float4_e2m1fn", False, 1),
)

BY_ENUM: dict[int, DType] = {row[0]: DType(*row) for row in _TABLE}
BY_NAME: dict[str, DType] = {d.name: d for d in BY_ENUM.values()}
# TensorFlow spellings accepted on input (JSON specs, graph attrs) besides ours.
_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "bytes": "string"}


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

    Plain types win over quantized ones that share a numpy dtype (``int8``, not
    ``qint8``).

    Raises:
        UnsupportedInputError: if TensorFlow has no such dtype.
    """
    import numpy

    dt = numpy.dtype(dtype)
    if dt.kind in "SUO":
        return BY_NAME["string"]
    native = dt.newbyteorder("<") if dt.byteorder == ">" else dt
    for d in BY_ENUM.values():
        if not d.name.startswith("q") and not d.is_string and d.numpy == native:
            return d
    raise UnsupportedInputError(f"numpy dtype {dt} has no TensorFlow equivalent")
