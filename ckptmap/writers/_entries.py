"""Index entries of a bundle being written: validation of what callers pass, serialization.

Keys are ``str`` (UTF-8 with ``surrogateescape``, so keys a reader decoded that
way round-trip) or ``bytes``; entries become ``BundleEntryProto`` bytes
(tf-checkpoint-format.md §4.2) exactly as TensorFlow serializes them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from ckptmap.dtypes import BY_ENUM, DType, dtype_from_name
from ckptmap.errors import CkptmapError, UsageError
from ckptmap.formats.slice_key import key_label
from ckptmap.proto import ckptmap_tf_pb2 as pb
from ckptmap.split import SliceSpec

KeyLike = str | bytes
DTypeLike = DType | str


@dataclass(frozen=True, slots=True)
class Entry:
    """One index entry before serialization (``crc`` is masked, as stored)."""

    key: bytes
    dtype: DType
    shape: tuple[int, ...]
    shard: int = 0
    offset: int = 0
    size: int = 0
    crc: int = 0
    slices: tuple[SliceSpec, ...] = ()


def key_bytes(key: KeyLike) -> bytes:
    """The stored bytes of a key.

    Raises:
        UsageError: for an empty key, a ``str`` with lone surrogates that
            ``surrogateescape`` cannot encode, or a key of another type.
    """
    if isinstance(key, bytes):
        kb = key
    elif isinstance(key, str):
        try:
            kb = key.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise UsageError(
                f"key {key!r} is not valid UTF-8 (it holds a lone surrogate); "
                "pass non-UTF-8 names as bytes"
            ) from None
    else:
        raise UsageError(f"a key must be str or bytes, not {type(key).__name__}")
    if not kb:
        raise UsageError("the empty key is reserved for the bundle header; name the tensor")
    return kb


def where(kb: bytes) -> str:
    """Name a tensor in messages: ``tensor 'a/b'``, a slice entry ``tensor 'a/b[0,4:-]'``."""
    return f"tensor {key_label(kb)!r}"


def check_dtype(dtype: DTypeLike, where: str) -> DType:
    """A known dtype, given as :class:`DType` or by name.

    Raises:
        UsageError: for anything else.
    """
    if isinstance(dtype, str):
        try:
            return dtype_from_name(dtype)
        except CkptmapError as err:
            raise UsageError(f"{where}: {err}") from None
    if not isinstance(dtype, DType) or BY_ENUM.get(dtype.enum) != dtype:
        raise UsageError(f"{where}: unknown dtype {dtype!r} (use ckptmap.dtypes.BY_NAME)")
    return dtype


def check_shape(shape: Sequence[int], where: str) -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints.

    Raises:
        UsageError: for negative or non-integer dimensions.
    """
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise UsageError(f"{where}: shape {shape!r} must be a sequence of integers") from None
    if any(d < 0 for d in dims):
        raise UsageError(f"{where}: shape {list(dims)} has a negative dimension")
    return dims


def check_range(offset: int, size: int, where: str) -> tuple[int, int]:
    """A byte range ``(offset, size)`` of non-negative ints.

    Raises:
        UsageError: otherwise.
    """
    try:
        off, n = operator.index(offset), operator.index(size)
    except TypeError:
        raise UsageError(f"{where}: offset and size must be integers") from None
    if off < 0 or n < 0:
        raise UsageError(f"{where}: negative offset {off} or size {n}")
    return off, n


def check_crc_value(crc: int, where: str) -> int:
    """A CRC32C given by a caller: an int in ``[0, 2**32)``.

    Raises:
        UsageError: otherwise.
    """
    try:
        value = operator.index(crc)
    except TypeError:
        value = -1
    if not 0 <= value <= 0xFFFFFFFF:
        raise UsageError(f"{where}: CRC32C {crc!r} is not a 32-bit unsigned integer")
    return value


def check_size(dt: DType, dims: tuple[int, ...], size: int, where: str) -> None:
    """Check that ``size`` stored bytes can hold a ``dt`` tensor of shape ``dims``.

    Raises:
        UsageError: if a numeric size is not elements x itemsize, or a string
            size is too small for the lengths and checksum.
    """
    count = math.prod(dims)
    if not dt.is_string:
        expected = count * dt.itemsize
        if size != expected:
            raise UsageError(
                f"{where}: {size} bytes do not match {dt.name} {list(dims)} "
                f"({count} elements x {dt.itemsize} bytes = {expected})"
            )
        return
    # §5.2: n length varints (>= 1 byte each) + 4 checksum bytes; only a
    # zero-element tensor may be stored with size 0 (written by other writers).
    minimum = count + 4
    if size < minimum and not (count == 0 and size == 0):
        raise UsageError(
            f"{where}: {size} bytes are too few for a string tensor of shape "
            f"{list(dims)} (at least {minimum})"
        )


def entry_bytes(entry: Entry) -> bytes:
    """The serialized ``BundleEntryProto`` of an entry, as TensorFlow writes it (§4.2)."""
    msg = pb.BundleEntryProto()
    msg.dtype = cast(pb.DataType, entry.dtype.enum)
    msg.shape.SetInParent()
    for dim in entry.shape:
        msg.shape.dim.add().size = dim
    if entry.slices:
        for spec in entry.slices:
            proto = msg.slices.add()
            for start, length in spec.extents:
                extent = proto.extent.add()
                if length != -1:
                    extent.start = start
                    extent.length = length
    else:
        msg.shard_id = entry.shard
        msg.offset = entry.offset
        msg.size = entry.size
        msg.crc32c = entry.crc
    return bytes(msg.SerializeToString(deterministic=True))
