"""The oracle for --fill-from and --allow-missing: what plain TensorFlow makes of the output.

``ckptmap remap`` of the v1 FFM checkpoint into the v2 graph without the rule
for the renamed ``ffm/bias_net`` -> ``ffm/global_bias`` leaves three keys with
no source. With ``--fill-from`` (the v2 model's own TF-written checkpoint) a
plain Saver of the new graph restores the output: the filled keys hold the
template's values, every other variable the old value of its source. With
``--allow-missing`` the plain Saver refuses it, and ``init_from_checkpoint`` over
the keys it has restores it as the README says.
"""

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

pytestmark = pytest.mark.tf

OLD = FIXTURES / "ffm_v1"
TEMPLATE = FIXTURES / "ffm_v2"
META = FIXTURES / "ffm_v2" / "model.ckpt-100.meta"
FILLED = {"ffm/global_bias/w", "ffm/global_bias/w/Adam", "ffm/global_bias/w/Adam_1"}
ALIASES = json.loads((FIXTURES / "ffm_v2" / "expected_alias.json").read_text())["aliases"]


def _remap(*args: str | os.PathLike[str]) -> None:
    result = CliRunner().invoke(main, ["remap", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _key(var: Any) -> str:
    info = var._save_slice_info  # noqa: SLF001 - TF's own record of the part
    return str(info.full_name if info is not None else var.op.name)


def _part(tf: Any, var: Any, prefix: Path, key: str) -> np.ndarray:
    """``var``'s part of ``key`` in the checkpoint at ``prefix``, read by TensorFlow."""
    value = tf.train.load_checkpoint(str(prefix)).get_tensor(key)
    info = var._save_slice_info  # noqa: SLF001
    if info is None:
        return np.asarray(value)
    return np.asarray(
        value[tuple(slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape, strict=True))]
    )


def test_a_filled_output_restores_with_a_plain_saver(tf: Any, tmp_path: Path) -> None:
    out = tmp_path / "new"
    _remap("--old", OLD, "--new-graph", TEMPLATE / "graph.pbtxt", "--fill-from", TEMPLATE,
           "--out", f"{out}/")  # fmt: skip
    prefix = out / "model.ckpt-100"
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(META), clear_devices=True)
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(prefix))
            values = sess.run(variables)
    seen = set()
    for var, value in zip(variables, values, strict=True):
        key = _key(var)
        seen.add(key)
        if key in FILLED:
            expected = _part(tf, var, TEMPLATE / "model.ckpt-100", key)
            assert not np.array_equal(expected, _part(tf, var, OLD / "model.ckpt-100",
                                                      ALIASES[key]))  # fmt: skip
        else:
            expected = _part(tf, var, OLD / "model.ckpt-100", ALIASES[key])
        np.testing.assert_array_equal(value, expected, err_msg=key)
    assert seen >= FILLED
    assert len(seen) == 27


def test_a_partial_output_restores_with_init_from_checkpoint_not_a_saver(
    tf: Any, tmp_path: Path
) -> None:
    out = tmp_path / "new"
    _remap("--old", OLD, "--new-graph", TEMPLATE / "graph.pbtxt", "--allow-missing",
           "--out", f"{out}/")  # fmt: skip
    prefix = str(out / "model.ckpt-100")
    have = {name for name, _ in tf.train.list_variables(prefix)}
    assert not have & FILLED
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(META), clear_devices=True)
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session(graph=graph) as sess, pytest.raises(tf.errors.NotFoundError):
            saver.restore(sess, prefix)
        parts: dict[str, list[Any]] = {}
        for var in variables:
            if _key(var) in have:
                parts.setdefault(_key(var), []).append(var)
        tf.compat.v1.train.init_from_checkpoint(
            prefix, {k: p if len(p) > 1 else p[0] for k, p in parts.items()}
        )
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            values = sess.run(variables)
    for var, value in zip(variables, values, strict=True):
        key = _key(var)
        if key in FILLED:  # left to its initializer (zeros)
            np.testing.assert_array_equal(value, np.zeros_like(value), err_msg=key)
        else:
            expected = _part(tf, var, OLD / "model.ckpt-100", ALIASES[key])
            np.testing.assert_array_equal(value, expected, err_msg=key)
