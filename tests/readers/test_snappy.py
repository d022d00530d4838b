"""Snappy-compressed index blocks, on a real SavedModel written by TensorFlow 1.x.

The input is TensorFlow Serving's ``saved_model_half_plus_two_cpu`` test model
(``../shared/data/tf-serving/``, see its README): its ``variables.index`` table
blocks are raw Snappy (block trailer type 1). The core tests compare with values
recorded from TensorFlow 2.21 (``tf.train.list_variables`` / ``get_tensor``);
the TF-marked tests ask TensorFlow itself, and restore what ``remap`` writes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import data_blocks

from ckptmap.cli import main
from ckptmap.readers import open_checkpoint

SHARED = (
    Path(
        os.environ.get(
            "CKPTMAP_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"
        )
    )
    / "tf-serving"
)
MODEL = SHARED / "saved_model_half_plus_two_cpu" / "00000123"

# Recorded from TensorFlow 2.21: tf.train.list_variables and get_tensor of the model.
GOLDEN = {"a": 0.5, "a2": 0.5, "b": 2.0, "c": 3.0, "c2": 3.0}

pytestmark = pytest.mark.skipif(
    not MODEL.is_dir(), reason=f"{MODEL} (the shared third-party data) is not here"
)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A copy of the SavedModel (the shared data is never touched)."""
    copy = tmp_path / "half_plus_two"
    shutil.copytree(MODEL, copy)
    return copy


def _run(*args: str | Path) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_the_index_really_is_snappy_compressed(model: Path) -> None:
    index = model / "variables" / "variables.index"
    raw = index.read_bytes()
    types = {raw[b.offset + b.size] for b in data_blocks(index)}
    assert types == {1}  # every data block: raw Snappy


def test_inspect_lists_what_tensorflow_lists(model: Path) -> None:
    result = _run("inspect", model / "variables" / "variables", "--json")
    assert result.exit_code == 0, result.output
    listed = {t["name"]: (t["dtype"], t["shape"]) for t in json.loads(result.stdout)["tensors"]}
    assert listed == {name: ("float32", []) for name in GOLDEN}


def test_values_and_crcs_equal_tensorflows(model: Path) -> None:
    with open_checkpoint(model / "variables" / "variables") as ckpt:
        ckpt.verify()
        values = {key: ckpt.read(key, verify=True) for key in ckpt}
    assert values == {name: np.float32(v) for name, v in GOLDEN.items()}


def test_check_against_its_own_saved_model_passes(model: Path) -> None:
    result = _run("check", "--old", model / "variables" / "variables", "--new-graph", model)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 5 keys resolved")


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_remap_writes_an_uncompressed_v2_checkpoint(
    model: Path, tmp_path: Path, link: bool
) -> None:
    out = tmp_path / "out"
    args = ["remap", "--old", model / "variables" / "variables", "--new-graph", model]
    result = _run(*args, "--out", f"{out}/", *(["--link"] if link else []))
    assert result.exit_code == 0, result.output
    index = next(out.glob("*.index"))
    raw = index.read_bytes()
    assert {raw[b.offset + b.size] for b in data_blocks(index)} == {0}  # we write type 0
    with open_checkpoint(index.with_suffix("")) as ckpt:
        ckpt.verify()
        assert {key: ckpt.read(key) for key in ckpt} == GOLDEN


def test_convert_reads_snappy_input(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    result = _run(
        "convert", "--old", model / "variables" / "variables", "--to", "zarr3", "--out", out
    )
    assert result.exit_code == 0, result.output
    result = _run("inspect", out, "--json")
    assert result.exit_code == 0, result.output
    assert {t["name"] for t in json.loads(result.stdout)["tensors"]} == set(GOLDEN)


@pytest.mark.tf
def test_tensorflow_agrees(tf: Any, model: Path) -> None:
    prefix = str(model / "variables" / "variables")
    reader = tf.train.load_checkpoint(prefix)
    theirs = {
        name: (tuple(shape), reader.get_tensor(name))
        for name, shape in tf.train.list_variables(prefix)
    }
    with open_checkpoint(prefix) as ckpt:
        ours = {key: (ckpt.specs()[key].shape, ckpt.read(key)) for key in ckpt}
    assert ours.keys() == theirs.keys()
    for key, (shape, value) in theirs.items():
        assert ours[key][0] == shape
        np.testing.assert_array_equal(ours[key][1], value)


@pytest.mark.tf
@pytest.mark.parametrize("rule", [None, "^v/(.*)$={}"], ids=["identity", "renamed"])
def test_tensorflow_restores_the_remap(
    tf: Any, model: Path, tmp_path: Path, rule: str | None
) -> None:
    """The SavedModel's own Saver restores the remap of its Snappy checkpoint (identity),
    and a renamed graph's Saver restores a remap with a rule."""
    new = tmp_path / "new"
    graph = tf.Graph()
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(
            tf.compat.v1.Session(graph=graph), ["serve"], str(model)
        )
        del meta
        names = [v.op.name for v in tf.compat.v1.global_variables()]
    assert sorted(names) == sorted(GOLDEN)
    renamed = {name: (f"v/{name}" if rule else name) for name in names}
    new_graph = tf.Graph()
    with new_graph.as_default():
        variables = {
            old: tf.compat.v1.get_variable(name, shape=[], dtype=tf.float32)
            for old, name in renamed.items()
        }
        saver = tf.compat.v1.train.Saver()
        new.mkdir()
        tf.io.write_graph(new_graph.as_graph_def(), str(new), "graph.pbtxt")
    out = tmp_path / "out"
    args = ["remap", "--old", model / "variables" / "variables", "--new-graph", new / "graph.pbtxt"]
    result = _run(*args, *(["--rule", rule] if rule else []), "--out", f"{out}/")
    assert result.exit_code == 0, result.output
    with new_graph.as_default(), tf.compat.v1.Session(graph=new_graph) as sess:
        saver.restore(sess, tf.train.latest_checkpoint(str(out)))
        restored = dict(zip(variables, sess.run(list(variables.values())), strict=True))
    assert restored == GOLDEN
