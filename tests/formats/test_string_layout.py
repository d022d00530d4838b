"""The string-tensor codec (ckptmap/formats/string_layout.py), against bytes TensorFlow wrote."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from ckptmap.formats.crc import mask_crc
from ckptmap.formats.string_layout import (
    StringLayoutError,
    check_layout,
    decode_layout,
    decode_lengths,
    encode_strings,
    require_lengths,
    split_strings,
    string_crc,
)
from ckptmap.readers import open_checkpoint

ZOO = FIXTURES / "dtype_zoo" / "zoo"


def _string_entries() -> list[tuple[str, bytes, int, int]]:
    """``(key, stored bytes, element count, stored masked CRC)`` of every string tensor TF wrote."""
    out = []
    with open_checkpoint(ZOO) as ckpt:
        for key in ckpt:
            entry = ckpt.entry(key)
            parts = [p for _, p in ckpt.slice_entries(key)] if entry.slices else [entry]
            for part in parts:
                if part.dtype.is_string:
                    data = bytes(ckpt.raw_bytes(part))
                    out.append((part.key, data, part.num_elements, part.crc32c))
    return out


TF_STRINGS = _string_entries()


def test_the_fixture_has_string_tensors() -> None:
    assert len(TF_STRINGS) >= 2


@pytest.mark.parametrize(("key", "data", "count", "crc"), TF_STRINGS)
def test_tf_bytes_decode_and_encode_back(key: str, data: bytes, count: int, crc: int) -> None:
    assert mask_crc(string_crc(data, count, "<")) == crc
    header_len, lengths, _ = decode_layout(data, count, "<")
    items = split_strings(data, header_len, lengths)
    assert len(items) == count
    chunks, size, encoded_crc = encode_strings(items, "<")
    assert b"".join(chunks) == data
    assert (size, mask_crc(encoded_crc)) == (len(data), crc)


@given(st.lists(st.binary(max_size=300), max_size=40), st.sampled_from(["<", ">"]))
def test_encode_then_decode(items: list[bytes], byte_order: str) -> None:
    chunks, size, crc = encode_strings(items, byte_order)
    data = b"".join(chunks)
    assert size == len(data)
    assert string_crc(data, len(items), byte_order) == crc
    header_len, lengths, _ = decode_layout(data, len(items), byte_order)
    assert split_strings(data, header_len, lengths) == items


def test_streaming_steps_need_only_the_head() -> None:
    chunks, size, _ = encode_strings([b"a" * 1000, b"bc"], "<")
    data = b"".join(chunks)
    head = data[:10]
    assert decode_lengths(np.frombuffer(head[:1], np.uint8), 2) is None  # read more
    header_len, lengths = require_lengths(decode_lengths(np.frombuffer(head, np.uint8), 2), 10)
    assert (header_len, lengths.tolist()) == (3, [1000, 2])
    check_layout(memoryview(head), header_len, lengths, size, "<")


@pytest.mark.parametrize(
    ("data", "count", "message"),
    [
        pytest.param(b"\x05", 1, "end inside the string lengths", id="truncated"),
        pytest.param(b"\xff" * 20, 1, "over-long varint", id="over-long"),
        pytest.param(b"\x05\x00\x00\x00\x00ab", 1, "do not add up to the 2 bytes", id="sum"),
        pytest.param(bytes.fromhex("02 00000000 6869"), 1, "checksum does not match", id="crc"),
        pytest.param(b"\x00\x00\x00\x00x", 0, "do not add up", id="bytes-after-empty"),
    ],
)
def test_layout_errors(data: bytes, count: int, message: str) -> None:
    with pytest.raises(StringLayoutError, match=message):
        string_crc(data, count, "<")


def test_hostile_lengths_do_not_wrap_around() -> None:
    # two lengths of 2**63 each: their uint64 sum wraps to 0
    varint = bytes([0x80] * 8 + [0x80])  # 9 continuation bytes: over-long for a length
    with pytest.raises(StringLayoutError):
        string_crc(varint * 2 + b"\x00" * 4, 2, "<")


def test_zero_elements_in_zero_bytes() -> None:
    assert string_crc(b"", 0, "<") == 0
    assert decode_layout(b"", 0, "<")[1].size == 0
    assert split_strings(b"", 0, np.zeros(0, np.uint64)) == []
