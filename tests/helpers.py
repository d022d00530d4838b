"""Small tools for tests: damage copies of real fixtures, read the golden files.

The table helpers here are deliberately independent of ``ckptmap.readers``
and ``ckptmap.writers``: they locate and rewrite entries of a TF-written
``.index`` so corruption tests can change exactly one thing. A test checks
that rewriting an index without changes gives back TF's bytes.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from ckptmap.dtypes import dtype_from_name
from ckptmap.formats.crc import crc32c, mask_crc
from ckptmap.formats.table import encode_varint
from ckptmap.proto import ckptmap_tf_pb2

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOLDEN_JSONS = sorted((FIXTURES / "golden").glob("*/*.json"))
_U32 = struct.Struct("<I")
_FOOTER_SIZE = 48
_MAGIC = bytes.fromhex("57fb808b247547db")


# -- byte-level damage ----------------------------------------------------------


def flip_byte(path: str | os.PathLike[str], offset: int, mask: int = 0xFF) -> None:
    """XOR one byte of a file with ``mask`` (a negative offset counts from the end)."""
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= mask
    Path(path).write_bytes(bytes(data))


def truncate(path: str | os.PathLike[str], size: int) -> None:
    """Cut a file to ``size`` bytes."""
    with open(path, "r+b") as file:
        file.truncate(size)


# -- an independent, minimal view of a TF table (tf-checkpoint-format.md §3) ----


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    (count,) = _U32.unpack_from(block, len(block) - 4)
    end = len(block) - 4 - 4 * count
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


@dataclass(frozen=True)
class BlockLocation:
    offset: int
    size: int


def data_blocks(path: str | os.PathLike[str]) -> list[BlockLocation]:
    """The data blocks of an ``.index`` file, from its footer and index block."""
    data = Path(path).read_bytes()
    footer = data[-_FOOTER_SIZE:]
    _, pos = _varint(footer, 0)
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    blocks = []
    for _, handle in _block_entries(data[index_offset : index_offset + index_size]):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        blocks.append(BlockLocation(offset, size))
    return blocks


def table_entries(path: str | os.PathLike[str]) -> list[tuple[bytes, bytes]]:
    """Every key and value of an ``.index`` file, in file order."""
    data = Path(path).read_bytes()
    entries = []
    for block in data_blocks(path):
        entries += _block_entries(data[block.offset : block.offset + block.size])
    return entries


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        out += encode_varint(shared) + encode_varint(len(key) - shared)
        out += encode_varint(len(value)) + key[shared:] + value
        last = key
    restarts = restarts or [0]
    return bytes(out) + b"".join(_U32.pack(r) for r in restarts) + _U32.pack(len(restarts))


def _with_trailer(block: bytes) -> bytes:
    return block + b"\x00" + _U32.pack(mask_crc(crc32c(block + b"\x00")))


def _successor(key: bytes) -> bytes:
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def write_table(path: str | os.PathLike[str], entries: list[tuple[bytes, bytes]]) -> None:
    """Write ``entries`` as a one-data-block table laid out the way TF lays out small indexes."""
    data = _block(entries, 16)
    metaindex_at = len(data) + 5
    metaindex = _block([], 16)
    index_at = metaindex_at + len(metaindex) + 5
    handle = encode_varint(0) + encode_varint(len(data))
    index = _block([(_successor(entries[-1][0]), handle)], 1)
    handles = encode_varint(metaindex_at) + encode_varint(len(metaindex))
    handles += encode_varint(index_at) + encode_varint(len(index))
    footer = handles.ljust(_FOOTER_SIZE - 8, b"\x00") + _MAGIC
    out = _with_trailer(data) + _with_trailer(metaindex) + _with_trailer(index) + footer
    Path(path).write_bytes(out)


def rewrite_entry(
    index: str | os.PathLike[str],
    key: bytes,
    change: Callable[[Any], None],
) -> None:
    """Decode the entry of ``key`` in a copied index, let ``change`` edit it, write it back.

    ``change`` gets the ``BundleEntryProto`` (or ``BundleHeaderProto`` for key
    ``b""``); the table is rewritten with correct lengths and block CRCs, so
    only the entry is wrong.
    """
    entries = table_entries(index)
    cls = ckptmap_tf_pb2.BundleHeaderProto if key == b"" else ckptmap_tf_pb2.BundleEntryProto
    for i, (k, value) in enumerate(entries):
        if k == key:
            proto = cls.FromString(value)
            change(proto)
            entries[i] = (k, proto.SerializeToString())
            break
    else:
        raise KeyError(key)
    write_table(index, entries)


def set_block_compression(index: str | os.PathLike[str], block: BlockLocation, ctype: int) -> None:
    """Mark a block with compression type ``ctype`` and give it a matching CRC."""
    data = bytearray(Path(index).read_bytes())
    end = block.offset + block.size
    data[end] = ctype
    crc = crc32c(bytes(data[block.offset : end + 1]))
    data[end + 1 : end + 5] = _U32.pack(mask_crc(crc))
    Path(index).write_bytes(bytes(data))


# -- golden values -----------------------------------------------------------------


@dataclass(frozen=True)
class GoldenTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    value: np.ndarray


@dataclass(frozen=True)
class Golden:
    """TF's own reading of one fixture checkpoint (fixtures/README.md, "Golden format")."""

    json_path: Path
    prefix: Path
    tensors: list[GoldenTensor]

    @property
    def id(self) -> str:
        return f"{self.json_path.parent.name}/{self.json_path.stem}"


