"""Mutation fuzzing of ckptmap's readers, as a benchmark (issue 13, item 7).

Mutates the bytes of real inputs, the fixtures TensorFlow wrote (``.index`` files,
``graph.pbtxt``, ``.meta``, ``saved_model.pb``, a binary GraphDef and JSON specs
made from the fixtures), for a given time with a fixed seed, and calls the public
readers on each mutant in-process:

* ``index``: ``ckptmap.readers.tf_bundle.open_checkpoint`` on a copy folder of the
  checkpoint with the mutated index, then ``keys()``, ``specs()``, ``verify()`` and,
  when the data check passes, ``read()`` of every key;
* ``pbtxt``, ``meta``, ``pb``, ``saved_model``, ``json``:
  ``ckptmap.readers.graph.read_model_spec`` on the mutated file.

Mutations: bit flips, interesting bytes, truncation, insertion (random bytes and
format tokens such as ``\\y`` or ``2**70``), deletion, duplication of chunks and
splicing with another seed; plus structure-aware ones that get past the first
check: index blocks with their CRCs fixed up, and index entries decoded, changed
field by field (dtype, shape, rank 65, offsets, slices, header) and re-encoded
into a valid table, optionally with the data CRC recomputed; graph nodes changed
in their shape, dtype and string constants. The graphs are used whole and pruned
to the nodes ckptmap reads (variables, the Saver's scope), which is far cheaper
per iteration and reaches the same code.

Findings, each saved with the reproducing bytes under ``--findings``:

* any exception that is not a ``CkptmapError`` (the first few are printed with
  their tracebacks);
* any call over 5 s (a per-call ``setitimer`` alarm; a watchdog in the parent
  kills a worker stuck in C code);
* a peak RSS over 1 GiB.

The exit status is 1 when there is a finding. ``--replay FILE --target T`` runs one
saved input again, with its traceback.

    .venv/bin/python bench/fuzz.py --seconds 60 --seed 1 --jobs 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import mmap
import os
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import google_crc32c

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ckptmap.errors import CkptmapError  # noqa: E402
from ckptmap.proto import ckptmap_tf_pb2  # noqa: E402
from ckptmap.readers.graph import read_model_spec  # noqa: E402
from ckptmap.readers.tf_bundle import open_checkpoint  # noqa: E402

FIXTURES = REPO / "fixtures"
CALL_LIMIT = 5.0  # seconds per call
SLOW = 0.5  # a worker's slowest call above this is saved (not a finding)
RSS_LIMIT = 1 << 30  # bytes
WATCHDOG = 30.0  # seconds without progress before the parent kills a worker
SAVED_PER_SIGNATURE = 3
PRINTED = 5
_MAGIC = bytes.fromhex("57fb808b247547db")
_U32 = struct.Struct("<I")
_CRC_DELTA = 0xA282EAD8
MASK32 = 0xFFFFFFFF

# Values that sit on the edges readers must check.
INTERESTING_INTS = (
    -(2**63), -(2**31), -2, -1, 0, 1, 2, 3, 7, 63, 64, 65, 127, 128, 255, 256,
    2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**62, 2**62 + 1, 2**63 - 1,
)  # fmt: skip
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x0A)
TOKENS = (
    b"\\y", b"\\", b"\\x", b"\\u12", b"\\U00110000", b"\\777", b"\\ud800", b"\\ud83d\\ude00",
    b"\\?", b"\\x4", b'"', b"'", b"{", b"}", b"[", b"]", b"<", b">", b":", b",", b"#", b"\n",
    b"\n}\n", b"node {\n", b"  attr {\n", b"size: ", b"dim {\n", b"-1", b"-2", b"0", b"-0",
    b"99999999999999999999", b"1180591620717411303424", b"4611686018427387905",
    b"0x7fffffffffffffff", b"077", b"1e400", b"nan", b"DT_STRING", b"DT_RESOURCE", b"DT_FLOAT",
    b"unknown_rank: true", b"true", b"null", b"-", b"9" * 5000, b"[" * 200, b"{" * 200,
    b"\xff\xfe", b"\xc3\x28", b"\x00",
)  # fmt: skip


def mask_crc(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _CRC_DELTA) & MASK32


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


# ---------------------------------------------------------------------------
# A minimal, independent TF table codec (tf-checkpoint-format.md §3), for seeds
# and for re-encoding mutated entries. It never validates: that is the reader's job.
# ---------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


_SMALL_VARINTS = [bytes((v,)) for v in range(128)]


def _put_varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    out = bytearray()
    value &= (1 << 64) - 1
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


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


def decode_table(data: bytes) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, int]]]:
    """The (key, value) entries of a well-formed table and its blocks' (offset, size)."""
    footer = data[-48:]
    pos = 0
    meta_off, pos = _varint(footer, pos)
    meta_size, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    blocks = [(meta_off, meta_size), (index_off, index_size)]
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(data[index_off : index_off + index_size]):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        blocks.append((off, size))
        entries.extend(_block_entries(data[off : off + size]))
    return entries, blocks


