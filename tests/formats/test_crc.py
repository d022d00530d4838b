"""CRC-32C, its masked form and combining (ckptmap/formats/crc.py), against google_crc32c."""

from __future__ import annotations

import google_crc32c
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptmap.errors import UsageError
from ckptmap.formats.crc import crc32c, crc32c_combine, crc32c_concat, mask_crc, unmask_crc


def test_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


@given(st.binary(max_size=200_000), st.integers(0, 0xFFFFFFFF))
def test_every_buffer_kind_gives_the_same_crc(data: bytes, start: int) -> None:
    expected = crc32c(data, start)
    assert crc32c(bytearray(data), start) == expected
    assert crc32c(memoryview(data), start) == expected
    assert crc32c(np.frombuffer(data, np.uint8), start) == expected


def test_a_crc_continues_over_parts() -> None:
    data = bytes(range(256)) * 500
    assert crc32c(data[1000:], crc32c(data[:1000])) == crc32c(data)


@given(st.integers(0, 0xFFFFFFFF))
def test_unmask_inverts_mask(crc: int) -> None:
    assert unmask_crc(mask_crc(crc)) == crc
    assert 0 <= mask_crc(crc) <= 0xFFFFFFFF


# -- combining


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
