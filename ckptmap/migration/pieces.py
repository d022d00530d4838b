"""Piece plans: how the bytes of each stored piece of an output tensor are produced.

For every key of a remap plan (:mod:`ckptmap.migration.plan`), one
:class:`TensorPlan` says which old key feeds it and, for each piece it is
stored as (the whole tensor, or each slice the new model's saver asks for),
how its bytes are made; which stored old pieces feed it comes from the
partition engine, :func:`ckptmap.split.plan_slice`:

- ``copy``: the piece equals a stored old piece; its bytes are copied as they are.
- ``ranges``: the piece is a box inside one stored old piece whose bytes are a few
  contiguous ranges of it (a first-axis split of a C-order tensor is one range).
- ``assemble``: anything else; the piece is built with numpy from the old pieces
  it overlaps, with memory bounded by the piece itself.

:func:`ckptmap.migration.execute.execute` carries a plan out; ``check`` and
``remap --dry-run`` stop at the plan.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ckptmap.dtypes import DType
from ckptmap.split import SlicePlan, SliceSpec, box_of, byte_ranges, check_tiling, plan_slice

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
        feed: which stored old pieces feed it, and which boxes of them
            (:func:`ckptmap.split.plan_slice`; positions index
            :attr:`TensorPlan.stored`).
        nbytes: bytes of the piece (0 for strings, whose size is known on reading).
    """

    slice: SliceSpec | None
    shape: tuple[int, ...]
    method: Method
    source: SourcePiece | None = None
    runs: tuple[Run, ...] = ()
    nbytes: int = 0
    feed: SlicePlan | None = None


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
        source_sliced: whether the old key is stored as slices.
        stored: the old key's stored pieces (one whole piece, or one per slice).
        transpose: the old key's axes in the new key's order (an alias-map
            transform, :mod:`ckptmap.migration.transforms`); every piece is
            then assembled. ``None``: the old key as it is.
    """

    key: str
    dtype: DType
    shape: tuple[int, ...]
    source: str
    reason: str
    sliced: bool
    pieces: tuple[PiecePlan, ...]
    source_sliced: bool = False
    stored: tuple[SourcePiece, ...] = ()
    transpose: tuple[int, ...] | None = None

    @property
    def renamed(self) -> bool:
        return self.key != self.source

    @property
    def action(self) -> str:
        """A one-word summary: copy, convert, split, merge, repartition or transpose.

        ``copy`` and ``convert`` keep the layout (every piece is a stored old
        piece): ``copy`` when the bytes are copied as they are, ``convert`` when
        the source's bytes cannot be (a V1 checkpoint, safetensors, npz, zarr3,
        another byte order) and each piece is read as an array and written.
        """
        if self.transpose is not None:
            return "transpose"
        if self.sliced != self.source_sliced:
            return "split" if self.sliced else "merge"
        if len(self.pieces) == 1:  # the common case, without the generators below
            piece = self.pieces[0]
            if piece.feed is None or not piece.feed.direct:
                return "repartition"
            return "copy" if piece.method is Method.COPY else "convert"
        if not all(p.feed is not None and p.feed.direct for p in self.pieces):
            return "repartition"
        return "copy" if all(p.method is Method.COPY for p in self.pieces) else "convert"

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
            "transpose": list(self.transpose) if self.transpose is not None else None,
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


def stored_pieces(shape: tuple[int, ...], stored: tuple[SliceSpec, ...]) -> tuple[SourcePiece, ...]:
    """The stored pieces of an old tensor: one whole piece, or one per stored slice."""
    if not stored:
        return (SourcePiece(None, box_of(None, shape)),)
    return tuple(SourcePiece(s, box_of(s, shape)) for s in stored)


def plan_tensor(
    key: str,
    source: str,
    reason: str,
    dtype: DType,
    shape: tuple[int, ...],
    targets: tuple[SliceSpec, ...],
    stored: tuple[SliceSpec, ...],
) -> TensorPlan:
    """Plan one output key fed by one old key of the same shape and dtype.

    Args:
        key: the key the new model restores; ``targets`` its slices (empty: whole).
        source: the old key; ``stored`` its stored slices (empty: stored whole).
        reason: why the source was chosen.

    Raises:
        PartitionError: the old key's slices do not tile its shape (a gap or an
            overlap), so no output piece can be trusted.
        SliceSpecError: a slice belongs to a tensor of another shape.
    """
    if targets or stored:
        if stored:
            check_tiling(stored, shape)
        sources = stored_pieces(shape, stored)
        pieces = tuple(plan_piece(t, shape, dtype, sources) for t in (targets or (None,)))
    else:
        sources, whole = _whole_copy(shape, dtype)
        pieces = (whole,)
    return TensorPlan(
        key=key,
        dtype=dtype,
        shape=shape,
        source=source,
        reason=reason,
        sliced=bool(targets),
        pieces=pieces,
        source_sliced=bool(stored),
        stored=sources,
    )


@functools.lru_cache(maxsize=4096)
def _whole_copy(shape: tuple[int, ...], dtype: DType) -> tuple[tuple[SourcePiece, ...], PiecePlan]:
    """The plan of a tensor stored whole and written whole, the common case: one copy.

    It depends on the shape and dtype only, and plans are immutable, so tensors
    of one shape and dtype share it (planning 100,000 keys would otherwise
    redo the same box arithmetic for each).
    """
    sources = stored_pieces(shape, ())
    return sources, plan_piece(None, shape, dtype, sources)


def plan_piece(
    target: SliceSpec | None,
    full_shape: tuple[int, ...],
    dtype: DType,
    sources: tuple[SourcePiece, ...],
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

    Raises:
        PartitionError: the stored pieces do not cover ``target`` exactly once.
    """
    request = target if target is not None else SliceSpec.full(full_shape)
    stored = [s.slice for s in sources if s.slice is not None]
    feed = plan_slice(stored or None, full_shape, request)
    shape = request.shape
    nbytes = math.prod(shape) * dtype.itemsize
    if feed.direct:
        source = sources[feed.pieces[0].index]
        return PiecePlan(target, shape, Method.COPY, source, nbytes=nbytes, feed=feed)
    if not dtype.is_string and nbytes > 0:
        runs = _runs(feed, sources, dtype.itemsize)
        if runs is not None:
            return PiecePlan(target, shape, Method.RANGES, runs=runs, nbytes=nbytes, feed=feed)
    return PiecePlan(target, shape, Method.ASSEMBLE, nbytes=nbytes, feed=feed)


