"""The zarr3 writer: every fixture's tensors as zarr v3 arrays, read back with tensorstore alone.

Values written are checked with tensorstore's own API against TensorFlow's
reading of every fixture (the golden files), attributes against the original
index, and the store reader's specs against the checkpoint reader's. The
writer is driven directly here (no commit protocol); ``tests/test_convert.py``
covers the command around it.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, GOLDEN_JSONS, Golden, assert_same_values, load_golden

from ckptmap.dtypes import dtype_from_name
from ckptmap.errors import CorruptCheckpointError
from ckptmap.readers.source import open_source
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.readers.zarr_store import open_store, shared_context, store_location
from ckptmap.writers.zarr3 import Zarr3Writer, chunk_shape, plan_blocks

ts = pytest.importorskip("tensorstore")

GOLDENS = [load_golden(path) for path in GOLDEN_JSONS]
OCDBT_GOLDENS = [g for g in GOLDENS if g.id in ("dtype_zoo/zoo", "ffm_v1_ps2/model.ckpt-100")]
MIB = 1 << 20


def write_store(
    old: str | Path,
    out: str | Path,
    *,
    ocdbt: bool = False,
    chunk_bytes: int = 8 * MIB,
    block_bytes: int = 16 * MIB,
) -> Zarr3Writer:
    """Write ``old`` into ``out`` with the writer alone (no temporary folder, no marker)."""
    with open_source(old) as source:
        writer = Zarr3Writer(source, chunk_bytes, block_bytes)
        writer.write(store_location(out, ocdbt=ocdbt))
    return writer


# -- reading a store with tensorstore alone ------------------------------------------


def _kvstore(root: str | Path, path: str, ocdbt: bool) -> dict[str, Any]:
    base: dict[str, Any] = (
        {"driver": "file", "path": f"{root}/"}
        if isinstance(root, Path)
        else ts.KvStore.Spec(root + "/").to_json()
    )
    if ocdbt:
        return {"driver": "ocdbt", "base": base, "path": path}
    return {**base, "path": base["path"] + path}


def _ts_manifest(root: str | Path, ocdbt: bool) -> dict[str, Any]:
    store = ts.KvStore.open(_kvstore(root, "", ocdbt), context=shared_context()).result()
    doc = json.loads(store.read("zarr.json").result().value)
    manifest: dict[str, Any] = doc["attributes"]["ckptmap"]
    return manifest


def _ts_open(root: str | Path, path: str, ocdbt: bool) -> Any:
    spec = {"driver": "zarr3", "kvstore": _kvstore(root, path + "/", ocdbt)}
    return ts.open(spec, open=True, context=shared_context()).result()


def _ts_value(root: str | Path, entry: dict[str, Any], ocdbt: bool) -> tuple[np.ndarray, dict]:
    """A tensor's value and its node's attributes, read with tensorstore's API only."""
    dtype = dtype_from_name(entry["dtype"]).numpy
    if entry["storage"] == "strings":
        lengths = _ts_open(root, entry["path"] + "/lengths", ocdbt).read().result()
        data = bytes(_ts_open(root, entry["path"] + "/data", ocdbt).read().result())
        stops = np.cumsum(lengths.reshape(-1).astype(np.int64)).tolist()
        starts = [0, *stops][: len(stops)]
        items = [data[a:b] for a, b in zip(starts, stops, strict=True)]
        value = np.empty(len(items), dtype=object)
        value[:] = items
        store = ts.KvStore.open(_kvstore(root, "", ocdbt), context=shared_context()).result()
        attrs = json.loads(store.read(entry["path"] + "/zarr.json").result().value)["attributes"]
        return value.reshape(lengths.shape), attrs
    array = _ts_open(root, entry["path"], ocdbt)
    value = array.read().result()
    if entry["storage"] == "bytes":
        assert value.dtype == np.uint8
        value = value.view(dtype)
    else:
        assert value.dtype == dtype
    return value, array.spec().to_json()["metadata"]["attributes"]


def check_store(golden: Golden, root: str | Path, ocdbt: bool, source: str | None = None) -> None:
    """The store at ``root`` holds ``golden``'s values, dtypes, shapes and slice layout."""
    manifest = _ts_manifest(root, ocdbt)
    entries = {e["key"]: e for e in manifest["arrays"]}
    assert sorted(entries) == sorted(t.name for t in golden.tensors)
    with open_checkpoint(golden.prefix) as ckpt:
        specs = ckpt.specs()
        for tensor in golden.tensors:
            value, attrs = _ts_value(root, entries[tensor.name], ocdbt)
            assert_same_values(value, tensor.value)
            spec = specs[tensor.name]
            meta = attrs["ckptmap"]
            assert meta["key"] == tensor.name
            assert meta["dtype"] == tensor.dtype == spec.dtype.name
            assert tuple(meta["shape"]) == tensor.shape
            assert meta["slices"] == [s.format() for s in spec.slices]
            assert meta["source"] == (source or str(ckpt.prefix))
    with open_store(root) as store, open_checkpoint(golden.prefix) as ckpt:
        assert store.keys() == ckpt.keys()
        assert store.specs() == ckpt.specs()
        for tensor in golden.tensors:
            assert_same_values(store.read(tensor.name), tensor.value)


