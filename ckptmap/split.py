"""Slices and partitions of tensors.

A :class:`SliceSpec` names one rectangular piece of a full tensor, the way
TensorFlow's ``shape_and_slices`` strings and ``TensorSliceProto`` do
(tf-checkpoint-format.md §6). This module works on shapes and numpy arrays
only; it knows nothing about files.

This is the partition engine of ckptmap (below :class:`SliceSpec`): box
arithmetic (:func:`box_of`, :func:`intersect`); the one tiling check
(:func:`check_tiling`: no gap, no overlap); :func:`plan_slice`, which stored
pieces feed a requested slice, and :func:`assemble_slice`, which builds it;
:func:`merge_slices`, a whole tensor from its slices; :func:`byte_ranges`, the
byte runs of a slice in a C-order tensor, so a writer can copy them without
decoding; and :func:`even_partition`, the slices TensorFlow's fixed-size
partitioners make. The migration plans (:mod:`ckptmap.migration.pieces`), the
readers and the in-graph adapter all use it; none of them keeps box logic of
its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# The errors of this module live in errors.py; ``as`` re-exports them from here too.
from ckptmap.errors import PartitionError as PartitionError
from ckptmap.errors import SliceSpecError as SliceSpecError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class SliceSpec:
    """One slice of a tensor of shape ``full_shape``.

    Attributes:
        full_shape: the shape of the whole tensor.
        extents: ``(start, length)`` per dimension; ``length`` is ``-1`` when the
            whole dimension is taken (``-`` in a spec string, an empty ``Extent``
            on disk). Keep the spelling: TensorFlow looks slice keys up by it.
    """

    full_shape: tuple[int, ...]
    extents: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.full_shape) != len(self.extents):
            raise SliceSpecError(
                f"slice has {len(self.extents)} extents for a tensor of rank {len(self.full_shape)}"
            )
        for dim, (start, length) in zip(self.full_shape, self.extents, strict=True):
            if length == -1:
                if start != 0:
                    raise SliceSpecError(f"a whole-dimension extent must start at 0, not {start}")
                continue
            if start < 0 or length < 0 or start + length > dim:
                raise SliceSpecError(
                    f"extent {start},{length} does not fit in a dimension of size {dim}"
                )

    @classmethod
    def full(cls, shape: Sequence[int]) -> SliceSpec:
        """The slice covering all of ``shape``, spelled with explicit extents."""
        shape = tuple(int(d) for d in shape)
        return cls(shape, tuple((0, d) for d in shape))

    @classmethod
    def parse(cls, spec: str) -> SliceSpec:
        """Parse a TensorFlow ``shape_and_slices`` string such as ``"10 4 0,4:0,4"``.

        Raises:
            SliceSpecError: if the string is not a valid non-empty spec.
        """
        tokens = spec.split()
        if len(tokens) < 2:
            raise SliceSpecError(f"slice spec {spec!r} needs a shape and a slice")
        try:
            shape = tuple(int(t) for t in tokens[:-1])
        except ValueError:
            raise SliceSpecError(f"slice spec {spec!r} has a non-integer dimension") from None
        pieces = tokens[-1].split(":")
        extents: list[tuple[int, int]] = []
        for piece in pieces:
            if piece == "-":
                extents.append((0, -1))
                continue
            start_s, sep, length_s = piece.partition(",")
            try:
                extent = (int(start_s), int(length_s)) if sep else None
            except ValueError:
                extent = None
            if extent is None:
                raise SliceSpecError(f"slice spec {spec!r} has a bad extent {piece!r}")
            extents.append(extent)
        return cls(shape, tuple(extents))

    def format(self) -> str:
        """The ``shape_and_slices`` string of this slice (inverse of :meth:`parse`)."""
        dims = " ".join(map(str, self.full_shape))
        ext = ":".join(["-" if ln == -1 else f"{st},{ln}" for st, ln in self.extents])
        return f"{dims} {ext}"

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the slice itself."""
        return tuple(
            [
                d if ln == -1 else ln
                for d, (_, ln) in zip(self.full_shape, self.extents, strict=True)
            ]
        )

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(st for st, _ in self.extents)

    @property
    def is_full(self) -> bool:
        """True when the slice covers the whole tensor (however it is spelled)."""
        return all(
            ln == -1 or (st == 0 and ln == d)
            for d, (st, ln) in zip(self.full_shape, self.extents, strict=True)
        )

    def index(self) -> tuple[slice, ...]:
        """A numpy index selecting this slice from the full tensor."""
        return tuple(
            slice(0, d) if ln == -1 else slice(st, st + ln)
            for d, (st, ln) in zip(self.full_shape, self.extents, strict=True)
        )

    def __str__(self) -> str:
        return self.format()


