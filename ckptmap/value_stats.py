"""Summary statistics of tensor values (``inspect --stats``), computed chunk by chunk.

A tensor is never assembled for its statistics: its stored pieces are read
one after another, and each is summarised in float64 chunks of
:data:`STATS_CHUNK_ELEMENTS` values, merged as they come. This module is
loaded only when statistics are asked for: a listing needs neither it nor
numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["STATS_CHUNK_ELEMENTS", "TensorStats", "value_stats"]

STATS_CHUNK_ELEMENTS = 1 << 20  # statistics are computed in float64 chunks of this many values
_PACKED_INTEGERS = frozenset({"int4", "uint4", "int2", "uint2"})  # ml_dtypes integers (kind "V")


@dataclass(frozen=True, slots=True)
class TensorStats:
    """Summary statistics of a tensor's values.

    ``min``, ``max``, ``mean`` and ``std`` cover the finite values only (they
    are ``None`` when there are none); ``nan`` and ``inf`` count the others.
    ``min`` and ``max`` are exact integers for integer and bool tensors.
    """

    min: float | int | None
    max: float | int | None
    mean: float | None
    std: float | None
    nan: int
    inf: int

    def to_json(self) -> dict[str, Any]:
        return {
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "nan": self.nan,
            "inf": self.inf,
        }


def value_stats(
    arrays: Iterable[np.ndarray], dtype: np.dtype[Any], name: str
) -> TensorStats | None:
    """The statistics of all values of ``arrays``, the pieces of one tensor.

    Args:
        arrays: the pieces, in any shape; taken one at a time, and not at all
            for a dtype without statistics.
        dtype: their numpy dtype.
        name: the tensor's dtype name (``int4`` and the other packed integers
            get exact bounds like numpy's integers).

    Returns:
        ``None`` for strings and complex numbers.
    """
    if dtype.kind in "Oc":
        return None
    exact = dtype.kind in "iub" or name in _PACKED_INTEGERS
    moments = _Moments()
    for array in arrays:
        flat = array.reshape(-1)
        for start in range(0, flat.size, STATS_CHUNK_ELEMENTS):
            moments.add(flat[start : start + STATS_CHUNK_ELEMENTS], exact_bounds=exact)
    return moments.result()


@dataclass(slots=True)
class _Moments:
    """Running statistics, merged chunk by chunk (Chan et al.'s parallel algorithm)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float | int | None = None
    high: float | int | None = None
    nan: int = 0
    inf: int = 0

    def add(self, chunk: np.ndarray, *, exact_bounds: bool) -> None:
        import numpy as np

        values = chunk.astype(np.float64)
        finite = np.isfinite(values)
        nan = int(np.isnan(values).sum())
        self.nan += nan
        self.inf += int(values.size - nan - int(finite.sum()))
        kept = values if bool(finite.all()) else values[finite]
        if kept.size == 0:
            return
        bounds = chunk if exact_bounds else kept
        low, high = _as_number(bounds.min()), _as_number(bounds.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        n = int(kept.size)
        mean = float(kept.mean())
        m2 = float(np.square(kept - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def result(self) -> TensorStats:
        if not self.count:
            return TensorStats(None, None, None, None, self.nan, self.inf)
        std = math.sqrt(self.m2 / self.count)
        return TensorStats(self.low, self.high, self.mean, std, self.nan, self.inf)


def _as_number(value: Any) -> float | int:
    import numpy as np

    if isinstance(value, (np.integer, np.bool_)):
        return int(value)
    return float(value)