def _encode_block(entries: Sequence[tuple[bytes, bytes]], restart_every: int) -> bytes:
    out = bytearray()
    restarts = []
    previous = b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(out))
        else:
            limit = min(len(previous), len(key))
            while shared < limit and previous[shared] == key[shared]:
                shared += 1
        out += _put_varint(shared) + _put_varint(len(key) - shared) + _put_varint(len(value))
        out += key[shared:] + value
        previous = key
    if not restarts:
        restarts.append(0)
    for r in restarts:
        out += _U32.pack(r)
    out += _U32.pack(len(restarts))
    return bytes(out)


def encode_table(entries: Sequence[tuple[bytes, bytes]], rng: random.Random) -> bytes:
    """A table of ``entries`` as given (unsorted or duplicated keys stay so)."""
    out = bytearray()

    def add_block(block: bytes) -> bytes:
        handle = _put_varint(len(out)) + _put_varint(len(block))
        out.extend(block)
        out.append(0)
        out.extend(_U32.pack(mask_crc(crc32c(block + b"\x00"))))
        return handle

    per_block = rng.choice((len(entries) or 1, 1, 2, 5, 16))
    restart_every = rng.choice((1, 2, 16))
    index = []
    for start in range(0, max(len(entries), 1), per_block):
        chunk = entries[start : start + per_block]
        handle = add_block(_encode_block(chunk, restart_every))
        index.append((chunk[-1][0] if chunk else b"", handle))
    meta_handle = add_block(_encode_block([], 1))
    index_handle = add_block(_encode_block(index, 1))
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + _MAGIC
    return bytes(out + footer)


# ---------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class IndexSeed:
    """One checkpoint: its index bytes, decoded entries, blocks and data shards."""

    name: str
    folder: Path  # the fixture folder
    prefix: str
    data: bytes
    entries: list[tuple[bytes, bytes]]
    blocks: list[tuple[int, int]]
    shards: list[bytes]


@dataclasses.dataclass
class GraphSeed:
    """A graph file's bytes; ``nodes`` (pbtxt blocks or serialized NodeDefs) if structured."""

    name: str
    data: bytes
    nodes: list[bytes] = dataclasses.field(default_factory=list)
    wrap: Callable[[list[bytes]], bytes] | None = None


def index_seeds() -> list[IndexSeed]:
    seeds = []
    for index in sorted(FIXTURES.glob("*/*.index")):
        prefix = index.name[: -len(".index")]
        data = index.read_bytes()
        entries, blocks = decode_table(data)
        header = ckptmap_tf_pb2.BundleHeaderProto.FromString(entries[0][1])
        shards = [
            (index.parent / f"{prefix}.data-{i:05d}-of-{header.num_shards:05d}").read_bytes()
            for i in range(header.num_shards)
        ]
        seeds.append(
            IndexSeed(
                f"{index.parent.name}/{index.name}",
                index.parent,
                prefix,
                data,
                entries,
                blocks,
                shards,
            )  # fmt: skip
        )
    return seeds


_SAVE_SCOPE = re.compile(r"^(?:.*/)?save(?:_\d+)?/")
_VARIABLE_OPS = {"VariableV2", "VarHandleOp", "Variable"}


def _kept(name: str, op: str) -> bool:
    """The nodes the graph reader looks at: variables, the Saver's nodes, optimizer updates."""
    return op in _VARIABLE_OPS or bool(_SAVE_SCOPE.match(name)) or "/update_" in name


def _update_scope(name: str) -> str | None:
    """``Adam/update_dense/kernel/ApplyAdam`` -> ``Adam/update_dense/kernel``, else None.

    Only the names of optimizer update ops are read (they tell trainable
    variables), so pruned graphs keep one bare node per update scope.
    """
    if "/update_" not in name or _SAVE_SCOPE.match(name):
        return None
    return name.rpartition("/")[0]


def pbtxt_seeds() -> list[GraphSeed]:
    seeds = []
    head = re.compile(r'node \{\n  name: "([^"]*)"\n  op: "([^"]*)"\n')
    for path in sorted(FIXTURES.glob("*/graph.pbtxt")):
        text = path.read_bytes()
        blocks = [b + b"\n}\n" for b in text.split(b"\n}\n")[:-1]]
        kept = []
        scopes: set[str] = set()
        for block in blocks:
            match = head.match(block.decode())
            if match is not None and not _kept(match[1], match[2]):
                continue
            scope = None if match is None else _update_scope(match[1])
            if scope is not None and match is not None:
                if scope in scopes:
                    continue
                scopes.add(scope)
                block = match[0].encode() + b"}\n"  # the name and op lines only
            kept.append(block)
        name = path.parent.name
        seeds.append(GraphSeed(f"{name}/graph.pbtxt", text))
        seeds.append(GraphSeed(f"{name}/graph.pbtxt(pruned)", b"".join(kept), kept, b"".join))
    return seeds