# ------------------------------------------------------------------ partition plans
#
# Everything below works on boxes: ``(start, stop)`` per dimension. The slice
# specs decide which axes are cut; nothing assumes the first axis.

Box = tuple[tuple[int, int], ...]

# byte_ranges gives up (returns None) past this many ranges: copying thousands of
# tiny runs costs more than decoding the piece and slicing it with numpy.
MAX_BYTE_RANGES = 1024


def box_of(spec: SliceSpec | None, full_shape: Sequence[int]) -> Box:
    """``(start, stop)`` per dimension of a slice within its full tensor.

    ``None`` stands for the whole tensor (a key stored unsliced).

    >>> box_of(SliceSpec.parse("6 4 2,3:-"), (6, 4))
    ((2, 5), (0, 4))
    >>> box_of(None, (6, 4))
    ((0, 6), (0, 4))
    """
    if spec is None:
        return tuple([(0, int(d)) for d in full_shape])
    return tuple(
        [
            (0, d) if ln == -1 else (st, st + ln)
            for d, (st, ln) in zip(spec.full_shape, spec.extents, strict=True)
        ]
    )


def _volume(box: Box) -> int:
    count = 1
    for start, stop in box:
        count *= max(0, stop - start)
    return count


def intersect(a: Box, b: Box) -> Box | None:
    """The box two boxes share, or ``None`` when they share no element."""
    out = tuple((max(a0, b0), min(a1, b1)) for (a0, a1), (b0, b1) in zip(a, b, strict=True))
    return None if any(stop <= start for start, stop in out) else out


def _relative(box: Box, origin: Box) -> Box:
    return tuple((s - o, e - o) for (s, e), (o, _) in zip(box, origin, strict=True))


def _index(box: Box) -> tuple[slice, ...]:
    return tuple(slice(start, stop) for start, stop in box)


def _check_full_shape(spec: SliceSpec, full_shape: tuple[int, ...], what: str) -> None:
    if spec.full_shape != full_shape:
        raise SliceSpecError(
            f"{what} {spec.format()!r} is a slice of shape {list(spec.full_shape)},"
            f" not of {list(full_shape)} (slices must describe the same tensor)"
        )


def _cut_along_one_axis(boxes: Sequence[Box], shape: tuple[int, ...]) -> bool:
    """Whether ``boxes`` tile ``shape`` as cuts of one axis (or are one box of all of it).

    The layout of every partitioned variable TensorFlow makes: each box spans
    every other axis whole, and along the cut axis the boxes, sorted, follow
    each other from 0 to its end. ``True`` proves a tiling; ``False`` only
    means the general check (:func:`_first_overlap` and the volume count)
    decides. A shape with an empty dimension is always left to it.
    """
    if not shape or 0 in shape:
        return False
    cut: list[tuple[int, int]] = []
    axis = -1
    for a, dim in enumerate(shape):
        column = [box[a] for box in boxes]
        if column.count((0, dim)) != len(column):
            if axis >= 0:
                return False  # cut along two axes
            axis, cut = a, column
    if axis < 0:
        return len(boxes) == 1
    end = 0
    for start, stop in sorted(cut):
        if start != end or stop <= start:
            return False
        end = stop
    return end == shape[axis]


def _first_overlap(boxes: Sequence[Box]) -> tuple[int, int] | None:
    """Indices of two overlapping boxes, or None.

    Sweeps along the axis with the most distinct starts, so the common case (all
    slices cut along one axis) costs a sort, not all pairs.
    """
    live = [i for i, b in enumerate(boxes) if _volume(b) > 0]
    if len(live) < 2:
        return None
    rank = len(boxes[live[0]])
    axis = max(range(rank), key=lambda a: (len({boxes[i][a][0] for i in live}), -a)) if rank else 0
    order = sorted(live, key=lambda i: (boxes[i][axis][0] if rank else 0, i))
    for pos, i in enumerate(order):
        stop = boxes[i][axis][1] if rank else 1
        for j in order[pos + 1 :]:
            if rank and boxes[j][axis][0] >= stop:
                break
            if intersect(boxes[i], boxes[j]) is not None:
                return (min(i, j), max(i, j))
    return None


