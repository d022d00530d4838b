"""``ckptmap convert``: TF checkpoints to zarr v3 stores, and those stores read back.

Values written are checked with tensorstore's own API against TensorFlow's
reading of every fixture (the golden files), attributes against the original
index, and the store reader's specs against the checkpoint reader's.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import FIXTURES, GOLDEN_JSONS, Golden, assert_same_values, load_golden

from ckptmap.cli import main
from ckptmap.cli._output import exit_code_for
from ckptmap.convert import chunk_shape, convert, plan_blocks
from ckptmap.dtypes import dtype_from_name
from ckptmap.errors import (
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    OutputError,
    OutputExistsError,
    UsageError,
)
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.readers.zarr_store import (
    array_path,
    array_paths,
    is_zarr_store,
    open_store,
    shared_context,
)

ts = pytest.importorskip("tensorstore")

GOLDENS = [load_golden(path) for path in GOLDEN_JSONS]
OCDBT_GOLDENS = [g for g in GOLDENS if g.id in ("dtype_zoo/zoo", "ffm_v1_ps2/model.ckpt-100")]


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


def _check_store(golden: Golden, root: str | Path, ocdbt: bool) -> None:
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
            assert meta["source"] == str(ckpt.prefix)
    with (
        open_store(root if isinstance(root, str) else root) as store,
        open_checkpoint(golden.prefix) as ckpt,
    ):
        assert store.keys() == ckpt.keys()
        assert store.specs() == ckpt.specs()
        for tensor in golden.tensors:
            assert_same_values(store.read(tensor.name), tensor.value)


@pytest.mark.parametrize("golden", GOLDENS, ids=[g.id for g in GOLDENS])
def test_every_fixture_converts_to_zarr3_with_tf_values(golden: Golden, tmp_path: Path) -> None:
    out = tmp_path / "store.zarr"
    result = convert(golden.prefix, out)
    assert result.arrays == len(golden.tensors)
    assert (out / "zarr.json").is_file()
    assert is_zarr_store(out)
    assert list(tmp_path.iterdir()) == [out]  # no temporary folder left behind
    _check_store(golden, out, ocdbt=False)


@pytest.mark.parametrize("golden", OCDBT_GOLDENS, ids=[g.id for g in OCDBT_GOLDENS])
def test_ocdbt_store_holds_tf_values(golden: Golden, tmp_path: Path) -> None:
    out = tmp_path / "store.ocdbt"
    result = convert(golden.prefix, out, ocdbt=True)
    assert result.ocdbt
    assert (out / "manifest.ocdbt").is_file()
    assert not (out / "zarr.json").exists()  # everything is inside the database
    assert is_zarr_store(out)
    _check_store(golden, out, ocdbt=True)


@pytest.mark.parametrize("ocdbt", [False, True], ids=["zarr3", "ocdbt"])
def test_memory_url_store(ocdbt: bool) -> None:
    golden = next(g for g in GOLDENS if g.id == "ffm_v2_ps3/model.ckpt-100")
    url = f"memory://convert-test-{int(ocdbt)}/store"
    result = convert(golden.prefix, url, ocdbt=ocdbt)
    assert result.store_bytes is None
    assert is_zarr_store(url)
    _check_store(golden, url, ocdbt=ocdbt)
    store = ts.KvStore.open(_kvstore(url, "", ocdbt), context=shared_context()).result()
    assert store.read("ckptmap-incomplete").result().state == "missing"
    with pytest.raises(OutputExistsError, match="a store already exists here"):
        convert(golden.prefix, url, ocdbt=ocdbt)
    convert(FIXTURES / "ffm_v1", url, ocdbt=ocdbt, force=True)
    with open_store(url) as replaced:
        assert "ffm/bias_net/w" in replaced


def test_small_chunks_and_blocks_give_the_same_values(tmp_path: Path) -> None:
    """Slices that cut chunks, blocks smaller than a row: every write path at once."""
    golden = next(g for g in GOLDENS if g.id == "dtype_zoo/zoo")
    out = tmp_path / "small"
    convert(golden.prefix, out, chunk_bytes=24, block_bytes=40)
    meta = json.loads((out / "sliced.cols" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 3]
    _check_store(golden, out, ocdbt=False)


def test_sub_box_reads(tmp_path: Path) -> None:
    out = tmp_path / "zoo"
    convert(FIXTURES / "dtype_zoo" / "zoo", out)
    with open_checkpoint(FIXTURES / "dtype_zoo" / "zoo") as ckpt, open_store(out) as store:
        for key in ("sliced/rows", "sliced/cols", "string_2d"):
            full = ckpt.read(key)
            for spec in ckpt.specs()[key].slices:
                assert_same_values(store.read_slice(key, spec), full[spec.index()])
            box = tuple((0, max(0, d - 1)) for d in full.shape)
            assert_same_values(store.read_box(key, box), full[tuple(slice(a, b) for a, b in box)])
        with pytest.raises(UsageError, match="does not fit"):
            store.read_box("sliced/rows", ((0, 11), (0, 4)))


# -- layout helpers -------------------------------------------------------------------------


def test_array_path_escapes_to_one_portable_name() -> None:
    assert array_path("ffm/dense_1/kernel/Adam") == "ffm.dense_1.kernel.Adam"
    assert array_path("a.b/c d") == "a%2Eb.c%20d"
    assert array_path("ünï") == "%C3%BCn%C3%AF"
    assert array_path("/lead") == "%2Flead"
    assert array_path("__x") == "%5F_x"
    assert array_path("zarr/json").startswith("zarr.json~")  # the root's metadata name
    long = array_path("k" * 300)
    assert len(long) <= 200
    assert long.startswith("k" * 100)
    assert long != array_path("k" * 301)


def test_array_paths_separate_keys_differing_in_case() -> None:
    paths = array_paths(["case/Kernel", "case/kernel", "case/KERNEL", "other"])
    assert paths["other"] == "other"
    folded = {p.lower() for k, p in paths.items() if k != "other"}
    assert len(folded) == 3
    assert all(p.startswith("case.") and "~" in p for k, p in paths.items() if k != "other")


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


# -- bad input and commit semantics -----------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["convert", *args], catch_exceptions=False)


def test_cli_writes_a_store_and_reports_json(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    result = _cli("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr3", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["arrays"] == 33
    assert doc["to"] == "zarr3"
    assert doc["ocdbt"] is False
    assert doc["paths"]["ffm/embeddings"] == "ffm.embeddings"
    assert doc["store_bytes"] > doc["tensor_bytes"] > 0
    assert open_store(out).keys() == open_checkpoint(FIXTURES / "ffm_v1").keys()


def test_cli_refuses_an_existing_output_without_force(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    args = ("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr3", "--out", str(out))
    assert _cli(*args).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    result = _cli(*args)
    assert result.exit_code == 4
    assert result.stderr == f"error: {out}: already exists (pass --force to replace it)\n"
    assert sorted(p.name for p in out.iterdir()) == before
    again = _cli(*args[:-1], str(out), "--force", "--step", "50")
    assert again.exit_code == 0, again.output
    assert (
        "model.ckpt-50"
        in json.loads((out / "zarr.json").read_text())["attributes"]["ckptmap"]["source"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1.zarr"]


def test_force_does_not_replace_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="is not a zarr store; refusing to replace it"):
        convert(FIXTURES / "ffm_v1", out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "x"
    result = _cli("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr4", "--out", str(out))
    assert result.exit_code == 2
    assert "'zarr4' is not 'zarr3'" in result.stderr
    assert not out.exists()
    with pytest.raises(UsageError, match="unknown store format 'n5'"):
        convert(FIXTURES / "ffm_v1", out, to="n5")


def test_unknown_url_scheme_is_an_output_error() -> None:
    result = _cli("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr3", "--out", "nope://x/y")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: nope://x/y: not a storage location tensorstore")
    assert result.stderr.count("\n") == 1


def test_missing_input_checkpoint(tmp_path: Path) -> None:
    result = _cli("--old", str(tmp_path / "none"), "--to", "zarr3", "--out", str(tmp_path / "o"))
    assert result.exit_code == 3
    assert not (tmp_path / "o").exists()


def test_missing_array_in_a_store_is_an_input_error(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    convert(FIXTURES / "ffm_v1", out)
    shutil.rmtree(out / "ffm.embeddings")
    with open_store(out) as store:
        assert store.read("global_step") == 100
        with pytest.raises(MissingInputError) as info:
            store.read("ffm/embeddings")
    assert str(info.value) == (
        f"{out}/ffm.embeddings: the array of 'ffm/embeddings' is missing from the store "
        "(the store is incomplete or was modified; convert again)"
    )
    assert exit_code_for(info.value) == 3


def test_a_store_without_manifest_is_not_opened(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    convert(FIXTURES / "ffm_v1", out)
    (out / "zarr.json").unlink()
    assert not is_zarr_store(out)
    with pytest.raises(MissingInputError, match="no zarr.json at its root"):
        open_store(out)


def test_an_interrupted_url_store_is_reported_incomplete() -> None:
    url = "memory://convert-test-partial/store"
    store = ts.KvStore.open(url + "/", context=shared_context()).result()
    store.write("ckptmap-incomplete", b"x").result()
    store.write("a/zarr.json", b"{}").result()
    with pytest.raises(InputError, match="the store is incomplete") as info:
        open_store(url)
    assert exit_code_for(info.value) == 3
    with pytest.raises(OutputExistsError, match="interrupted conversion"):
        convert(FIXTURES / "ffm_v1", url)
    convert(FIXTURES / "ffm_v1", url, force=True)
    assert store.read("a/zarr.json").result().state == "missing"
    assert open_store(url).read("global_step") == 100


def test_a_corrupt_checkpoint_leaves_nothing_behind(tmp_path: Path, fixture_copy: Any) -> None:
    folder = fixture_copy("ffm_v1")
    with open_checkpoint(folder) as ckpt:
        entry = ckpt.slice_entries("ffm/embeddings")[1][1]
    data = folder / "model.ckpt-100.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 7] ^= 0x40
    data.write_bytes(bytes(raw))
    out = tmp_path / "out" / "store.zarr"
    with pytest.raises(CorruptCheckpointError, match="CRC32C mismatch") as info:
        convert(folder, out)
    assert exit_code_for(info.value) == 3
    assert not (tmp_path / "out").exists()


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
    convert(golden.prefix, store, ocdbt=golden in OCDBT_GOLDENS)
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
    convert(FIXTURES / "ffm_v1", store)
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
