"""Remap plans: decide every output entry, its source and its bytes, from indexes only.

A plan is pure data made from the old checkpoint's index, the new model's spec
and an :class:`~ckptmap.alias.AliasPlan`. It says, for every key the new model
restores, which old tensor feeds it, whether it is written whole or sliced the
way the new model's saver asks, and for each stored piece how its bytes are
produced:

- ``copy``: the piece equals a stored old piece; its bytes are copied as they are.
- ``ranges``: the piece is a box inside one stored old piece whose bytes are a few
  contiguous ranges of it (a first-axis split of a C-order tensor is one range).
- ``assemble``: anything else; the piece is built with numpy from the old pieces
  it overlaps, with memory bounded by the piece itself.

:func:`ckptmap.remap.execute` carries a plan out; ``check`` and ``remap
--dry-run`` stop at the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ckptmap.dtypes import DType
from ckptmap.split import SliceSpec, byte_ranges

# A piece whose bytes would be scattered over more ranges than this is
# assembled with numpy instead: one large copy beats many tiny ones.
MAX_RANGES_PER_PIECE = 64


class Method(str, Enum):
    """How the bytes of one output piece are produced."""

    COPY = "copy"
    RANGES = "ranges"
    ASSEMBLE = "assemble"


@dataclass(frozen=True, slots=True)
class SourcePiece:
    """One stored piece of an old tensor.

    Attributes:
        slice: the stored slice, or ``None`` when the old tensor is stored whole.
        box: ``(start, stop)`` per dimension of the piece within the full tensor.
    """

    slice: SliceSpec | None
    box: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Run:
    """A contiguous run of bytes inside one stored old piece.

    Attributes:
        source: the stored piece.
        offset: where the run starts, in bytes from the start of the piece's data.
        size: its length in bytes.
    """

    source: SourcePiece
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class PiecePlan:
    """How one stored piece of an output tensor is produced.

    Attributes:
        slice: the output slice, or ``None`` when the tensor is written whole.
        shape: the shape of the piece.
        method: copy, ranges or assemble.
        source: for copy, the old stored piece that equals this one.
        runs: for ranges, the byte runs whose concatenation is the piece.
        nbytes: bytes of the piece (0 for strings, whose size is known on reading).
    """

    slice: SliceSpec | None
    shape: tuple[int, ...]
    method: Method
    source: SourcePiece | None = None
    runs: tuple[Run, ...] = ()
    nbytes: int = 0


@dataclass(frozen=True, slots=True)
class TensorPlan:
    """One key of the output checkpoint.

    Attributes:
        key: the key the new model restores.
        dtype: its dtype.
        shape: its full shape.
        source: the old key that feeds it.
        reason: why that source was chosen (from the alias plan).
        sliced: whether it is written as slices (a partitioned new variable).
        pieces: the stored pieces, in the order the new model's saver lists them.
    """

    key: str
    dtype: DType
    shape: tuple[int, ...]
    source: str
    reason: str
    sliced: bool
    pieces: tuple[PiecePlan, ...]
    source_sliced: bool = False

    @property
    def renamed(self) -> bool:
        return self.key != self.source

    @property
    def action(self) -> str:
        """A one-word summary: copy, split, merge or repartition."""
        if not self.sliced and not self.source_sliced:
            return "copy"
        if self.sliced and not self.source_sliced:
            return "split"
        if not self.sliced:
            return "merge"
        if all(p.method is Method.COPY for p in self.pieces):
            return "copy"
        return "repartition"

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.pieces)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "dtype": self.dtype.name,
            "shape": list(self.shape),
            "source": self.source,
            "reason": self.reason,
            "action": self.action,
            "slices": [p.slice.format() for p in self.pieces if p.slice is not None],
            "pieces": [
                {
                    "slice": p.slice.format() if p.slice is not None else None,
                    "method": p.method.value,
                    "ranges": len(p.runs),
                    "nbytes": p.nbytes,
                }
                for p in self.pieces
            ],
        }


def box_of(spec: SliceSpec | None, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` per dimension of a slice (the whole tensor for ``None``)."""
    if spec is None:
        return tuple((0, d) for d in shape)
    return tuple(
        (0, d) if ln == -1 else (st, st + ln)
        for d, (st, ln) in zip(shape, spec.extents, strict=True)
    )