def check_tiling(specs: Sequence[SliceSpec], full_shape: Sequence[int]) -> None:
    """Raise unless ``specs`` cover a tensor of ``full_shape`` exactly once.

    The one tiling check of the code base: readers (an index's slices), graph
    readers (a saver's slices) and the partition plans all call it, and add
    where the slices came from to the message.

    >>> try:
    ...     check_tiling([SliceSpec.parse("4 0,2"), SliceSpec.parse("4 3,1")], (4,))
    ... except PartitionError as err:
    ...     print(err)
    slices cover 3 of the 4 elements of a tensor of shape [4] (a slice is missing)

    Raises:
        SliceSpecError: if a slice belongs to a tensor of another shape.
        PartitionError: if two slices overlap or the slices leave a gap.
    """
    shape = tuple(map(int, full_shape))
    for spec in specs:
        _check_full_shape(spec, shape, "slice")
    boxes = [box_of(s, s.full_shape) for s in specs]
    if _cut_along_one_axis(boxes, shape):
        return  # the common layout, proven without the general search
    pair = _first_overlap(boxes)
    if pair is not None:
        a, b = (specs[i].format() for i in pair)
        raise PartitionError(f"slices {a!r} and {b!r} overlap (each element must be stored once)")
    covered = sum(_volume(b) for b in boxes)
    total = _volume(tuple((0, d) for d in shape))
    if covered != total:
        raise PartitionError(
            f"slices cover {covered} of the {total} elements of a tensor of shape"
            f" {list(shape)} (a slice is missing)"
        )


def _check_parts(
    parts: Sequence[tuple[SliceSpec, NDArray[Any]]], full_shape: tuple[int, ...]
) -> np.dtype[Any]:
    if not parts:
        raise PartitionError(f"no slices given for a tensor of shape {list(full_shape)}")
    dtype = parts[0][1].dtype
    for spec, arr in parts:
        _check_full_shape(spec, full_shape, "slice")
        if tuple(arr.shape) != spec.shape:
            raise PartitionError(
                f"slice {spec.format()!r} holds an array of shape {list(arr.shape)},"
                f" expected {list(spec.shape)}"
            )
        if arr.dtype != dtype:
            raise PartitionError(
                f"slice {spec.format()!r} has dtype {arr.dtype}, other slices {dtype}"
                " (all slices of a tensor share one dtype)"
            )
    check_tiling([spec for spec, _ in parts], full_shape)
    return dtype


def merge_slices(
    parts: Sequence[tuple[SliceSpec, NDArray[Any]]], full_shape: Sequence[int]
) -> NDArray[Any]:
    """Assemble the full tensor from its slices.

    The slices must tile ``full_shape``: every element exactly once.

    Raises:
        SliceSpecError: if a slice belongs to a tensor of another shape.
        PartitionError: on a gap, an overlap, a wrongly shaped array, mixed dtypes,
            or no slices at all.
    """
    import numpy as np

    shape = tuple(int(d) for d in full_shape)
    dtype = _check_parts(parts, shape)
    out = np.empty(shape, dtype=dtype)
    for spec, arr in parts:
        out[_index(box_of(spec, spec.full_shape))] = arr
    return out


