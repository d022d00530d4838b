"""CRC-32C and its masked form (ckptmap/formats/crc.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ckptmap.formats.crc import crc32c, mask_crc, unmask_crc


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
