"""Slices and partitions of tensors.

A :class:`SliceSpec` names one rectangular piece of a full tensor, the way
TensorFlow's ``shape_and_slices`` strings and ``TensorSliceProto`` do
(tf-checkpoint-format.md §6). This module works on shapes and numpy arrays
only; it knows nothing about files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ckptmap.errors import CkptmapError


class SliceSpecError(CkptmapError, ValueError):
    """A slice-spec string or extent list is malformed."""


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
        for dim, (start, length) in zip(self.full_shape, self.extents):
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
                if not sep:
                    raise ValueError
                extents.append((int(start_s), int(length_s)))
            except ValueError:
                raise SliceSpecError(f"slice spec {spec!r} has a bad extent {piece!r}") from None
        return cls(shape, tuple(extents))

    def format(self) -> str:
        """The ``shape_and_slices`` string of this slice (inverse of :meth:`parse`)."""
        dims = " ".join(str(d) for d in self.full_shape)
        ext = ":".join("-" if ln == -1 else f"{st},{ln}" for st, ln in self.extents)
        return f"{dims} {ext}"

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the slice itself."""
        return tuple(d if ln == -1 else ln for d, (_, ln) in zip(self.full_shape, self.extents))

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(st for st, _ in self.extents)

    @property
    def is_full(self) -> bool:
        """True when the slice covers the whole tensor (however it is spelled)."""
        return all(
            ln == -1 or (st == 0 and ln == d) for d, (st, ln) in zip(self.full_shape, self.extents)
        )

    def index(self) -> tuple[slice, ...]:
        """A numpy index selecting this slice from the full tensor."""
        return tuple(
            slice(0, d) if ln == -1 else slice(st, st + ln)
            for d, (st, ln) in zip(self.full_shape, self.extents)
        )

    def __str__(self) -> str:
        return self.format()