def _runs(
    feed: SlicePlan, sources: tuple[SourcePiece, ...], itemsize: int
) -> tuple[Run, ...] | None:
    """Byte runs of stored pieces that concatenate to the piece in C order, if few enough.

    That holds when the pieces feeding it cut it along the first axis only:
    each part then spans the piece on every other axis, and the parts, in
    first-axis order, are the piece's rows in order.
    """
    target_shape = feed.target.shape
    if not target_shape:
        return None
    parts = sorted(feed.pieces, key=lambda p: p.target_box[0][0])
    rows = 0
    runs: list[Run] = []
    for part in parts:
        box = part.target_box
        if box[0][0] != rows or any(
            b != (0, d) for b, d in zip(box[1:], target_shape[1:], strict=True)
        ):
            return None
        rows = box[0][1]
        source = sources[part.index]
        src_shape = tuple(stop - start for start, stop in source.box)
        relative = SliceSpec(src_shape, tuple((s0, s1 - s0) for s0, s1 in part.source_box))
        ranges = byte_ranges(src_shape, itemsize, relative, max_ranges=MAX_RANGES_PER_PIECE)
        if ranges is None:
            return None
        runs.extend(Run(source, off, size) for off, size in ranges)
        if len(runs) > MAX_RANGES_PER_PIECE:
            return None
    if rows != target_shape[0]:
        return None
    return tuple(runs)
