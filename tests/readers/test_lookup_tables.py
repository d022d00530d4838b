"""Keys a TF1 Saver restores into lookup tables, not variables (``MutableHashTable``,
``DenseHashTable``): the model spec takes them with their dtype and any shape.

The fixture ``tf1_tables`` is written by TensorFlow 2.21 (fixtures/make_tf1_legacy.py):
a V2 checkpoint, its ``.meta`` and a SavedModel of a graph with both table
kinds and two variables. The core tests compare with TensorFlow's reading in
``fixtures/golden/tf1_tables``; the TF-marked ones restore what ``remap`` writes
into the table graph (identity) and into a graph whose tables are renamed (with
a rule) and compare the tables' contents.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES, assert_same_values, load_golden

from ckptmap.cli import main
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers.graph import read_model_spec
from ckptmap.readers.graph_files import _SCAN_WINDOW, _TABLE_IMPORT, _holds
from ckptmap.readers.source import open_source

GOLDEN = load_golden(FIXTURES / "golden" / "tf1_tables" / "model.ckpt-1.json")
TABLE_KEYS = {
    "id_weights-keys": ("int64", "lookup table 'id_weights' (MutableDenseHashTableV2)"),
    "id_weights-values": ("float32", "lookup table 'id_weights' (MutableDenseHashTableV2)"),
    "word_ids-keys": ("string", "lookup table 'word_ids' (MutableHashTableV2)"),
    "word_ids-values": ("int64", "lookup table 'word_ids' (MutableHashTableV2)"),
}
WORDS = {b"apple": 3, b"pear": 1, b"fig": 4}
WEIGHTS = {5: 0.5, 11: 1.5, 40: -2.0}


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    copy = tmp_path / "tables"
    shutil.copytree(FIXTURES / "tf1_tables", copy)
    return copy


@pytest.fixture(params=["meta", "saved_model"])
def graph(request: pytest.FixtureRequest, model: Path) -> Path:
    return model / "model.ckpt-1.meta" if request.param == "meta" else model / "saved_model"


def _assert_golden_values(prefix: Path, rename: dict[str, str] | None = None) -> None:
    rename = rename or {}
    with open_source(prefix) as source:
        assert sorted(source.keys()) == sorted(rename.get(t.name, t.name) for t in GOLDEN.tensors)
        for tensor in GOLDEN.tensors:
            assert_same_values(
                np.asarray(source.read(rename.get(tensor.name, tensor.name))), tensor.value
            )


def test_the_spec_takes_table_keys_with_their_dtype_and_any_shape(graph: Path) -> None:
    spec = read_model_spec(graph)
    tables = {k: s for k, s in spec.keys.items() if s.dynamic}
    assert {k: s.dtype.name for k, s in tables.items()} == {
        k: d for k, (d, _) in TABLE_KEYS.items()
    }
    assert spec.restored_into == {k: what for k, (_, what) in TABLE_KEYS.items()}
    assert {v.key for v in spec.variables.values()} == {"embed/w", "global_step"}
    assert spec.keys["embed/w"].shape == (4, 3)
    assert not spec.keys["embed/w"].dynamic


def test_check_with_the_graph_passes(model: Path, graph: Path) -> None:
    result = _run("check", "--old", model, "--new-graph", graph)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 6 keys resolved")


def test_remap_copies_the_tables_as_they_are(model: Path, graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run("remap", "--old", model, "--new-graph", graph, "--out", f"{out}/")
    assert result.exit_code == 0, result.output
    _assert_golden_values(out)


@pytest.mark.parametrize("where", ["folder", "saved_model"])
def test_inspect_marks_what_the_graph_restores_into_tables(model: Path, where: str) -> None:
    """With the checkpoint's own graph beside it (.meta, or the SavedModel's)."""
    target = model if where == "folder" else model / "saved_model"
    result = _run("inspect", target, "--json")
    assert result.exit_code == 0, result.output
    marked = {t["name"]: t.get("restored_into") for t in json.loads(result.stdout)["tensors"]}
    assert marked == {
        "embed/w": None,
        "global_step": None,
        **{k: what for k, (_, what) in TABLE_KEYS.items()},
    }
    text = _run("inspect", target).stdout
    graph = model / ("model.ckpt-1.meta" if where == "folder" else "saved_model/saved_model.pb")
    assert f"Restored by {graph} into something other than a variable:\n" in text
    assert "  word_ids-keys: lookup table 'word_ids' (MutableHashTableV2)\n" in text


def test_inspect_without_its_graph_marks_nothing(model: Path) -> None:
    (model / "model.ckpt-1.meta").unlink()
    result = _run("inspect", model, "--json")
    assert result.exit_code == 0, result.output
    assert all("restored_into" not in t for t in json.loads(result.stdout)["tensors"])


_NEEDLE = len(_TABLE_IMPORT)


@pytest.mark.parametrize(
    "at", [0, _SCAN_WINDOW - _NEEDLE, _SCAN_WINDOW - 8, _SCAN_WINDOW - 1, _SCAN_WINDOW]
)
def test_the_graph_search_finds_a_name_across_two_windows(tmp_path: Path, at: int) -> None:
    """The graph is searched a window at a time: a name across two windows is found."""
    graph = tmp_path / "model.ckpt-1.meta"
    graph.write_bytes(b"." * at + _TABLE_IMPORT + b"." * 3)
    assert _holds(graph, _TABLE_IMPORT)
    graph.write_bytes(b"." * at + _TABLE_IMPORT[:-1] + b"." + _TABLE_IMPORT[1:])
    assert not _holds(graph, _TABLE_IMPORT)


def test_the_graph_search_finds_a_name_as_the_files_last_bytes(tmp_path: Path) -> None:
    graph = tmp_path / "model.ckpt-1.meta"
    graph.write_bytes(b"." * (2 * _SCAN_WINDOW + 5) + _TABLE_IMPORT)
    assert _holds(graph, _TABLE_IMPORT)


@pytest.mark.parametrize("data", [b"", b"Lookup", _TABLE_IMPORT[:-1], b"." * (3 * _SCAN_WINDOW)])
def test_the_graph_search_of_a_file_without_the_name(tmp_path: Path, data: bytes) -> None:
    graph = tmp_path / "model.ckpt-1.meta"
    graph.write_bytes(data)
    assert not _holds(graph, _TABLE_IMPORT)


def _edit_meta(meta: Path, change: Any) -> None:
    """Rewrite the TF-written MetaGraphDef with ``change(node)`` applied to the Saver's nodes."""
    message = ckptmap_tf_pb2.MetaGraphDef.FromString(meta.read_bytes())
    for node in message.graph_def.node:
        if node.name.startswith("save/RestoreV2"):
            change(node)
    meta.write_bytes(message.SerializeToString())