def _graph_nodes(graph: ckptmap_tf_pb2.GraphDef) -> list[bytes]:
    nodes = []
    scopes: set[str] = set()
    for node in graph.node:
        if not _kept(node.name, node.op):
            continue
        scope = _update_scope(node.name)
        if scope is not None:
            if scope in scopes:
                continue
            scopes.add(scope)
            node = ckptmap_tf_pb2.NodeDef(name=node.name, op=node.op)
        nodes.append(node.SerializeToString())
    return nodes


def _graph_bytes(nodes: list[bytes]) -> bytes:
    """A serialized GraphDef of serialized NodeDefs (field 1, length-delimited)."""
    return b"".join(b"\x0a" + _put_varint(len(n)) + n for n in nodes)


def _field(number: int, payload: bytes) -> bytes:
    return _put_varint(number << 3 | 2) + _put_varint(len(payload)) + payload


def _meta_bytes(rest: bytes, nodes: list[bytes]) -> bytes:
    """A serialized MetaGraphDef: its fields but the graph, then a GraphDef of ``nodes``."""
    return rest + _field(2, _graph_bytes(nodes))


def binary_seeds() -> dict[str, list[GraphSeed]]:
    metas: list[GraphSeed] = []
    pbs: list[GraphSeed] = []
    saved: list[GraphSeed] = []
    for path in sorted(FIXTURES.glob("*/*.meta")):
        if "ckpt-50" in path.name:
            continue  # the same graph as ckpt-100
        data = path.read_bytes()
        meta = ckptmap_tf_pb2.MetaGraphDef.FromString(data)
        nodes = _graph_nodes(meta.graph_def)
        meta.ClearField("graph_def")
        rest = meta.SerializeToString()
        name = f"{path.parent.name}/{path.name}"
        metas.append(GraphSeed(name, data))
        metas.append(
            GraphSeed(
                f"{name}(pruned)",
                rest + _field(2, _graph_bytes(nodes)),
                nodes,
                functools.partial(_meta_bytes, rest),
            )
        )
        pbs.append(GraphSeed(f"{name}:graph_def(pruned)", _graph_bytes(nodes), nodes, _graph_bytes))
    for path in sorted(FIXTURES.glob("*/saved_model/saved_model.pb")):
        data = path.read_bytes()
        model = ckptmap_tf_pb2.SavedModel.FromString(data)
        first = model.meta_graphs[0]
        nodes = _graph_nodes(first.graph_def)
        first.ClearField("graph_def")
        rest_meta = first.SerializeToString()
        model.ClearField("meta_graphs")
        rest = model.SerializeToString()

        def wrap(ns: list[bytes], rest: bytes = rest, rest_meta: bytes = rest_meta) -> bytes:
            return rest + _field(2, rest_meta + _field(2, _graph_bytes(ns)))

        name = f"{path.parent.parent.name}/saved_model.pb"
        saved.append(GraphSeed(name, data))
        saved.append(GraphSeed(f"{name}(pruned)", wrap(nodes), nodes, wrap))
    return {"meta": metas, "pb": pbs, "saved_model": saved}


def json_seeds() -> list[GraphSeed]:
    seeds = []
    for index in sorted(FIXTURES.glob("*/*.index")):
        variables = []
        with open_checkpoint(index) as ckpt:
            for spec in ckpt.specs().values():
                entry: dict[str, Any] = {
                    "name": spec.key,
                    "dtype": spec.dtype.name,
                    "shape": list(spec.shape),
                }
                if spec.slices:
                    entry["partitions"] = {"slices": [s.format() for s in spec.slices]}
                variables.append(entry)
        text = json.dumps({"version": 1, "variables": variables}, indent=1).encode()
        seeds.append(GraphSeed(f"{index.parent.name}/{index.name}.json", text))
    return seeds


# ---------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------


def _pos(rng: random.Random, data: bytearray | bytes, extra: int = 0) -> int:
    return rng.randrange(len(data) + extra) if len(data) + extra > 0 else 0


