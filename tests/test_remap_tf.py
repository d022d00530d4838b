"""The oracle: plain TensorFlow restores what ``ckptmap remap`` writes into the new model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.readers import open_checkpoint

pytestmark = pytest.mark.tf

RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
EXPECTED = json.loads((FIXTURES / "ffm_v2" / "expected_alias.json").read_text())


def _remap(*args: str | os.PathLike[str]) -> None:
    result = CliRunner().invoke(main, ["remap", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _restore_and_compare(tf: Any, meta: Path, prefix: Path, old: Path) -> int:
    """Restore ``prefix`` with the Saver of the graph in ``meta``; compare every variable
    (each part with its slice of the old tensor). Returns the number of variables checked."""
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(meta), clear_devices=True)
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(prefix))
            values = sess.run(variables)
    checked = 0
    with open_checkpoint(old) as src:
        for var, value in zip(variables, values, strict=True):
            info = var._save_slice_info  # noqa: SLF001 - TF's own record of the part
            key = info.full_name if info is not None else var.op.name
            expected = src.read(EXPECTED["aliases"][key])
            if info is not None:
                index = tuple(
                    slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape, strict=True)
                )
                expected = expected[index]
            np.testing.assert_array_equal(value, expected, err_msg=var.name)
            checked += 1
    return checked


@pytest.mark.parametrize(
    ("old", "new_graph", "meta"),
    [
        ("ffm_v1", "ffm_v2/graph.pbtxt", "ffm_v2/model.ckpt-100.meta"),
        ("ffm_v1_ps2", "ffm_v2_ps3/graph.pbtxt", "ffm_v2_ps3/model.ckpt-100.meta"),
        ("ffm_v1", "ffm_v2_ps3/model.ckpt-100.meta", "ffm_v2_ps3/model.ckpt-100.meta"),
    ],
)
@pytest.mark.parametrize(
    "write", [(), ("--link",), ("--shard-size", "10KiB")], ids=["copy", "link", "shard-size"]
)
def test_saver_restores_remapped_checkpoint(
    tf: Any, tmp_path: Path, old: str, new_graph: str, meta: str, write: tuple[str, ...]
) -> None:
    out = tmp_path / "new"
    _remap(
        "--old", FIXTURES / old, "--new-graph", FIXTURES / new_graph, "--out", f"{out}/",
        "--rule", RULE, *write,
    )  # fmt: skip
    prefix = Path(tf.train.latest_checkpoint(str(out)))
    assert prefix == out / "model.ckpt-100"
    shards = sorted(out.glob("model.ckpt-100.data-*"))
    if write and write[0] == "--shard-size":  # filled in turn: 74 KiB in files of <= 10 KiB
        assert len(shards) >= 7
        assert all(p.stat().st_size <= 10 << 10 for p in shards[:-1])
    checked = _restore_and_compare(tf, FIXTURES / meta, prefix, FIXTURES / old)
    assert checked == 27 + 3 * 2  # 27 keys; the embedding and its two slots have 3 parts each


def test_saver_restores_through_an_edited_alias_map(tf: Any, tmp_path: Path) -> None:
    new = FIXTURES / "ffm_v2" / "graph.pbtxt"
    printed = CliRunner().invoke(
        main, ["alias", "--old", str(FIXTURES / "ffm_v1"), "--new-graph", str(new)]
    )
    doc = json.loads(printed.stdout)
    for u in doc["unresolved"]:
        doc["aliases"][u["new_key"]] = u["new_key"].replace("global_bias", "bias_net")
    alias_map = tmp_path / "aliases.json"
    alias_map.write_text(json.dumps(doc))
    out = tmp_path / "new"
    _remap(
        "--old", FIXTURES / "ffm_v1", "--new-graph", new, "--out", f"{out}/",
        "--alias-map", alias_map, "--no-auto",
    )  # fmt: skip
    meta = FIXTURES / "ffm_v2" / "model.ckpt-100.meta"
    assert _restore_and_compare(tf, meta, out / "model.ckpt-100", FIXTURES / "ffm_v1") == 33


def test_tf_reads_the_clear_nn_output(tf: Any, tmp_path: Path) -> None:
    out = tmp_path / "new"
    _remap(
        "--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out", f"{out}/", "--clear-nn", "--continue-training",
    )  # fmt: skip
    reader = tf.train.load_checkpoint(str(out))
    assert reader.get_variable_to_shape_map() == {"global_step": []}
    assert reader.get_tensor("global_step") == 100
