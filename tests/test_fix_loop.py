"""The fix loop finishes: follow ``check --json``'s suggested rules until the check passes.

A TensorFlow-written checkpoint of an old model and the graph of its new version,
in which the outer scope ``encoder`` became ``enc_v2`` and its inner layer ``fc``
became ``proj``. Decoys have the same shapes: ``encoder/attn`` (kept under the new
scope), ``decoder/fc`` (unchanged) and ``head_old/fc`` (a layer the new model
dropped). Starting from no rules, each round adds the suggested rules; the loop
must converge in a few rounds, never map a key to another layer's tensor, and
the remapped checkpoint must restore the right values with a plain TF Saver.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from ckptmap.cli import main

pytestmark = pytest.mark.tf

OLD_LAYERS = ("encoder/attn", "encoder/fc", "decoder/fc", "head_old/fc")
NEW_LAYERS = {
    "enc_v2/attn": "encoder/attn",
    "enc_v2/proj": "encoder/fc",
    "decoder/fc": "decoder/fc",
}


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _build(tf: object, layers: tuple[str, ...] | list[str], seed: int) -> list[object]:
    v1 = tf.compat.v1  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    made = []
    for layer in layers:
        with v1.variable_scope(layer):
            w = rng.standard_normal((8, 4)).astype(np.float32)
            b = rng.standard_normal(4).astype(np.float32)
            made.append(v1.get_variable("w", initializer=w))
            made.append(v1.get_variable("b", initializer=b))
    v1.train.get_or_create_global_step()
    return made


def _models(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    import tensorflow as tf

    v1 = tf.compat.v1
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    new_dir.mkdir()
    with tf.Graph().as_default():
        variables = _build(tf, OLD_LAYERS, seed=1)
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = saver.save(sess, str(old_dir / "model.ckpt"))
            values = {v.op.name: sess.run(v) for v in variables}
    with tf.Graph().as_default() as graph:
        _build(tf, list(NEW_LAYERS), seed=2)
        v1.train.Saver()
        tf.io.write_graph(graph.as_graph_def(), str(new_dir), "graph.pbtxt", as_text=True)
    return Path(prefix), new_dir / "graph.pbtxt", values


def _layer(key: str) -> str:
    return key.rpartition("/")[0]


def _assert_rule_keeps_layers(text: str) -> None:
    """Applied to every key of the new model, ``text`` gives no old key of another layer."""
    from ckptmap.naming import parse_rule

    rule = parse_rule(text)
    old_keys = {f"{layer}/{leaf}" for layer in OLD_LAYERS for leaf in ("w", "b")}
    for layer, source in NEW_LAYERS.items():
        for leaf in ("w", "b"):
            out = rule.apply(f"{layer}/{leaf}")
            if out in old_keys:
                assert _layer(out) == source, (text, f"{layer}/{leaf}", out)


def test_following_suggested_rules_resolves_a_renamed_scope_and_layer(tmp_path: Path) -> None:
    import tensorflow as tf

    old, graph, old_values = _models(tmp_path)
    rules: list[str] = []
    for _round in range(4):
        args = ["check", "--old", old, "--new-graph", graph, "--json"]
        for rule in rules:
            args += ["--rule", rule]
        result = run(*args)
        data = json.loads(result.stdout)
        for item in data["resolved"]:  # never another layer's tensor
            if item["key"] != "global_step":
                assert _layer(item["source"]) == NEW_LAYERS[_layer(item["key"])], item
        for item in data["unresolved"]:
            entry = item["suggested_entry"]
            if entry:
                ((new_key, old_key),) = entry.items()
                assert _layer(old_key) == NEW_LAYERS[_layer(new_key)], item
            assert item["note"] != "no old key of this shape and dtype"
        for rule in data["suggested_rules"]:  # no suggested rule maps a key to another layer
            _assert_rule_keeps_layers(rule)
        if data["ok"]:
            assert result.exit_code == 0
            break
        assert data["suggested_rules"], data["unresolved"]
        rules += [r for r in data["suggested_rules"] if r not in rules]
    else:
        pytest.fail(f"check did not pass after 4 rounds; rules {rules}")
    assert _round == 1  # round 0 suggests both rules (scope, then the layer inside it)
    assert "^enc_v2/proj/(.*)$=encoder/fc/{}" in rules

    out = tmp_path / "out" / "model.ckpt"
    args = ["remap", "--old", old, "--new-graph", graph, "--out", out]
    for rule in rules:
        args += ["--rule", rule]
    assert run(*args).exit_code == 0
    with tf.Graph().as_default():  # a plain Saver of the new graph restores it
        variables = _build(tf, list(NEW_LAYERS), seed=3)
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, str(out))
            for var in variables:
                name = var.op.name
                source = NEW_LAYERS[_layer(name)] + "/" + name.rpartition("/")[2]
                np.testing.assert_array_equal(sess.run(var), old_values[source])


def test_a_wrong_suggestion_is_never_made_when_two_old_layers_fit(tmp_path: Path) -> None:
    """Two unused old layers fit the renamed one equally: candidates, no rule."""
    from ckptmap.alias import plan_aliases
    from ckptmap.dtypes import BY_NAME
    from ckptmap.spec import ModelSpec, TensorSpec

    f32 = BY_NAME["float32"]
    old = {
        k: TensorSpec(k, f32, s)
        for k, s in [
            ("encoder/fc/w", (8, 4)),
            ("encoder/fc2/w", (8, 4)),
            ("encoder/attn/w", (8, 4)),
        ]
    }
    new = ModelSpec.from_parts(
        [TensorSpec("enc_v2/attn/w", f32, (8, 4)), TensorSpec("enc_v2/proj/w", f32, (8, 4))]
    )
    plan = plan_aliases(old, new, rules=["^enc_v2/(.*)$=encoder/{}"])
    (u,) = plan.unresolved
    assert u.suggested_rule is None
    assert {c.old_key for c in u.candidates[:2]} == {"encoder/fc/w", "encoder/fc2/w"}
    assert u.note.startswith("no confident candidate; best: ")