# -- what the writer writes ------------------------------------------------------------


@pytest.mark.parametrize("golden", GOLDENS, ids=[g.id for g in GOLDENS])
def test_every_fixture_is_written_with_tf_values(golden: Golden, tmp_path: Path) -> None:
    out = tmp_path / "store.zarr"
    writer = write_store(golden.prefix, out)
    assert len(writer.paths) == len(golden.tensors)
    assert writer.tensor_bytes == sum(
        e.size for e in _entries(golden.prefix)
    )  # every stored byte read once
    assert (out / "zarr.json").is_file()
    check_store(golden, out, ocdbt=False)


def _entries(prefix: Path) -> list[Any]:
    with open_checkpoint(prefix) as ckpt:
        out = []
        for key in ckpt:
            entry = ckpt.entry(key)
            out += [part for _, part in ckpt.slice_entries(key)] if entry.slices else [entry]
        return out


@pytest.mark.parametrize("golden", OCDBT_GOLDENS, ids=[g.id for g in OCDBT_GOLDENS])
def test_ocdbt_store_holds_tf_values(golden: Golden, tmp_path: Path) -> None:
    out = tmp_path / "store.ocdbt"
    write_store(golden.prefix, out, ocdbt=True)
    assert (out / "manifest.ocdbt").is_file()
    assert not (out / "zarr.json").exists()  # everything is inside the database
    check_store(golden, out, ocdbt=True)


@pytest.mark.parametrize("ocdbt", [False, True], ids=["zarr3", "ocdbt"])
def test_memory_url_store_holds_tf_values(ocdbt: bool) -> None:
    golden = next(g for g in GOLDENS if g.id == "ffm_v2_ps3/model.ckpt-100")
    url = f"memory://zarr3-writer-test-{int(ocdbt)}/store"
    write_store(golden.prefix, url, ocdbt=ocdbt)
    check_store(golden, url, ocdbt=ocdbt)


def test_small_chunks_and_blocks_give_the_same_values(tmp_path: Path) -> None:
    """Slices that cut chunks, blocks smaller than a row: every write path at once."""
    golden = next(g for g in GOLDENS if g.id == "dtype_zoo/zoo")
    out = tmp_path / "small"
    write_store(golden.prefix, out, chunk_bytes=24, block_bytes=40)
    meta = json.loads((out / "sliced.cols" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 3]
    check_store(golden, out, ocdbt=False)


@pytest.mark.parametrize("golden", OCDBT_GOLDENS, ids=[g.id for g in OCDBT_GOLDENS])
def test_a_store_is_written_again_from_a_store(golden: Golden, tmp_path: Path) -> None:
    """A source read as arrays (no bytes to copy) gives the same store, in small blocks too."""
    first = tmp_path / "first.zarr"
    write_store(golden.prefix, first)
    second = tmp_path / "second.ocdbt"
    write_store(first, second, ocdbt=True, chunk_bytes=24, block_bytes=40)
    check_store(golden, second, ocdbt=True, source=str(first))


def test_a_crc_mismatch_stops_the_writer_before_the_manifest(
    tmp_path: Path, fixture_copy: Any
) -> None:
    folder = fixture_copy("ffm_v1")
    with open_checkpoint(folder) as ckpt:
        entry = ckpt.slice_entries("ffm/embeddings")[1][1]
        data = ckpt.shard_path(entry.shard_id)
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 7] ^= 0x40
    data.write_bytes(bytes(raw))
    out = tmp_path / "store.zarr"
    with pytest.raises(CorruptCheckpointError, match="CRC32C mismatch") as info:
        write_store(folder, out)
    assert info.value.path == str(data)
    assert not (out / "zarr.json").exists()


# -- layout helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "itemsize", "limit", "expected"),
    [
        ((3276800, 64), 4, 8 << 20, (32768, 64)),
        ((10, 4), 4, 8 << 20, (10, 4)),
        ((), 8, 8 << 20, ()),
        ((0, 3), 4, 8 << 20, (1, 3)),
        ((4, 1000, 10), 4, 1000, (1, 25, 10)),
        ((2, 5), 8, 4, (1, 1)),
    ],
)
def test_chunk_shape(
    shape: tuple[int, ...], itemsize: int, limit: int, expected: tuple[int, ...]
) -> None:
    assert chunk_shape(shape, itemsize, limit) == expected


