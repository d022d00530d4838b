"""TensorFlow V1 checkpoints (``Saver(write_version=SaverDef.V1)``) are read.

The fixtures ``tf1_v1`` (one table file) and ``tf1_v1_sharded`` (two) are
written by TensorFlow 2.21 (fixtures/make_tf1_legacy.py); the core tests
compare with TensorFlow's reading recorded in ``fixtures/golden_v1``, the
TF-marked ones ask TensorFlow itself and restore what ``remap`` writes. Damaged
copies are rebuilt from the TF-written table with one record changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES, Golden, assert_same_values, flip_byte, load_golden

from ckptmap.cli import main
from ckptmap.formats.slice_key import encode_slice_key
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers._table import read_table
from ckptmap.readers.source import open_source
from ckptmap.writers._table import build_table

FIXTURE_NAMES = ("tf1_v1", "tf1_v1_sharded")
GOLDEN = {n: load_golden(FIXTURES / "golden_v1" / n / "model.ckpt-3.json") for n in FIXTURE_NAMES}


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=FIXTURE_NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def folder(name: str, tmp_path: Path) -> Path:
    """A copy of the fixture folder."""
    copy = tmp_path / name
    shutil.copytree(FIXTURES / name, copy)
    return copy


@pytest.fixture
def golden(name: str) -> Golden:
    return GOLDEN[name]


def _listing(golden: Golden) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (t.dtype, list(t.shape)) for t in golden.tensors}


def _assert_values(prefix: Path | str, golden: Golden) -> None:
    with open_source(prefix) as source:
        assert sorted(source.keys()) == sorted(t.name for t in golden.tensors)
        for tensor in golden.tensors:
            assert_same_values(np.asarray(source.read(tensor.name)), tensor.value)


def test_the_fixture_is_v1(folder: Path) -> None:
    assert not list(folder.glob("*.index"))
    assert [p.name for p in folder.glob("model.ckpt-3*") if p.suffix != ".meta"]


@pytest.mark.parametrize("target", ["folder", "prefix"])
def test_inspect_json_lists_what_tensorflow_lists(
    folder: Path, golden: Golden, target: str
) -> None:
    prefix = Path(golden.prefix.name)
    result = _run("inspect", folder if target == "folder" else folder / prefix, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    listed = {t["name"]: (t["dtype"], t["shape"]) for t in doc["tensors"]}
    assert listed == _listing(golden)
    assert doc["checkpoint"]["format"] == "tf-v1"


def test_inspect_text_says_v1(folder: Path, golden: Golden) -> None:
    result = _run("inspect", folder, "--verify")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"TensorFlow V1 checkpoint {folder / golden.prefix.name} (little-endian)"
    assert lines[-1] == "Every table block matches its CRC32C and every record decodes."


def test_values_equal_tensorflows(folder: Path, golden: Golden) -> None:
    _assert_values(folder, golden)
    with open_source(folder) as source:
        assert source.verify() == source.keys()
        assert len(source.slices("emb")) == 3
        assert source.name == "model.ckpt-3"


def test_check_with_its_meta_graph_passes(folder: Path) -> None:
    result = _run("check", "--old", folder, "--new-graph", folder / "model.ckpt-3.meta")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 16 keys resolved")


def test_remap_writes_a_v2_checkpoint_with_the_same_values(
    folder: Path, golden: Golden, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    meta = folder / "model.ckpt-3.meta"
    result = _run("remap", "--old", folder, "--new-graph", meta, "--out", f"{out}/")
    assert result.exit_code == 0, result.output
    assert "0 pieces copied as bytes" in result.stdout  # V1 records are decoded, never copied
    assert (out / "model.ckpt-3.index").is_file()
    with open_source(out) as written:
        assert written.format == "tf"
        assert written.verify() == written.keys()
    _assert_values(out, golden)


def test_convert_to_zarr3(folder: Path, golden: Golden, tmp_path: Path) -> None:
    pytest.importorskip("tensorstore")
    store = tmp_path / "store"
    result = _run("convert", "--old", folder, "--to", "zarr3", "--out", store)
    assert result.exit_code == 0, result.output
    _assert_values(store, golden)


def test_a_moved_folder_with_absolute_state_paths_reads_the_local_file(
    folder: Path, golden: Golden
) -> None:
    state = folder / "checkpoint"
    stored = f"/old/place/{golden.prefix.name}"
    state.write_text(f'model_checkpoint_path: "{stored}"\nall_model_checkpoint_paths: "{stored}"\n')
    result = _run("inspect", folder, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"note: checkpoint state file names {stored}; using ./{golden.prefix.name} in this folder\n"
    )


# -- damaged and unsupported inputs ---------------------------------------------------


def _rewrite(path: Path, change: Any) -> None:
    """Rebuild the table at ``path`` with ``change(key, SavedTensorSlices)`` applied."""
    table = read_table(path)
    items = []
    for key, value in zip(table.keys, table.values, strict=True):
        message = ckptmap_tf_pb2.SavedTensorSlices.FromString(bytes(value))
        change(key, message)
        items.append((key, message.SerializeToString()))
    path.write_bytes(build_table(items))


def _refused(folder: Path, tmp_path: Path, expected: str) -> None:
    """remap (and inspect --verify) exit 3 with exactly ``expected``; nothing is written."""
    out = tmp_path / "out"
    meta = folder / "model.ckpt-3.meta"
    result = _run("remap", "--old", folder, "--new-graph", meta, "--out", f"{out}/")
    assert result.exit_code == 3, result.output
    assert result.stderr == f"error: {expected}\n"
    assert not out.exists()


def test_a_rebuilt_table_without_changes_reads_the_same(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "tf1_v1", folder)
    _rewrite(folder / "model.ckpt-3", lambda key, message: None)
    _assert_values(folder, GOLDEN["tf1_v1"])


def test_a_record_with_too_few_values_names_the_file_and_tensor(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "tf1_v1", folder)

    def drop_one(key: bytes, message: Any) -> None:
        if message.data.name == "dtypes/float32":
            del message.data.data.float_val[-1]

    path = folder / "model.ckpt-3"
    _rewrite(path, drop_one)
    _refused(
        folder,
        tmp_path,
        f"{path}: tensor 'dtypes/float32': its record holds 11 values, a float32 slice of "
        "shape [3, 4] needs 12 (the file is corrupt or truncated; copy it again from its source)",
    )


def test_a_missing_slice_record_names_the_slice(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "tf1_v1", folder)
    path = folder / "model.ckpt-3"
    table = read_table(path)
    dropped = encode_slice_key(b"emb", [(4, 3), (0, 4)])
    items = [(k, bytes(v)) for k, v in zip(table.keys, table.values, strict=True) if k != dropped]
    assert len(items) == len(table.keys) - 1
    path.write_bytes(build_table(items))
    _refused(
        folder,
        tmp_path,
        f"{path}: tensor 'emb[4,3:0,4]' has no record in the file (the file is corrupt "
        "or truncated; copy it again from its source)",
    )


def test_a_damaged_block_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "tf1_v1", folder)
    path = folder / "model.ckpt-3"
    flip_byte(path, 40)
    out = tmp_path / "out"
    result = _run(
        "remap", "--old", folder, "--new-graph", folder / "model.ckpt-3.meta", "--out", f"{out}/"
    )
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith(f"error: {path}: data block 0 CRC mismatch")
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_a_variant_tensor_is_not_supported(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "tf1_v1", folder)

    def make_variant(key: bytes, message: Any) -> None:
        for meta in message.meta.tensor:
            if meta.name == "dtypes/int8":
                meta.type = ckptmap_tf_pb2.DT_VARIANT

    path = folder / "model.ckpt-3"
    _rewrite(path, make_variant)
    result = _run("inspect", folder)
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: {path}: V1 checkpoint with a tensor of dtype enum 21 ('dtypes/int8') "
        "is not supported\n"
    )


def test_a_missing_shard_is_named_before_anything_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "tf1_v1_sharded", folder)
    missing = folder / "model.ckpt-3-00001-of-00002"
    missing.unlink()
    for args in (
        ["inspect", folder],
        ["check", "--old", folder, "--new-graph", folder / "model.ckpt-3.meta"],
    ):
        result = _run(*args)
        assert result.exit_code == 3, result.output
        assert result.stderr.startswith(f"error: {missing}: shard 1 of this 2-file V1 checkpoint")
    _refused(
        folder,
        tmp_path,
        f"{missing}: shard 1 of this 2-file V1 checkpoint is missing (the tensors it holds are "
        "listed only in it; copy every file of the checkpoint)",
    )


# -- TensorFlow as the oracle -----------------------------------------------------------


@pytest.mark.tf
def test_tensorflow_agrees(tf: Any, folder: Path, golden: Golden) -> None:
    prefix = str(folder / golden.prefix.name)
    dtypes = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()
    with open_source(folder) as source:
        specs = source.specs()
        listed = {k: (s.dtype.name, list(s.shape)) for k, s in specs.items()}
        assert listed == {n: (dtypes[n].name, list(s)) for n, s in tf.train.list_variables(prefix)}
        for key in source:
            (theirs,) = tf.raw_ops.RestoreV2(
                prefix=prefix, tensor_names=[key], shape_and_slices=[""], dtypes=[dtypes[key]]
            )
            assert_same_values(np.asarray(source.read(key)), np.asarray(theirs.numpy()))


@pytest.mark.tf
@pytest.mark.parametrize("renamed", [False, True], ids=["identity", "renamed"])
def test_tensorflow_restores_the_remap(
    tf: Any, folder: Path, golden: Golden, tmp_path: Path, renamed: bool
) -> None:
    """The checkpoint's own graph (identity), or a graph with ``dtypes/`` renamed to
    ``types/`` and ``emb`` cut in 2 instead of 3 (with a rule), restores the remap."""
    tf1 = tf.compat.v1
    meta = folder / "model.ckpt-3.meta"
    values = {t.name: t.value for t in golden.tensors}
    graph = tf.Graph()
    with graph.as_default():
        if renamed:
            for name, value in values.items():
                if name == "emb":
                    tf1.get_variable("emb", [10, 4], partitioner=tf1.fixed_size_partitioner(2))
                else:
                    dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
                    new_name = name.replace("dtypes/", "types/", 1)
                    tf1.Variable(tf.zeros(value.shape, dtype), name=new_name, use_resource=False)
            saver = tf1.train.Saver()
            new_graph = tmp_path / "renamed.meta"
            tf1.train.export_meta_graph(str(new_graph))
        else:
            saver = tf1.train.import_meta_graph(str(meta))
            new_graph = meta
        variables = {v.op.name: v for v in tf1.global_variables()}
    out = tmp_path / "out"
    args = ["remap", "--old", folder, "--new-graph", new_graph, "--out", f"{out}/"]
    result = _run(*args, *(["--rule", "^types/(.*)$=dtypes/{}"] if renamed else []))
    assert result.exit_code == 0, result.output
    with tf1.Session(graph=graph) as sess:
        saver.restore(sess, tf.train.latest_checkpoint(str(out)))
        got = {
            name.replace("types/", "dtypes/", 1) if renamed else name: sess.run(v)
            for name, v in variables.items()
        }
    parts = sorted((k for k in got if k.startswith("emb/part_")), key=lambda k: int(k[9:]))
    assert len(parts) == (2 if renamed else 3)
    got["emb"] = np.concatenate([got.pop(k) for k in parts])
    assert got.keys() == values.keys()
    for name, value in values.items():
        assert_same_values(np.asarray(got[name], value.dtype), value)