def mutate_bytes(data: bytes, rng: random.Random, others: Sequence[bytes]) -> bytes:
    """One to four generic mutations."""
    buf: bytearray = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        op = rng.randrange(10)
        if op == 0 and buf:
            buf[_pos(rng, buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[_pos(rng, buf)] = rng.choice(INTERESTING_BYTES)
        elif op == 2 and buf:
            i = _pos(rng, buf)
            n = rng.choice((1, 2, 4, 8))
            buf[i : i + n] = bytes(rng.randrange(256) for _ in range(n))
        elif op == 3:
            del buf[_pos(rng, buf, 1) :]
        elif op == 4:
            i = _pos(rng, buf, 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 16))))
        elif op == 5:
            i = _pos(rng, buf, 1)
            buf[i:i] = rng.choice(TOKENS)
        elif op == 6 and buf:
            i = _pos(rng, buf)
            del buf[i : i + rng.choice((1, 2, 8, 64, 512))]
        elif op == 7 and buf:
            i = _pos(rng, buf)
            chunk = buf[i : i + rng.choice((1, 8, 64, 512, 4096))]
            j = _pos(rng, buf, 1)
            buf[j:j] = chunk * rng.choice((1, 1, 2, 16))
        elif op == 8 and others:
            other = rng.choice(others)
            if other:
                i = _pos(rng, other)
                piece = other[i : i + rng.choice((8, 64, 512, 4096))]
                j = _pos(rng, buf, 1)
                buf[j : j + rng.choice((0, len(piece)))] = piece
        elif op == 9 and buf:  # replace a number (text) or a varint-looking run (binary)
            _replace_number(buf, rng)
    return bytes(buf)


_NUMBER = re.compile(rb"-?\d+")


def _replace_number(buf: bytearray, rng: random.Random) -> None:
    match = _NUMBER.search(buf, _pos(rng, buf))
    if match is None:
        return
    value = rng.choice(INTERESTING_INTS) if rng.random() < 0.8 else rng.choice((2**70, -(2**70)))
    buf[match.start() : match.end()] = str(value).encode()