@pytest.mark.parametrize(
    ("box", "block", "chunk"),
    [
        (((0, 10), (0, 4)), 40, (3, 4)),
        (((4, 7), (0, 4)), 16, (2, 4)),
        (((0, 6), (3, 6)), 8, (6, 8)),
        (((1, 3), (0, 5), (2, 4)), 12, (1, 2, 2)),
        (((0, 5),), 1000, (5,)),
    ],
)
def test_plan_blocks_tile_the_piece_in_c_order(
    box: tuple[tuple[int, int], ...], block: int, chunk: tuple[int, ...]
) -> None:
    itemsize = 4
    shape = [b - a for a, b in box]
    expected_offsets = np.arange(math.prod(shape)).reshape(shape) * itemsize
    covered = np.zeros(shape, dtype=int)
    for sub, offset, size in plan_blocks(box, itemsize, block, chunk):
        assert size <= max(block, itemsize)
        local = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(sub, box, strict=True))
        covered[local] += 1
        run = expected_offsets[local].reshape(-1)
        assert run[0] == offset  # contiguous in the stored piece, starting at offset
        assert size == len(run) * itemsize
        assert np.array_equal(np.diff(run), np.full(len(run) - 1, itemsize))
    assert (covered == 1).all()


def test_plan_blocks_end_on_chunk_boundaries_when_they_can() -> None:
    blocks = list(plan_blocks(((0, 100), (0, 4)), 4, 16 * 10, (3, 4)))
    stops = [sub[0][1] for sub, _, _ in blocks]
    assert stops[:-1] == list(itertools.islice(itertools.count(9, 9), len(stops) - 1))


# -- TF: checkpoint -> zarr3 -> checkpoint --------------------------------------------------


def _rebuild_checkpoint(store_path: Path, prefix: Path) -> None:
    """Write a TF checkpoint from a store: full entries, and slices as originally laid out."""
    from ckptmap.writers import BundleWriter, slice_entry_key

    with open_store(store_path) as store, BundleWriter(prefix) as writer:
        for key, spec in store.specs().items():
            if spec.slices:
                writer.add_sliced(key, dtype=spec.dtype, full_shape=spec.shape, slices=spec.slices)
                for piece in spec.slices:
                    data = store.read_slice(key, piece)
                    writer.add_array(slice_entry_key(key, piece), data, dtype=spec.dtype)
            else:
                writer.add_array(key, store.read(key), dtype=spec.dtype)
        writer.commit()


@pytest.mark.tf
@pytest.mark.parametrize("golden", GOLDENS, ids=[g.id for g in GOLDENS])
def test_tf_reads_the_checkpoint_rebuilt_from_zarr3(
    golden: Golden, tmp_path: Path, tf: Any
) -> None:
    store = tmp_path / "store.zarr"
    write_store(golden.prefix, store, ocdbt=golden in OCDBT_GOLDENS)
    rebuilt = tmp_path / "rebuilt" / "model.ckpt"
    _rebuild_checkpoint(store, rebuilt)
    reader = tf.train.load_checkpoint(str(rebuilt))
    assert reader.get_variable_to_dtype_map().keys() == {t.name for t in golden.tensors}
    for tensor in golden.tensors:
        value = reader.get_tensor(tensor.name)
        if tensor.dtype == "string":
            value = np.asarray(value, dtype=object).reshape(tensor.shape)
        else:
            value = np.asarray(value).reshape(tensor.shape)
            if value.dtype != tensor.value.dtype:  # TF hands out quantized/int4 as other types
                value = (
                    value.view(tensor.value.dtype)
                    if value.dtype.itemsize == (tensor.value.dtype.itemsize)
                    else value.astype(tensor.value.dtype)
                )
        assert_same_values(value, tensor.value)
    with open_checkpoint(golden.prefix) as original, open_checkpoint(rebuilt) as copy:
        assert copy.specs() == original.specs()


@pytest.mark.tf
def test_tf_saver_restores_the_checkpoint_rebuilt_from_zarr3(tmp_path: Path, tf: Any) -> None:
    store = tmp_path / "store.zarr"
    write_store(FIXTURES / "ffm_v1", store)
    rebuilt = tmp_path / "rebuilt" / "model.ckpt-100"
    _rebuild_checkpoint(store, rebuilt)
    golden = next(g for g in GOLDENS if g.id == "ffm_v1/model.ckpt-100")
    expected = {t.name: t.value for t in golden.tensors}
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        saver = tf.compat.v1.train.import_meta_graph(str(FIXTURES / "ffm_v1/model.ckpt-100.meta"))
        saver.restore(sess, str(rebuilt))
        variables = tf.compat.v1.global_variables()
        values = sess.run(variables)
    assert variables
    seen = set()
    for var, value in zip(variables, values, strict=True):
        info = var._save_slice_info  # noqa: SLF001 -- TF's record of a partition
        key = var.op.name if info is None else info.full_name
        full = expected[key]
        if info is not None:  # a partition: its part of the full tensor
            index = tuple(
                slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape, strict=True)
            )
            full = full[index]
        np.testing.assert_array_equal(value, full)
        seen.add(key)
    assert seen == set(expected)