def _overlaps(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    return all(max(a0, b0) < min(a1, b1) for (a0, a1), (b0, b1) in zip(a, b, strict=True))


def _is_empty(box: tuple[tuple[int, int], ...]) -> bool:
    return any(stop <= start for start, stop in box)


def plan_piece(
    target: SliceSpec | None,
    full_shape: tuple[int, ...],
    dtype: DType,
    sources: list[SourcePiece],
) -> PiecePlan:
    """Decide how to produce one output piece from the stored old pieces.

    A piece equal to a stored piece is copied. A piece whose bytes are the
    concatenation of a few contiguous runs of stored pieces — a first-axis
    slice of a whole tensor, or of several first-axis slices (re-partitioning
    8 parts into 5, merging parts into one tensor) — is copied run by run.
    Anything else is assembled with numpy.

    Args:
        target: the output slice (``None``: the whole tensor).
        full_shape: the full shape shared by old and new tensor.
        dtype: the dtype shared by old and new tensor.
        sources: the old tensor's stored pieces.
    """
    box = box_of(target, full_shape)
    shape = tuple(stop - start for start, stop in box)
    nbytes = math.prod(shape) * dtype.itemsize
    for src in sources:
        if src.box == box:
            return PiecePlan(target, shape, Method.COPY, src, nbytes=nbytes)
    if not dtype.is_string and not _is_empty(box):
        runs = _runs(box, dtype.itemsize, sources)
        if runs is not None:
            return PiecePlan(target, shape, Method.RANGES, runs=runs, nbytes=nbytes)
    return PiecePlan(target, shape, Method.ASSEMBLE, nbytes=nbytes)


def _runs(
    box: tuple[tuple[int, int], ...], itemsize: int, sources: list[SourcePiece]
) -> tuple[Run, ...] | None:
    """Byte runs of stored pieces that concatenate to ``box`` in C order, if few enough.

    That holds when the pieces overlapping ``box`` cut it along the first axis
    only: each intersection then spans the box on every other axis, and the
    intersections, in first-axis order, are the box's rows in order.
    """
    if not box:
        return None
    cover = sorted(overlapping(sources, box), key=lambda s: s.box[0][0])
    rows = box[0][0]
    runs: list[Run] = []
    for src in cover:
        inter = tuple(
            (max(b0, s0), min(b1, s1)) for (b0, b1), (s0, s1) in zip(box, src.box, strict=True)
        )
        if inter[1:] != box[1:] or inter[0][0] != rows:
            return None
        rows = inter[0][1]
        src_shape = tuple(stop - start for start, stop in src.box)
        relative = SliceSpec(
            src_shape,
            tuple((i0 - s0, i1 - i0) for (i0, i1), (s0, _) in zip(inter, src.box, strict=True)),
        )
        ranges = byte_ranges(src_shape, itemsize, relative, max_ranges=MAX_RANGES_PER_PIECE)
        if ranges is None:
            return None
        runs.extend(Run(src, off, size) for off, size in ranges)
        if len(runs) > MAX_RANGES_PER_PIECE:
            return None
    if rows != box[0][1]:
        return None
    return tuple(runs)


def source_pieces(shape: tuple[int, ...], stored: tuple[SliceSpec, ...]) -> list[SourcePiece]:
    """The stored pieces of an old tensor: one whole piece, or one per stored slice."""
    if not stored:
        return [SourcePiece(None, box_of(None, shape))]
    return [SourcePiece(s, box_of(s, shape)) for s in stored]


def overlapping(sources: list[SourcePiece], box: tuple[tuple[int, int], ...]) -> list[SourcePiece]:
    """The stored pieces that share at least one element with ``box``."""
    return [s for s in sources if _overlaps(s.box, box)]
