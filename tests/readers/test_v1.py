"""TensorFlow V1 checkpoints (one table file, no ``.index``) are named as such.

ckptmap does not read V1 yet; every command says so in one line (exit 3) instead
of "not a checkpoint" or "listed but missing". The checkpoint is written by
TensorFlow in the test (``Saver(write_version=SaverDef.V1)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ckptmap.cli import main

pytestmark = pytest.mark.tf


@pytest.fixture
def v1_folder(tf: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "v1_model"
    folder.mkdir()  # the V1 writer does not create it
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable("w", shape=[2, 3], initializer=tf.compat.v1.ones_initializer())
        saver = tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(folder / "model.ckpt"), global_step=5)
    assert not (folder / "model.ckpt-5.index").exists()  # what makes it V1
    return folder


@pytest.mark.parametrize("target", ["folder", "prefix"])
@pytest.mark.parametrize("command", ["inspect", "check", "remap", "convert"])
def test_every_command_names_a_v1_checkpoint(
    v1_folder: Path, tmp_path: Path, target: str, command: str
) -> None:
    old = str(v1_folder if target == "folder" else v1_folder / "model.ckpt-5")
    meta = str(v1_folder / "model.ckpt-5.meta")
    out = tmp_path / "out"
    args = {
        "inspect": ["inspect", old],
        "check": ["check", "--old", old, "--new-graph", meta],
        "remap": ["remap", "--old", old, "--new-graph", meta, "--out", f"{out}/"],
        "convert": ["convert", "--old", old, "--to", "zarr3", "--out", str(out)],
    }[command]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: {v1_folder / 'model.ckpt-5'}: is a TensorFlow V1 checkpoint (one file, no "
        ".index), which ckptmap does not read yet; re-save it as V2 with TensorFlow (restore "
        "it with tf.compat.v1.train.Saver() and save again: V2 is the default)\n"
    )
    assert not out.exists()
