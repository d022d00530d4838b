"""CRC-32C combine (``ckptmap._crc``) against google_crc32c over real byte strings."""

from __future__ import annotations

import google_crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptmap._crc import crc32c_combine, crc32c_concat
from ckptmap.errors import UsageError


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


@settings(max_examples=300)
@given(st.binary(max_size=4096), st.data())
def test_combine_matches_a_direct_crc_over_random_splits(data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    parts = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert crc32c_concat((crc(p), len(p)) for p in parts) == crc(data)
    # pairwise, at one random cut
    cut = draw.draw(st.integers(0, len(data)))
    a, b = data[:cut], data[cut:]
    assert crc32c_combine(crc(a), crc(b), len(b)) == crc(data)


@settings(max_examples=50)
@given(st.binary(min_size=1, max_size=64), st.integers(1, 3 << 20))
def test_combine_with_long_runs_of_zeros(head: bytes, zeros: int) -> None:
    tail = bytes(zeros)
    assert crc32c_combine(crc(head), crc(tail), len(tail)) == crc(head + tail)


def test_combine_edge_cases() -> None:
    data = b"123456789"
    assert crc(data) == 0xE3069283  # the CRC-32C check value
    assert crc32c_combine(crc(data), 0, 0) == crc(data)  # appending nothing
    assert crc32c_combine(0, crc(data), len(data)) == crc(data)  # prepending nothing
    assert crc32c_concat([]) == 0
    with pytest.raises(UsageError):
        crc32c_combine(1, 2, -1)