def test_remap_with_a_rule_renames_table_keys(model: Path, tmp_path: Path) -> None:
    """The graph's Saver restores the tables under ``vocab/`` (its names rewritten)."""
    meta = model / "model.ckpt-1.meta"

    def rename(node: Any) -> None:
        if node.name == "save/RestoreV2/tensor_names":
            strings = node.attr["value"].tensor.string_val
            strings[:] = [
                s if s in (b"embed/w", b"global_step") else b"vocab/" + s for s in strings
            ]

    _edit_meta(meta, rename)
    result = _run("check", "--old", model, "--new-graph", meta, "--json")
    assert result.exit_code != 0
    candidates = {
        u["new_key"]: [(c["old_key"], c["why"]) for c in u["candidates"]]
        for u in json.loads(result.stdout)["unresolved"]
    }
    assert candidates == {  # by dtype, whatever the shape
        f"vocab/{k}": [(k, f"same dtype {dtype} (any shape); unused")]
        for k, (dtype, _) in TABLE_KEYS.items()
    }
    out = tmp_path / "out"
    result = _run(
        "remap",
        "--old",
        model,
        "--new-graph",
        meta,
        "--rule",
        "^vocab/(.*)$={}",
        "--out",
        f"{out}/",
    )
    assert result.exit_code == 0, result.output
    _assert_golden_values(out, {k: "vocab/" + k for k in TABLE_KEYS})