def even_partition(full_shape: Sequence[int], axis: int, count: int) -> list[SliceSpec]:
    """The slices TensorFlow's partitioners make: ``count`` parts along ``axis``.

    Part sizes are ``ceil`` then ``floor`` of ``dim / count``, larger parts first
    (10 rows in 3 parts: 4, 3, 3), and every other dimension is spelled out as
    ``0,d`` the way the Python ``Saver`` writes it.

    >>> [s.format() for s in even_partition((10, 4), 0, 3)]
    ['10 4 0,4:0,4', '10 4 4,3:0,4', '10 4 7,3:0,4']

    TensorFlow's ``fixed_size_partitioner`` lowers a count above the dimension's
    size to that size; pass ``min(count, dim)`` to do the same.

    Raises:
        PartitionError: for a scalar shape, an axis out of range, or a count below 1
            or above the dimension's size.
    """
    shape = tuple(int(d) for d in full_shape)
    rank = len(shape)
    if rank == 0:
        raise PartitionError("a scalar cannot be partitioned (rank must be at least 1)")
    if not -rank <= axis < rank:
        raise PartitionError(f"axis {axis} is out of range for a tensor of rank {rank}")
    axis %= rank
    dim = shape[axis]
    if count < 1 or count > max(dim, 1):
        raise PartitionError(
            f"cannot cut a dimension of size {dim} into {count} parts"
            f" (use 1 to {max(dim, 1)} parts)"
        )
    small, extra = divmod(dim, count)
    slices = []
    start = 0
    for i in range(count):
        length = small + (1 if i < extra else 0)
        extents = tuple((start, length) if a == axis else (0, d) for a, d in enumerate(shape))
        slices.append(SliceSpec(shape, extents))
        start += length
    return slices


@dataclass(frozen=True, slots=True)
class SlicePiece:
    """One stored piece's contribution to a requested slice.

    Attributes:
        index: the position of the stored piece in the list given to :func:`plan_slice`.
        source: the stored slice (``None`` when the tensor is stored whole).
        source_box: the part to take, relative to the stored piece.
        target_box: where it goes, relative to the requested slice.
    """

    index: int
    source: SliceSpec | None
    source_box: Box
    target_box: Box


@dataclass(frozen=True, slots=True)
class SlicePlan:
    """Which stored pieces feed one requested slice, and how.

    Attributes:
        target: the requested slice.
        pieces: the stored pieces that overlap it, in stored order.
        direct: whether one stored piece is exactly the requested slice, so its
            bytes can be copied as they are (it is then the only piece).
    """

    target: SliceSpec
    pieces: tuple[SlicePiece, ...]
    direct: bool = False


def plan_slice(
    source_stored: Sequence[SliceSpec] | None,
    full_shape: Sequence[int],
    target: SliceSpec,
) -> SlicePlan:
    """Say which stored pieces of a tensor feed ``target`` and which boxes to copy.

    Args:
        source_stored: the stored slices of the source tensor, or ``None`` (or an
            empty sequence) when it is stored whole.
        full_shape: the full shape of the tensor.
        target: the requested slice.

    Returns:
        A plan whose pieces cover ``target`` exactly once. A stored piece equal to
        the target is used alone (TensorFlow's direct path).

    Raises:
        SliceSpecError: if a slice belongs to a tensor of another shape.
        PartitionError: if the stored pieces overlap inside ``target`` or leave part
            of it uncovered.
    """
    shape = tuple(int(d) for d in full_shape)
    _check_full_shape(target, shape, "requested slice")
    stored: list[SliceSpec | None] = list(source_stored) if source_stored else [None]
    boxes = []
    for spec in stored:
        if spec is not None:
            _check_full_shape(spec, shape, "stored slice")
        boxes.append(
            tuple((0, d) for d in shape) if spec is None else box_of(spec, spec.full_shape)
        )
    tbox = box_of(target, target.full_shape)
    for i, (spec, box) in enumerate(zip(stored, boxes, strict=True)):
        if box == tbox:
            whole = tuple((0, e - s) for s, e in box)
            return SlicePlan(target, (SlicePiece(i, spec, whole, whole),), direct=True)
    pieces = []
    for i, (spec, box) in enumerate(zip(stored, boxes, strict=True)):
        inter = intersect(box, tbox)
        if inter is not None:
            pieces.append(SlicePiece(i, spec, _relative(inter, box), _relative(inter, tbox)))
    pair = _first_overlap([p.target_box for p in pieces])
    if pair is not None:
        raise PartitionError(
            f"stored slices {pair[0]} and {pair[1]} overlap inside {target.format()!r}"
        )
    covered = sum(_volume(p.target_box) for p in pieces)
    if covered != _volume(tbox):
        raise PartitionError(
            f"stored slices cover {covered} of the {_volume(tbox)} elements of"
            f" {target.format()!r} (the checkpoint lacks part of this tensor)"
        )
    return SlicePlan(target, tuple(pieces))


