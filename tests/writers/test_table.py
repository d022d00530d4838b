"""The table builder (ckptmap/writers/_table.py): TF's exact algorithm, decoded independently."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import FIXTURES, table_entries

from ckptmap.errors import UsageError
from ckptmap.formats.crc import crc32c, mask_crc
from ckptmap.formats.table import FOOTER_SIZE, TABLE_MAGIC
from ckptmap.readers._table import read_table
from ckptmap.writers._table import (
    RESTART_INTERVAL,
    TableBuilder,
    build_table,
    short_successor,
    shortest_separator,
)

INDEXES = sorted(p for p in FIXTURES.rglob("*.index") if "golden" not in p.parts)
_U32 = struct.Struct("<I")


def _id(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


# -- a small decoder of our own that also exposes the builder's choices ----------------------


@dataclass(frozen=True)
class RawEntry:
    at: int  # offset of the entry in its block
    shared: int
    key: bytes
    value: bytes


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _decode_block(block: bytes) -> tuple[list[RawEntry], list[int]]:
    (count,) = _U32.unpack_from(block, len(block) - 4)
    end = len(block) - 4 - 4 * count
    restarts = [_U32.unpack_from(block, end + 4 * i)[0] for i in range(count)]
    entries, key, pos = [], b"", 0
    while pos < end:
        at = pos
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append(RawEntry(at, shared, key, block[pos : pos + length]))
        pos += length
    return entries, restarts


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


@dataclass(frozen=True)
class Decoded:
    blocks: list[bytes]  # data blocks
    index: list[RawEntry]  # index block entries (separator key -> handle)
    metaindex: bytes


def _decode(table: bytes) -> Decoded:
    footer = table[-FOOTER_SIZE:]
    assert struct.unpack("<Q", footer[-8:])[0] == TABLE_MAGIC
    meta_off, meta_size, pos = _handle(footer)
    index_off, index_size, _ = _handle(footer, pos)
    index, _ = _decode_block(table[index_off : index_off + index_size])
    blocks = []
    for entry in index:
        offset, size, _ = _handle(entry.value)
        blocks.append(table[offset : offset + size])
    return Decoded(blocks, index, table[meta_off : meta_off + meta_size])


# -- TensorFlow's own files --------------------------------------------------------------------


@pytest.mark.parametrize("index", INDEXES, ids=_id)
def test_rebuilding_a_tf_index_gives_tf_bytes(index: Path) -> None:
    entries = table_entries(index)
    assert build_table(entries) == index.read_bytes()


def test_documented_example() -> None:
    """The 142-byte index TF wrote for SaveV2(["w", "s"]), as dumped in §3.9."""
    header = bytes.fromhex("08 01 1a 02 08 01")
    entry_s = bytes.fromhex("08 07 12 04 12 02 08 01 20 08 28 07 35 09 eb 4d 15")
    entry_w = bytes.fromhex("08 01 12 04 12 02 08 02 28 08 35 59 3c e5 35")
    expected = bytes.fromhex(
        """
        00 00 06          08 01 1a 02 08 01
        00 01 11 73       08 07 12 04 12 02 08 01 20 08 28 07 35 09 eb 4d 15
        00 01 0f 77       08 01 12 04 12 02 08 02 28 08 35 59 3c e5 35
        00 00 00 00 01 00 00 00   00 57 40 56 5b
        00 00 00 00 01 00 00 00   00 c0 f2 a1 b0
        00 01 02 78 00 39 00 00 00 00 01 00 00 00   00 53 ee 0f 5d
        3e 08 4b 0e
        """
    )
    expected += bytes(36) + bytes.fromhex("57 fb 80 8b 24 75 47 db")
    assert build_table([(b"", header), (b"s", entry_s), (b"w", entry_w)]) == expected


# -- structure -----------------------------------------------------------------------------------


def test_multi_block_table_round_trips(tmp_path: Path) -> None:
    items = [(f"var_{i:05d}/kernel".encode(), bytes([i % 251]) * (i % 40)) for i in range(3000)]
    table = build_table(items, block_size=512, restart_interval=3)
    path = tmp_path / "t.index"
    path.write_bytes(table)
    assert table_entries(path) == items  # tests/helpers.py decoder
    read = read_table(path)  # the package's reader, which checks every block CRC
    assert [bytes(k) for k in read.keys] == [k for k, _ in items]
    decoded = _decode(table)
    assert len(decoded.blocks) > 100
    for block in decoded.blocks:
        entries, restarts = _decode_block(block)
        assert restarts == [e.at for e in entries[::3]]
        assert len(block) - len(entries[-1].value) < 512 + 64


def test_block_trailers_hold_type_and_masked_crc() -> None:
    table = build_table([(f"k{i:02d}".encode(), b"x" * 100) for i in range(50)], block_size=1024)
    footer = table[-FOOTER_SIZE:]
    meta_off, meta_size, pos = _handle(footer)
    index_off, index_size, _ = _handle(footer, pos)
    handles = [_handle(e.value)[:2] for e in _decode(table).index]
    handles += [(meta_off, meta_size), (index_off, index_size)]
    for offset, size in handles:
        trailer = table[offset + size : offset + size + 5]
        assert trailer[0] == 0
        expected = mask_crc(crc32c(table[offset : offset + size] + b"\x00"))
        assert _U32.unpack(trailer[1:])[0] == expected
    assert _decode(table).metaindex == bytes.fromhex("0000000001000000")  # empty (§3.5)


def test_restarts_every_16_entries_with_maximal_sharing() -> None:
    keys = [f"layer/{i:03d}/w".encode() for i in range(40)]
    (block,) = _decode(build_table([(k, b"v") for k in keys])).blocks
    entries, restarts = _decode_block(block)
    assert [e.key for e in entries] == keys
    assert restarts == [entries[i].at for i in (0, 16, 32)]
    for i, entry in enumerate(entries):
        if i % RESTART_INTERVAL == 0:
            assert entry.shared == 0
        else:
            common = 0
            while keys[i][common] == keys[i - 1][common]:
                common += 1
            assert entry.shared == common > 0


def test_index_keys_separate_blocks() -> None:
    keys = [f"{c}{i:04d}".encode() for c in "abcdefgh" for i in range(200)]
    decoded = _decode(build_table([(k, b"v" * 20) for k in keys], block_size=2048))
    assert len(decoded.blocks) > 8
    firsts = [_decode_block(b)[0][0].key for b in decoded.blocks]
    lasts = [_decode_block(b)[0][-1].key for b in decoded.blocks]
    for i, entry in enumerate(decoded.index):
        assert entry.shared == 0  # the index block restarts at every entry
        assert lasts[i] <= entry.key
        if i + 1 < len(firsts):
            assert entry.key < firsts[i + 1]
            assert entry.key == shortest_separator(lasts[i], firsts[i + 1])
        else:
            assert entry.key == short_successor(lasts[i])


def test_overly_large_entry_starts_a_new_block() -> None:
    """table_builder.cc: an entry of >= 2 * block_size bytes flushes the block before it."""
    items = [(b"a", b"1"), (b"b", b"x" * 300), (b"c", b"2")]
    blocks = _decode(build_table(items, block_size=100)).blocks
    assert [[e.key for e in _decode_block(b)[0]] for b in blocks] == [[b"a"], [b"b"], [b"c"]]
    # just under the ratio: no early flush, the entry joins the current block
    items = [(b"a", b"1"), (b"b", b"x" * 150)]
    blocks = _decode(build_table(items, block_size=100)).blocks
    assert [[e.key for e in _decode_block(b)[0]] for b in blocks] == [[b"a", b"b"]]


def test_empty_table() -> None:
    table = build_table([])
    decoded = _decode(table)
    assert decoded.blocks == []
    assert decoded.index == []
    assert len(table) == 2 * (8 + 5) + FOOTER_SIZE


def test_streams_blocks_to_the_file() -> None:
    out = io.BytesIO()
    builder = TableBuilder(out, block_size=256)
    for i in range(100):
        builder.add(f"k{i:03d}".encode(), b"v" * 10)
    assert out.tell() > 0  # full blocks were written before finish()
    assert builder.num_entries == 100
    size = builder.finish()
    assert size == len(out.getvalue())


# -- separators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "limit", "expected"),
    [
        (b"abc", b"abe", b"abd"),
        (b"abc1234", b"abz", b"abd"),
        (b"abc", b"abd", b"abc"),  # the incremented byte would equal limit's
        (b"ab", b"abc", b"ab"),  # a prefix: unchanged
        (b"", b"a", b""),
        (b"a\xff\x01", b"a\xff\x05", b"a\xff\x02"),
        (b"\xff", b"\xff\x01", b"\xff"),
        (b"var_004370/kk", b"var_004371/kk", b"var_004370/kk"),  # §3.6
        (b"a", b"c", b"b"),
    ],
)
def test_shortest_separator(start: bytes, limit: bytes, expected: bytes) -> None:
    separator = shortest_separator(start, limit)
    assert separator == expected
    assert start <= separator < limit


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"w", b"x"),
        (b"enc/w2", b"f"),  # §3.6
        (b"\xff\xffab", b"\xff\xffb"),
        (b"\xff\xff", b"\xff\xff"),
        (b"", b""),
        (b"\x00", b"\x01"),
    ],
)
def test_short_successor(key: bytes, expected: bytes) -> None:
    assert short_successor(key) == expected
    assert short_successor(key) >= key


# -- misuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [[b"b", b"a"], [b"a", b"a"], [b"\xff", b"\x00"]])
def test_keys_must_increase_as_unsigned_bytes(keys: list[bytes]) -> None:
    builder = TableBuilder(io.BytesIO())
    builder.add(keys[0], b"")
    with pytest.raises(UsageError, match="strictly increasing"):
        builder.add(keys[1], b"")


def test_finish_twice_and_add_after_finish() -> None:
    builder = TableBuilder(io.BytesIO())
    builder.add(b"a", b"")
    builder.finish()
    with pytest.raises(UsageError, match="twice"):
        builder.finish()
    with pytest.raises(UsageError, match="after finish"):
        builder.add(b"b", b"")


def test_bad_parameters() -> None:
    with pytest.raises(UsageError, match="at least 1"):
        TableBuilder(io.BytesIO(), block_size=0)