def test_a_table_key_of_another_dtype_is_a_mismatch(model: Path) -> None:
    meta = model / "model.ckpt-1.meta"
    message = ckptmap_tf_pb2.MetaGraphDef.FromString(meta.read_bytes())
    names = next(n for n in message.graph_def.node if n.name == "save/RestoreV2/tensor_names")
    position = list(names.attr["value"].tensor.string_val).index(b"word_ids-values")

    def retype(node: Any) -> None:
        if node.name == "save/RestoreV2":
            node.attr["dtypes"].list.type[position] = ckptmap_tf_pb2.DT_INT32

    _edit_meta(meta, retype)
    result = _run("check", "--old", model, "--new-graph", meta, "--json")
    assert result.exit_code != 0
    mismatched = json.loads(result.stdout)["mismatched"]
    assert [m["new_key"] for m in mismatched] == ["word_ids-values"]
    assert "dtype int64 in the checkpoint, int32 in the model" in json.dumps(mismatched)


# -- TensorFlow as the oracle -------------------------------------------------------------


@pytest.mark.tf
def test_tensorflow_lists_and_reads_the_same(tf: Any, model: Path) -> None:
    prefix = str(model / "model.ckpt-1")
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    result = _run("inspect", model, "--json")
    assert result.exit_code == 0, result.output
    listed = {t["name"]: (t["dtype"], t["shape"]) for t in json.loads(result.stdout)["tensors"]}
    assert listed == {n: (dtypes[n].name, list(s)) for n, s in tf.train.list_variables(prefix)}
    with open_source(model) as source:
        for key in source:
            assert_same_values(np.asarray(source.read(key)), np.asarray(reader.get_tensor(key)))


def _table_graph(tf: Any, prefix: str) -> tuple[Any, Any, dict[str, Any]]:
    """The fixture's graph with the tables named ``<prefix>word_ids`` and ``<prefix>id_weights``."""
    graph = tf.Graph()
    with graph.as_default():
        words = tf.lookup.experimental.MutableHashTable(
            tf.string, tf.int64, default_value=-1, name=f"{prefix}word_ids"
        )
        weights = tf.lookup.experimental.DenseHashTable(
            tf.int64,
            tf.float32,
            default_value=-1.0,
            empty_key=-1,
            deleted_key=-2,
            initial_num_buckets=8,
            name=f"{prefix}id_weights",
        )
        embed = tf.compat.v1.get_variable("embed/w", shape=[4, 3])
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        exports = {"words": words.export(), "weights": weights.export(), "embed": embed.value()}
    return graph, saver, exports


def _contents(
    tf: Any, graph: Any, saver: Any, exports: dict[str, Any], prefix: str
) -> tuple[dict[bytes, int], dict[int, float]]:
    with tf.compat.v1.Session(graph=graph) as sess:
        saver.restore(sess, prefix)
        (word_keys, word_values), (weight_keys, weight_values) = sess.run(
            [exports["words"], exports["weights"]]
        )
    words = dict(zip(word_keys.tolist(), word_values.tolist(), strict=True))
    weights = {
        int(k): float(v)
        for k, v in zip(weight_keys.reshape(-1), weight_values.reshape(-1), strict=True)
        if k not in (-1, -2)
    }
    return words, weights


@pytest.mark.tf
@pytest.mark.parametrize("renamed", [False, True], ids=["identity", "renamed"])
def test_tensorflow_restores_the_remapped_tables(
    tf: Any, model: Path, tmp_path: Path, renamed: bool
) -> None:
    graph, saver, exports = _table_graph(tf, "vocab_" if renamed else "")
    new_graph = tmp_path / "new.meta"
    with graph.as_default():
        tf.compat.v1.train.export_meta_graph(str(new_graph))
    out = tmp_path / "out"
    rule = ["--rule", "^vocab_(.*)$={}"] if renamed else []
    result = _run("remap", "--old", model, "--new-graph", new_graph, *rule, "--out", f"{out}/")
    assert result.exit_code == 0, result.output
    words, weights = _contents(tf, graph, saver, exports, tf.train.latest_checkpoint(str(out)))
    assert words == WORDS
    assert weights == WEIGHTS
    with tf.compat.v1.Session(graph=graph) as sess:
        saver.restore(sess, tf.train.latest_checkpoint(str(out)))
        embed = sess.run(exports["embed"])
    assert_same_values(embed, next(t.value for t in GOLDEN.tensors if t.name == "embed/w"))