def assemble_slice(
    plan: SlicePlan, stored: Sequence[NDArray[Any]] | Mapping[int, NDArray[Any]]
) -> NDArray[Any]:
    """Carry out a :class:`SlicePlan`: build the requested slice from the stored arrays.

    Args:
        plan: the plan from :func:`plan_slice`.
        stored: the stored pieces' arrays, in the order given to :func:`plan_slice`,
            or a mapping from that position to the array (only the pieces the plan
            names need to be there).

    Raises:
        PartitionError: if an array the plan needs is missing or has the wrong shape.
    """
    import numpy as np

    def get(index: int) -> NDArray[Any]:
        try:
            return stored[index]
        except (IndexError, KeyError):
            raise PartitionError(f"stored piece {index} is missing (got {len(stored)})") from None

    if not stored:
        raise PartitionError(f"no stored arrays given for {plan.target.format()!r}")
    if plan.direct:
        index = plan.pieces[0].index
        arr = get(index)
        if tuple(arr.shape) != plan.target.shape:
            raise PartitionError(
                f"stored piece {index} must be the requested slice {plan.target.format()!r}"
            )
        return arr
    if plan.pieces:
        dtype = get(plan.pieces[0].index).dtype
    else:  # an empty target: any stored array gives the dtype
        values = list(stored.values()) if isinstance(stored, Mapping) else list(stored)
        dtype = values[0].dtype
    out = np.empty(plan.target.shape, dtype=dtype)
    for piece in plan.pieces:
        arr = get(piece.index)
        want = tuple(e for _, e in piece.source_box)
        if arr.ndim != len(want) or any(a < w for a, w in zip(arr.shape, want, strict=True)):
            raise PartitionError(
                f"stored piece {piece.index} has shape {list(arr.shape)}, too small for"
                f" box {[list(b) for b in piece.source_box]}"
            )
        out[_index(piece.target_box)] = arr[_index(piece.source_box)]
    return out


def byte_ranges(
    full_shape: Sequence[int],
    itemsize: int,
    target: SliceSpec,
    *,
    max_ranges: int = MAX_BYTE_RANGES,
) -> list[tuple[int, int]] | None:
    """The contiguous ``(offset, size)`` byte runs of ``target`` in a C-order tensor.

    Concatenated in order, the runs are the bytes of ``x[target]`` for a tensor
    ``x`` of ``full_shape`` stored in C order with ``itemsize`` bytes per element,
    so a writer can copy them without decoding. A slice along the first axis with
    whole trailing dimensions is one run; a slice along axis 1 is one run per row.

    >>> byte_ranges((6, 4), 4, SliceSpec.parse("6 4 2,3:0,4"))
    [(32, 48)]
    >>> byte_ranges((3, 4), 4, SliceSpec.parse("3 4 0,3:1,2"))
    [(4, 8), (20, 8), (36, 8)]

    Returns:
        The runs in increasing offset order (empty for an empty slice), or
        ``None`` when they would number more than ``max_ranges`` or the elements
        have no fixed size (``itemsize == 0``, strings).

    Raises:
        SliceSpecError: if ``target`` is not a slice of ``full_shape`` or
            ``itemsize`` is negative.
    """
    shape = tuple(int(d) for d in full_shape)
    _check_full_shape(target, shape, "slice")
    if itemsize < 0:
        raise SliceSpecError(f"itemsize {itemsize} is negative")
    if itemsize == 0:
        return None
    box = box_of(target, target.full_shape)
    if _volume(box) == 0:
        return []
    # The innermost axis that is not taken whole decides the run length.
    cut = len(shape) - 1
    while cut >= 0 and box[cut] == (0, shape[cut]):
        cut -= 1
    strides = [itemsize] * (len(shape) + 1)
    for a in range(len(shape) - 1, -1, -1):
        strides[a] = strides[a + 1] * shape[a]
    if cut < 0:
        return [(0, strides[0])]
    run = (box[cut][1] - box[cut][0]) * strides[cut + 1]
    outer = box[:cut]
    if _volume(outer) > max_ranges:
        return None
    base = box[cut][0] * strides[cut + 1]
    return [
        (base + sum(i * strides[a + 1] for a, i in enumerate(idx)), run)
        for idx in itertools.product(*(range(s, e) for s, e in outer))
    ]