def mutate_index(seed: IndexSeed, rng: random.Random, others: Sequence[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return mutate_bytes(seed.data, rng, others)
    if roll < 0.5:  # flip bytes inside one block and fix its CRC, so decoding goes on
        buf = bytearray(seed.data)
        offset, size = rng.choice(seed.blocks)
        for _ in range(rng.choice((1, 1, 2, 4))):
            i = offset + rng.randrange(max(size, 1))
            if rng.random() < 0.5:
                buf[i] ^= 1 << rng.randrange(8)
            else:
                buf[i] = rng.choice(INTERESTING_BYTES)
        end = offset + size
        buf[end + 1 : end + 5] = _U32.pack(mask_crc(crc32c(bytes(buf[offset : end + 1]))))
        return bytes(buf)
    entries = list(seed.entries)
    for _ in range(rng.choice((1, 1, 2, 3))):
        _mutate_entries(entries, seed, rng)
    return encode_table(entries, rng)


def _mutate_entries(
    entries: list[tuple[bytes, bytes]], seed: IndexSeed, rng: random.Random
) -> None:
    if not entries:
        entries.append((b"", b""))
        return
    i = rng.randrange(len(entries))
    key, value = entries[i]
    op = rng.randrange(8)
    if op == 0:
        del entries[i]
    elif op == 1:
        entries.insert(rng.randrange(len(entries) + 1), (key, value))
    elif op == 2:
        j = rng.randrange(len(entries))
        entries[i], entries[j] = entries[j], entries[i]
    elif op == 3:
        entries[i] = (mutate_bytes(key, rng, ()), value)
    elif op == 4:
        entries[i] = (key, mutate_bytes(value, rng, ()))
    elif key == b"":
        entries[i] = (key, _mutate_header(value, rng))
    else:
        entries[i] = (key, _mutate_entry(value, seed, rng))


def _mutate_header(value: bytes, rng: random.Random) -> bytes:
    try:
        header = ckptmap_tf_pb2.BundleHeaderProto.FromString(value)
    except Exception:  # already damaged by an earlier mutation
        return value
    field = rng.randrange(4)
    number = rng.choice(INTERESTING_INTS)
    if field == 0:
        header.num_shards = max(-(2**31), min(number, 2**31 - 1))
    elif field == 1:
        header.endianness = rng.choice((0, 1, 2, -1))
    elif field == 2:
        header.version.min_consumer = max(-(2**31), min(number, 2**31 - 1))
    else:
        header.version.bad_consumers.append(rng.choice((0, 1, 2)))
    return bytes(header.SerializeToString())


def _i64(value: int) -> int:
    return max(-(2**63), min(value, 2**63 - 1))


def _mutate_entry(value: bytes, seed: IndexSeed, rng: random.Random) -> bytes:
    try:
        entry = ckptmap_tf_pb2.BundleEntryProto.FromString(value)
    except Exception:  # a slice entry or an earlier mutation: mutate the bytes instead
        return value
    field = rng.randrange(9)
    number = rng.choice(INTERESTING_INTS)
    if field == 0:
        entry.dtype = rng.choice((0, 1, 2, 3, 7, 9, 10, 14, 19, 20, 21, 23, 101, 127, 2**31 - 1))
    elif field == 1:  # one dim
        if entry.shape.dim:
            entry.shape.dim[rng.randrange(len(entry.shape.dim))].size = _i64(number)
        else:
            entry.shape.dim.add(size=_i64(number))
    elif field == 2:  # the same elements at another rank, up to 65
        count = 1
        for d in entry.shape.dim:
            count *= d.size
        rank = rng.choice((0, 1, 2, 32, 64, 65, 200, 255))
        del entry.shape.dim[:]
        for k in range(rank):
            entry.shape.dim.add(size=_i64(count) if k == 0 else 1)
    elif field == 3:
        entry.shape.unknown_rank = True
    elif field == 4:
        entry.shard_id = max(-(2**31), min(number, 2**31 - 1))
    elif field == 5:
        entry.offset = _i64(number if rng.random() < 0.5 else entry.offset + rng.randrange(-8, 9))
    elif field == 6:
        entry.size = _i64(number if rng.random() < 0.5 else entry.size + rng.randrange(-8, 9))
    elif field == 7:
        piece = entry.slices.add()
        for d in entry.shape.dim:
            extent = piece.extent.add()
            if rng.random() < 0.7:
                extent.start = _i64(rng.choice((0, 1, d.size // 2, number)))
                extent.length = _i64(rng.choice((1, d.size, number)))
    else:
        entry.crc32c = rng.randrange(1 << 32)
    if rng.random() < 0.5:  # make the data CRC right, so the reader decodes the data
        shards = seed.shards
        if 0 <= entry.shard_id < len(shards) and entry.offset >= 0 and entry.size >= 0:
            chunk = shards[entry.shard_id][entry.offset : entry.offset + entry.size]
            if len(chunk) == entry.size:
                entry.crc32c = mask_crc(crc32c(chunk))
    return bytes(entry.SerializeToString())


def mutate_graph(seed: GraphSeed, rng: random.Random, others: Sequence[bytes], text: bool) -> bytes:
    if seed.wrap is None or rng.random() < 0.4:
        return mutate_bytes(seed.data, rng, others)
    nodes = list(seed.nodes)
    for _ in range(rng.choice((1, 1, 2))):
        i = rng.randrange(len(nodes))
        roll = rng.random()
        if roll < 0.1:
            del nodes[i]
        elif roll < 0.2:
            nodes.insert(rng.randrange(len(nodes) + 1), nodes[i])
        elif text:
            nodes[i] = _mutate_text_node(nodes[i], rng)
        else:
            nodes[i] = _mutate_node(nodes[i], rng)
    return seed.wrap(nodes)


def _mutate_text_node(block: bytes, rng: random.Random) -> bytes:
    buf = bytearray(block)
    roll = rng.random()
    if roll < 0.4:
        _replace_number(buf, rng)
    elif roll < 0.7:  # an escape or token inside a string literal
        quote = buf.find(b'"', _pos(rng, buf))
        if quote >= 0:
            buf[quote + 1 : quote + 1] = rng.choice(TOKENS[:10])
    else:
        return mutate_bytes(block, rng, ())
    return bytes(buf)


def _mutate_node(raw: bytes, rng: random.Random) -> bytes:
    node = ckptmap_tf_pb2.NodeDef.FromString(raw)
    roll = rng.randrange(7)
    if roll == 0 and "shape" in node.attr:
        shape = node.attr["shape"].shape
        if rng.random() < 0.3:
            del shape.dim[:]
            for _ in range(rng.choice((0, 1, 64, 65, 300))):
                shape.dim.add(size=1)
        elif shape.dim:
            shape.dim[rng.randrange(len(shape.dim))].size = _i64(rng.choice(INTERESTING_INTS))
        else:
            shape.unknown_rank = True
    elif roll == 1 and "dtype" in node.attr:
        node.attr["dtype"].type = rng.choice((0, 1, 7, 20, 21, 101, 120, 2**31 - 1))
    elif roll == 2 and "dtypes" in node.attr:
        types = node.attr["dtypes"].list.type
        if types and rng.random() < 0.5:
            del types[rng.randrange(len(types))]
        else:
            types.append(rng.choice((1, 7, 20, 101)))
    elif roll == 3 and "value" in node.attr:
        tensor = node.attr["value"].tensor
        if tensor.string_val and rng.random() < 0.6:
            k = rng.randrange(len(tensor.string_val))
            tensor.string_val[k] = mutate_bytes(tensor.string_val[k], rng, ())
        elif tensor.tensor_shape.dim:
            dim = tensor.tensor_shape.dim[0]
            dim.size = _i64(rng.choice((*INTERESTING_INTS, dim.size + 1, dim.size - 1)))
        else:
            tensor.string_val.append(rng.choice((b"", b"x", b"10 4 0,4:0,4", b"-1 -")))
    elif roll == 4 and node.input:
        k = rng.randrange(len(node.input))
        node.input[k] = mutate_bytes(node.input[k].encode(), rng, ()).decode("utf-8", "replace")
    elif roll == 5:
        node.name = mutate_bytes(node.name.encode(), rng, ()).decode("utf-8", "replace")
    else:
        node.op = rng.choice(("VarHandleOp", "VariableV2", "RestoreV2", "Const", "Identity",
                              "Assign", "AssignVariableOp", "NoOp"))  # fmt: skip
    return bytes(node.SerializeToString())


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    name: str
    weight: float
    mutate: Callable[[random.Random], bytes]
    run: Callable[[bytes], None]
    current: Path  # where the input of the running call is (for the watchdog)
    seed: bytes  # the unmutated input, run once first (lazy imports happen there)


def _read_checkpoint(prefix: Path) -> None:
    with open_checkpoint(prefix) as ckpt:
        keys = ckpt.keys()
        ckpt.specs()
        ckpt.verify()
        for key in keys:
            ckpt.read(key)


def _mutate_index_with(seed: IndexSeed, others: list[bytes], rng: random.Random) -> bytes:
    return mutate_index(seed, rng, others)


def _mutate_graph_with(
    seed: GraphSeed, others: list[bytes], is_text: bool, rng: random.Random
) -> bytes:
    return mutate_graph(seed, rng, others, is_text)


def make_targets(work: Path, only: set[str] | None) -> list[Target]:
    targets: list[Target] = []

    def want(name: str) -> bool:
        return only is None or name in only

    if want("index"):
        seeds = index_seeds()
        raw = [s.data for s in seeds]
        for seed in seeds:
            folder = work / seed.name.replace("/", "_")
            folder.mkdir()
            for path in seed.folder.glob(seed.prefix + ".*"):
                if path.is_file() and ".data-" in path.name:
                    shutil.copyfile(path, folder / path.name)
                elif path.is_dir():  # assets
                    shutil.copytree(path, folder / path.name)
            index = folder / f"{seed.prefix}.index"
            prefix = folder / seed.prefix

            def run(data: bytes, index: Path = index, prefix: Path = prefix) -> None:
                index.write_bytes(data)
                _read_checkpoint(prefix)

            mutate = functools.partial(_mutate_index_with, seed, raw)
            targets.append(
                Target(f"index:{seed.name}", 5.0 / len(seeds), mutate, run, index, seed.data)
            )
    graph_kinds: list[tuple[str, list[GraphSeed], str, bool]] = []
    if want("pbtxt"):
        graph_kinds.append(("pbtxt", pbtxt_seeds(), "graph.pbtxt", True))
    binary = binary_seeds() if want("meta") or want("pb") or want("saved_model") else {}
    for kind, file_name in (("meta", "model.meta"), ("pb", "graph.pb"),
                            ("saved_model", "saved_model.pb")):  # fmt: skip
        if want(kind):
            graph_kinds.append((kind, binary[kind], file_name, False))
    if want("json"):
        graph_kinds.append(("json", json_seeds(), "model.json", True))
    # Shares of the calls: graphs cost milliseconds, indexes and specs much less.
    share = {"pbtxt": 0.4, "meta": 0.25, "pb": 0.2, "saved_model": 0.15, "json": 2.0}
    for kind, graph_seeds, file_name, is_text in graph_kinds:
        folder = work / kind
        folder.mkdir()
        path = folder / file_name
        raw = [s.data for s in graph_seeds]
        # Whole graphs cost ten times the pruned ones: give them a tenth of the calls.
        weights = [0.1 if s.wrap is None and kind != "json" else 1.0 for s in graph_seeds]
        for graph_seed, w in zip(graph_seeds, weights, strict=True):

            def run_graph(data: bytes, path: Path = path) -> None:
                path.write_bytes(data)
                read_model_spec(path)

            mutate = functools.partial(_mutate_graph_with, graph_seed, raw, is_text)
            weight = share[kind] * w / sum(weights)
            targets.append(
                Target(
                    f"{kind}:{graph_seed.name}", weight, mutate, run_graph, path, graph_seed.data
                )
            )
    return targets


# ---------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the per-call alarm (a BaseException, so no ``except Exception`` eats it)."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang


@dataclasses.dataclass
class Report:
    worker: int
    seed: int
    iterations: int = 0
    per_target: dict[str, int] = dataclasses.field(default_factory=dict)
    target_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    refused: int = 0  # CkptmapError
    accepted: int = 0  # no error at all
    foreign: int = 0
    hangs: int = 0
    slowest: float = 0.0
    slowest_target: str = ""
    peak_rss: int = 0
    seconds: float = 0.0
    signatures: dict[str, int] = dataclasses.field(default_factory=dict)
    printed: list[str] = dataclasses.field(default_factory=list)
    rss_exceeded: bool = False
    died: bool = False  # the worker itself failed (a bug of this script, or killed)


def _signature(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if "/ckptmap/" in f.filename] or frames
    last = own[-1] if own else None
    where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    return f"{type(err).__name__}@{where}"


def _save(findings: Path, kind: str, target: str, data: bytes, text: str, count: int) -> None:
    findings.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{kind}-{target}")[:120] + f"-{count}"
    (findings / f"{stem}.bin").write_bytes(data)
    (findings / f"{stem}.txt").write_text(f"target: {target}\n{text}")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def work_loop(
    targets: list[Target],
    worker: int,
    seed: int,
    deadline: float,
    max_iterations: int | None,
    findings: Path,
    beat: Callable[[int, int], None],
) -> Report:
    rng = random.Random(seed)
    report = Report(worker=worker, seed=seed)
    names = [t.name for t in targets]
    weights = [t.weight for t in targets]
    chosen = rng.choices(range(len(targets)), weights, k=4096)
    signal.signal(signal.SIGALRM, _alarm)
    for target in targets:  # warm up: imports and caches are not what is measured
        with contextlib.suppress(CkptmapError):
            target.run(target.seed)
    saved: dict[str, int] = {}
    slowest_data = b""
    start = time.perf_counter()
    n = 0
    while True:
        if n % 64 == 0 and (
            time.time() > deadline or (max_iterations is not None and n >= max_iterations)
        ):
            break
        k = chosen[n % 4096]
        if n % 4096 == 4095:
            chosen = rng.choices(range(len(targets)), weights, k=4096)
        target = targets[k]
        data = target.mutate(rng)
        beat(n, k)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT)
        problem: tuple[str, str] | None = None
        try:
            target.run(data)
            report.accepted += 1
        except CkptmapError:
            report.refused += 1
        except Hang:
            report.hangs += 1
            problem = ("hang", f"call over {CALL_LIMIT} s (interrupted)\n{traceback.format_exc()}")
        except Exception as err:  # noqa: BLE001 - what we are looking for
            report.foreign += 1
            sig = _signature(err)
            report.signatures[sig] = report.signatures.get(sig, 0) + 1
            problem = (sig, traceback.format_exc())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - t0
        if elapsed > report.slowest:
            report.slowest, report.slowest_target = elapsed, target.name
            slowest_data = data
        if problem is None and elapsed > CALL_LIMIT:
            report.hangs += 1
            problem = ("hang", f"call took {elapsed:.1f} s")
        if _peak_rss() > RSS_LIMIT:
            report.rss_exceeded = True
            problem = ("rss", f"peak RSS went over {RSS_LIMIT} bytes in this call")
        if problem is not None:
            kind, text = problem
            count = saved.get(kind, 0)
            if count < SAVED_PER_SIGNATURE:
                saved[kind] = count + 1
                _save(findings, kind.split("@")[0], target.name, data, text, worker * 100 + count)
                if len(report.printed) < PRINTED:
                    report.printed.append(f"[{target.name}] {text}")
        report.per_target[names[k]] = report.per_target.get(names[k], 0) + 1
        report.target_seconds[names[k]] = report.target_seconds.get(names[k], 0.0) + elapsed
        n += 1
        if report.rss_exceeded:
            break
    report.iterations = n
    report.seconds = time.perf_counter() - start
    if report.slowest > SLOW:  # not a finding; kept to look at
        text = f"the slowest call of worker {worker}: {report.slowest:.3f} s"
        _save(findings, "slowest", report.slowest_target, slowest_data, text, worker)
    report.peak_rss = _peak_rss()
    return report


# ---------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------


def run_workers(args: argparse.Namespace, targets: list[Target], work: Path) -> list[Report]:
    findings = Path(args.findings)
    deadline = time.time() + args.seconds
    beats = mmap.mmap(-1, 16 * args.jobs)
    children: dict[int, tuple[int, int]] = {}  # pid -> (worker, read fd)
    for worker in range(args.jobs):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            code = 0
            try:

                def beat(n: int, k: int, worker: int = worker) -> None:
                    struct.pack_into("<qq", beats, 16 * worker, n, k)

                max_iter = None if args.iterations is None else args.iterations // args.jobs
                report = work_loop(targets, worker, args.seed * 1000 + worker, deadline,
                                   max_iter, findings, beat)  # fmt: skip
                os.write(write_fd, json.dumps(dataclasses.asdict(report)).encode())
            except BaseException:
                traceback.print_exc()
                code = 2
            finally:
                os.close(write_fd)
                os._exit(code)
        os.close(write_fd)
        children[pid] = (worker, read_fd)
    reports: list[Report] = []
    last = {w: (-1, time.time()) for w in range(args.jobs)}
    outputs: dict[int, bytearray] = {fd: bytearray() for _, fd in children.values()}
    started = next_note = time.time()
    while children:
        time.sleep(0.2)
        if args.progress and time.time() >= next_note:
            done_so_far = sum(struct.unpack_from("<q", beats, 16 * w)[0] for w in range(args.jobs))
            print(f"{time.time() - started:7.0f} s: {done_so_far:,} iterations", file=sys.stderr)
            next_note += args.progress
        for pid, (worker, fd) in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                while chunk := os.read(fd, 1 << 16):
                    outputs[fd] += chunk
                os.close(fd)
                del children[pid]
                if outputs[fd]:
                    reports.append(Report(**json.loads(outputs[fd])))
                else:
                    lost = Report(worker=worker, seed=args.seed * 1000 + worker, died=True)
                    lost.printed.append(f"worker {worker} died (status {status})")
                    reports.append(lost)
                continue
            n, k = struct.unpack_from("<qq", beats, 16 * worker)
            if n != last[worker][0]:
                last[worker] = (n, time.time())
            elif time.time() - last[worker][1] > WATCHDOG:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                del children[pid]
                target = targets[k]
                data = target.current.read_bytes() if target.current.exists() else b""
                _save(
                    findings,
                    "hang",
                    target.name,
                    data,
                    f"no progress for {WATCHDOG} s",
                    900 + worker,
                )
                stuck = Report(worker=worker, seed=args.seed * 1000 + worker, iterations=n, hangs=1)
                stuck.printed.append(f"[{target.name}] worker stuck in one call for {WATCHDOG} s")
                reports.append(stuck)
    return reports


def summarize(reports: list[Report], args: argparse.Namespace, elapsed: float) -> int:
    total = sum(r.iterations for r in reports)
    per_target: dict[str, int] = {}
    signatures: dict[str, int] = {}
    for r in reports:
        for name, count in r.per_target.items():
            per_target[name] = per_target.get(name, 0) + count
        for sig, count in r.signatures.items():
            signatures[sig] = signatures.get(sig, 0) + count
    foreign = sum(r.foreign for r in reports)
    hangs = sum(r.hangs for r in reports)
    rss = max((r.peak_rss for r in reports), default=0)
    over = any(r.rss_exceeded for r in reports)
    died = sum(r.died for r in reports)
    slowest = max(reports, key=lambda r: r.slowest, default=None)
    kinds: dict[str, int] = {}
    for name, count in per_target.items():
        kind = name.split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + count
    for r in reports:
        for text in r.printed:
            print(text, file=sys.stderr)
    print(f"seed {args.seed}, {args.jobs} worker(s), {elapsed:.1f} s wall")
    print(f"iterations: {total:,} ({total / max(elapsed, 1e-9):,.0f}/s)")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))
    print(f"refused (CkptmapError): {sum(r.refused for r in reports):,}; "
          f"accepted: {sum(r.accepted for r in reports):,}")  # fmt: skip
    print(f"foreign exceptions: {foreign:,} ({len(signatures)} distinct)")
    for sig, count in sorted(signatures.items(), key=lambda kv: -kv[1]):
        print(f"  {count:,} x {sig}")
    print(f"calls over {CALL_LIMIT:g} s: {hangs}")
    if slowest is not None:
        print(f"slowest call: {slowest.slowest * 1000:.1f} ms ({slowest.slowest_target})")
    print(f"peak RSS (largest worker): {rss / 2**20:.0f} MiB"
          + (" -- over the 1 GiB limit" if over else ""))  # fmt: skip
    if died:
        print(f"workers that died: {died} (see the traceback above)")
    if foreign or hangs or over or died:
        print(f"findings saved under {args.findings}")
        return 1
    return 0


def replay(args: argparse.Namespace, targets: list[Target]) -> int:
    data = Path(args.replay).read_bytes()
    matches = [t for t in targets if t.name == args.target] or [
        t for t in targets if t.name.startswith(args.target)
    ]
    if not matches:
        print(f"no target {args.target!r}; targets: {', '.join(t.name for t in targets)}")
        return 2
    try:
        matches[0].run(data)
    except CkptmapError as err:
        print(f"refused: {type(err).__name__}: {err}")
        return 0
    print("accepted")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    parser.add_argument("--iterations", type=int, help="stop after this many (all workers)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (seeds differ)")
    parser.add_argument("--findings", default="fuzz-findings", help="folder for reproducers")
    parser.add_argument(
        "--only", help="comma-separated kinds: index,pbtxt,meta,pb,saved_model,json"
    )
    parser.add_argument(
        "--progress", type=float, default=0, help="print the count every this many seconds"
    )
    parser.add_argument("--replay", help="run one saved input again (with --target)")
    parser.add_argument("--target", help="the target name printed with the finding")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    only = set(args.only.split(",")) if args.only else None
    work = Path(
        tempfile.mkdtemp(
            prefix="ckptmap-fuzz-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
    )
    try:
        targets = make_targets(work, only)
        if args.replay:
            return replay(args, targets)
        start = time.perf_counter()
        reports = run_workers(args, targets, work)
        return summarize(reports, args, time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
