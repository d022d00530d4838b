"""The index table decoder (ckptmap/readers/_table.py), checked on TF-written files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import FIXTURES, data_blocks, table_entries

from ckptmap.formats.table import FOOTER_SIZE, encode_varint
from ckptmap.readers._table import (
    BlockHandle,
    TableFormatError,
    decode_block,
    decode_block_handle,
    decode_footer,
    decode_restarts,
    decode_varint,
    read_block,
    read_table,
)
from ckptmap.writers._table import RESTART_INTERVAL, _BlockBuilder

INDEXES = sorted(p for p in FIXTURES.rglob("*.index") if "golden" not in p.parts)
EMPTY_BLOCK = bytes.fromhex("0000000001000000")  # tf-checkpoint-format.md §3.1


def _id(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


@pytest.mark.parametrize("index", INDEXES, ids=_id)
def test_table_matches_an_independent_reading(index: Path) -> None:
    table = read_table(index)
    assert list(zip(table.keys, map(bytes, table.values), strict=True)) == table_entries(index)


@pytest.mark.parametrize("index", INDEXES, ids=_id)
def test_keys_start_with_the_header_and_increase(index: Path) -> None:
    keys = read_table(index).keys
    assert keys[0] == b""
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False))


@pytest.mark.parametrize("index", INDEXES, ids=_id)
def test_footer_points_at_an_empty_metaindex_and_the_index_block(index: Path) -> None:
    data = memoryview(index.read_bytes())
    footer, end = decode_footer(data, len(data) - FOOTER_SIZE)
    assert end == len(data)
    limit = len(data) - FOOTER_SIZE
    assert bytes(read_block(data, footer.metaindex, limit, "metaindex")) == EMPTY_BLOCK
    index_block = read_block(data, footer.index, limit, "index block")
    handles: list[memoryview] = []
    decode_block(index_block, 0, [], handles, "the index block")
    restarts, _ = decode_restarts(index_block, 0)
    assert len(restarts) == len(handles)  # the index block restarts at every entry (§3.6)
    decoded = [decode_block_handle(h, 0, len(h))[0] for h in handles]
    assert decoded == [BlockHandle(b.offset, b.size) for b in data_blocks(index)]


def test_data_block_restarts_every_16_entries() -> None:
    index = FIXTURES / "dtype_zoo" / "zoo.index"
    data = memoryview(index.read_bytes())
    (block,) = data_blocks(index)
    contents = read_block(data, BlockHandle(block.offset, block.size), len(data), "data")
    keys: list[bytes] = []
    end = decode_block(contents, 0, keys, [], "data")
    restarts, entries_end = decode_restarts(contents, 0)
    assert end == entries_end
    assert len(restarts) == math.ceil(len(keys) / 16)


def _block(*keys: bytes) -> memoryview:
    """A block holding ``keys`` in the given order (the builder does not sort: for errors)."""
    builder = _BlockBuilder(RESTART_INTERVAL)
    for key in keys:
        builder.add(key, b"v")
    return memoryview(builder.finish())


def test_keys_must_increase_within_a_block_and_across_blocks() -> None:
    keys: list[bytes] = []
    decode_block(_block(b"", b"a", b"b"), 0, keys, [], "data block 0")
    decode_block(_block(b"c", b"d"), 0, keys, [], "data block 1")
    assert keys == [b"", b"a", b"b", b"c", b"d"]
    with pytest.raises(TableFormatError, match=r"key b'a' in data block 0 is not greater"):
        decode_block(_block(b"b", b"a"), 0, [], [], "data block 0")
    with pytest.raises(TableFormatError, match=r"key b'b' in data block 1 is not greater"):
        decode_block(_block(b"b"), 0, [b"a", b"b"], [], "data block 1")  # a repeated key
    with pytest.raises(TableFormatError, match=r"key b'a' in data block 1 is not greater"):
        decode_block(_block(b"a", b"c"), 0, [b"b"], [], "data block 1")


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32 - 1, 2**63, 2**64 - 1])
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(memoryview(encoded + b"\x01"), 0, len(encoded), 10) == (
        value,
        len(encoded),
    )


@pytest.mark.parametrize(
    ("data", "limit", "max_bytes"),
    [
        pytest.param(b"\xff" * 11, 11, 10, id="over-long"),
        pytest.param(b"\x80\x80", 2, 10, id="truncated"),
        pytest.param(b"\xac\x02", 1, 10, id="past-limit"),
        pytest.param(b"\x80\x80\x80\x80\x80\x01", 6, 5, id="too-long-for-varint32"),
    ],
)
def test_hostile_varints_are_rejected(data: bytes, limit: int, max_bytes: int) -> None:
    with pytest.raises(TableFormatError, match="truncated or over-long varint"):
        decode_varint(memoryview(data), 0, limit, max_bytes)


@pytest.mark.tf
def test_multi_block_index_written_by_tf(tf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = [f"var_{i:05d}/{'k' * 80}" for i in range(4000)]  # ~440 KB: two data blocks
    prefix = str(tmp_path / "many")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(float(i)) for i in range(len(names))],
    )
    index = tmp_path / "many.index"
    assert len(data_blocks(index)) >= 2
    table = read_table(index)
    assert table.keys == [b"", *sorted(n.encode() for n in names)]
    assert list(zip(table.keys, map(bytes, table.values), strict=True)) == table_entries(index)