def load_golden(json_path: Path) -> Golden:
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    arrays = np.load(json_path.with_suffix(".npz"), allow_pickle=False)
    tensors = []
    for var in doc["variables"]:
        shape = tuple(var["shape"])
        encoding = var["encoding"]
        if encoding == "strings-hex-json":
            items = [bytes.fromhex(h) for h in var["value_hex"]]
            value = np.empty(len(items), dtype=object)
            value[:] = items
            value = value.reshape(shape)
        else:
            stored = arrays[var["name"]]
            target = dtype_from_name(var["dtype"]).numpy
            if encoding in ("uint16-view", "uint8-view"):
                value = stored.view(target)
            elif encoding in ("native", "int8-value", "uint8-value"):
                value = stored.astype(target)
            else:
                raise ValueError(f"unknown golden encoding {encoding!r}")
        tensors.append(GoldenTensor(var["name"], var["dtype"], shape, value))
    return Golden(json_path, FIXTURES / doc["prefix"], tensors)


def assert_same_values(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal shapes, dtypes and values (NaN equal to NaN, bytes compared as bytes)."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    if actual.dtype == object:
        assert actual.tolist() == expected.tolist()
    elif actual.dtype.kind == "V" or actual.dtype in _ML_FLOATS:
        # ml_dtypes scalars: compare the bits, which is exact and NaN-safe
        width = f"u{actual.dtype.itemsize}"
        np.testing.assert_array_equal(actual.view(width), expected.view(width))
    else:
        np.testing.assert_array_equal(actual, expected)


_ML_FLOATS = {
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(ml_dtypes.float8_e5m2),
    np.dtype(ml_dtypes.float8_e4m3fn),
}


# -- a big-endian copy (tf-checkpoint-format.md §5.4) ---------------------------------


def _string_lengths(raw: bytes, count: int) -> tuple[list[int], int]:
    lengths, pos = [], 0
    for _ in range(count):
        length, pos = _varint(raw, pos)
        lengths.append(length)
    return lengths, pos


def _to_big_endian_bytes(raw: bytes, entry: Any) -> tuple[bytes, int]:
    """The bytes of one stored tensor in big-endian layout, and their masked CRC."""
    from ckptmap.dtypes import BY_ENUM

    dtype = BY_ENUM[entry.dtype]
    count = int(np.prod([d.size for d in entry.shape.dim], dtype=np.int64))
    if not dtype.is_string:
        unit = dtype.itemsize // 2 if dtype.numpy.kind == "c" else dtype.itemsize
        if unit > 1:
            raw = np.frombuffer(raw, dtype=f"<u{unit}").byteswap().tobytes()
        return raw, mask_crc(crc32c(raw))
    if not raw:
        return raw, mask_crc(0)
    lengths, pos = _string_lengths(raw, count)
    length_crc = crc32c(b"".join(n.to_bytes(4, "big") for n in lengths))
    checksum = mask_crc(length_crc).to_bytes(4, "big")
    out = raw[:pos] + checksum + raw[pos + 4 :]
    crc = crc32c(raw[pos + 4 :], crc32c(checksum, length_crc))
    return out, mask_crc(crc)


def to_big_endian(src: Path, dst: Path) -> None:
    """Copy the checkpoint at prefix ``src`` to ``dst`` as a big-endian bundle.

    Numeric elements are byte-swapped, string length checksums are computed
    over big-endian lengths and stored big-endian, CRCs are recomputed and the
    header says ``endianness: BIG``, as TF writes on a big-endian host.
    """
    entries = table_entries(src.with_name(src.name + ".index"))
    header = ckptmap_tf_pb2.BundleHeaderProto.FromString(entries[0][1])
    shards = [
        bytearray(Path(f"{src}.data-{i:05d}-of-{header.num_shards:05d}").read_bytes())
        for i in range(header.num_shards)
    ]
    header.endianness = ckptmap_tf_pb2.BundleHeaderProto.BIG
    out = [(b"", header.SerializeToString())]
    for key, value in entries[1:]:
        entry = ckptmap_tf_pb2.BundleEntryProto.FromString(value)
        if not entry.slices:
            shard = shards[entry.shard_id]
            raw = bytes(shard[entry.offset : entry.offset + entry.size])
            swapped, entry.crc32c = _to_big_endian_bytes(raw, entry)
            shard[entry.offset : entry.offset + entry.size] = swapped
        out.append((key, entry.SerializeToString()))
    for i, data in enumerate(shards):
        Path(f"{dst}.data-{i:05d}-of-{header.num_shards:05d}").write_bytes(bytes(data))
    write_table(dst.with_name(dst.name + ".index"), out)


def table_blocks(path: str | os.PathLike[str]) -> list[BlockLocation]:
    """Every block of an ``.index`` file: data blocks, the metaindex and the index block."""
    data = Path(path).read_bytes()
    footer = data[-_FOOTER_SIZE:]
    meta_offset, pos = _varint(footer, 0)
    meta_size, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    extra = [BlockLocation(meta_offset, meta_size), BlockLocation(index_offset, index_size)]
    return data_blocks(path) + extra


def fix_block_crcs(data: bytearray, blocks: list[BlockLocation]) -> None:
    """Recompute the trailer CRC of each block in ``data`` (after bytes inside were changed)."""
    for block in blocks:
        end = block.offset + block.size
        if end + 5 <= len(data):
            crc = crc32c(bytes(data[block.offset : end + 1]))
            data[end + 1 : end + 5] = _U32.pack(mask_crc(crc))
