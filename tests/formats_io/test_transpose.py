"""``"transpose"`` in alias maps: a PyTorch-style state dict into a TensorFlow model.

The state dict is written by the ``safetensors`` package from numpy (torch is
not needed): ``Linear.weight`` is ``[out, in]`` and a conv weight
``[out, in, h, w]``; TensorFlow's ``kernel`` is ``[in, out]`` and
``[h, w, in, out]``. The ``tf`` test builds the TensorFlow graph, lets its
Saver restore what ``remap`` wrote and runs the layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import FIXTURES

from ckptmap import check, plan_remap, remap
from ckptmap.cli import main
from ckptmap.dtypes import BY_NAME
from ckptmap.errors import AliasError
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.spec import ModelSpec, TensorSpec
from ckptmap.split import SliceSpec

F32 = BY_NAME["float32"]
RNG = np.random.default_rng(18)
STATE = {
    "fc.weight": RNG.standard_normal((3, 5)).astype(np.float32),  # [out, in]
    "fc.bias": RNG.standard_normal(3).astype(np.float32),
    "conv.weight": RNG.standard_normal((4, 3, 2, 2)).astype(np.float32),  # [out, in, h, w]
    "square.weight": RNG.standard_normal((4, 4)).astype(np.float32),
}
ALIASES = {
    "dense/kernel": {"from": "fc.weight", "transpose": [1, 0]},
    "dense/bias": "fc.bias",
    "conv/kernel": {"from": "conv.weight", "transpose": [2, 3, 1, 0]},
    "square/kernel": {"from": "square.weight", "transpose": [1, 0]},
}
NEW = ModelSpec.from_parts(
    [
        TensorSpec("dense/kernel", F32, (5, 3)),
        TensorSpec("dense/bias", F32, (3,)),
        TensorSpec("conv/kernel", F32, (2, 2, 3, 4)),
        TensorSpec("square/kernel", F32, (4, 4)),
    ]
)


def _state_dict(tmp_path: Path) -> Path:
    from safetensors.numpy import save_file

    path = tmp_path / "pytorch_model.safetensors"
    save_file(STATE, str(path))
    return path


def _alias_map(tmp_path: Path, entries: dict[str, Any]) -> Path:
    path = tmp_path / "aliases.json"
    path.write_text(json.dumps(entries))
    return path


def test_transposed_entries_are_assembled_and_reported(tmp_path: Path) -> None:
    old = _state_dict(tmp_path)
    plan = plan_remap(old, NEW, alias_map=_alias_map(tmp_path, ALIASES), auto=False)
    assert plan.verdict.value == "ok"
    by_key = {t.key: t for t in plan.tensors}
    assert by_key["dense/kernel"].action == "transpose"
    assert by_key["dense/kernel"].transpose == (1, 0)
    assert by_key["square/kernel"].action == "transpose"  # same shape, still transposed
    assert by_key["dense/bias"].action == "convert"  # safetensors: read as an array
    assert plan.summary()["transposed"] == 3
    assert by_key["conv/kernel"].to_json()["transpose"] == [2, 3, 1, 0]
    assert all(p["method"] == "assemble" for p in by_key["conv/kernel"].to_json()["pieces"])
    assert "transposed [1, 0]" in plan.alias.matches["dense/kernel"].detail

    out = tmp_path / "tf" / "model.ckpt-1"
    remap(old, NEW, out, alias_map=_alias_map(tmp_path, ALIASES), auto=False)
    with open_checkpoint(out) as written:
        np.testing.assert_array_equal(written.read("dense/kernel"), STATE["fc.weight"].T)
        np.testing.assert_array_equal(written.read("dense/bias"), STATE["fc.bias"])
        np.testing.assert_array_equal(
            written.read("conv/kernel"), STATE["conv.weight"].transpose(2, 3, 1, 0)
        )
        np.testing.assert_array_equal(written.read("square/kernel"), STATE["square.weight"].T)


def test_a_partitioned_new_key_takes_slices_of_the_transposed_tensor(tmp_path: Path) -> None:
    old = _state_dict(tmp_path)
    parts = (SliceSpec.parse("5 3 0,3:-"), SliceSpec.parse("5 3 3,2:-"))
    new = ModelSpec.from_parts([TensorSpec("dense/kernel", F32, (5, 3), parts)])
    entries = {"dense/kernel": ALIASES["dense/kernel"]}
    out = tmp_path / "tf" / "model.ckpt-1"
    remap(old, new, out, alias_map=entries, auto=False)  # a Mapping works as a file does
    with open_checkpoint(out) as written:
        assert set(written.slices("dense/kernel")) == set(parts)
        np.testing.assert_array_equal(written.read("dense/kernel"), STATE["fc.weight"].T)


def test_a_tf_checkpoint_key_is_transposed_too(tmp_path: Path) -> None:
    old = FIXTURES / "ffm_v1" / "model.ckpt-100"
    new = ModelSpec.from_parts([TensorSpec("w_t", F32, (1, 200))])
    entries = {"w_t": {"from": "ffm/bias_net/w", "transpose": [1, 0]}}
    out = tmp_path / "tf" / "model.ckpt-1"
    remap(old, new, out, alias_map=entries, auto=False)
    with open_checkpoint(out) as written, open_checkpoint(old) as original:
        np.testing.assert_array_equal(written.read("w_t"), original.read("ffm/bias_net/w").T)


def test_a_shape_mismatch_without_a_transform_stays_an_error(tmp_path: Path) -> None:
    old = _state_dict(tmp_path)
    plain = {k: (v["from"] if isinstance(v, dict) else v) for k, v in ALIASES.items()}
    report = check(old, NEW, alias_map=plain, auto=False)
    assert not report.ok
    mismatched = {m.new_key for m in report.plan.alias.mismatched}
    assert mismatched == {"dense/kernel", "conv/kernel"}  # the square one fits as it is
    result = CliRunner().invoke(
        main,
        ["check", "--old", str(old), "--new-graph", str(_spec_file(tmp_path))]
        + ["--alias-map", str(_alias_map(tmp_path, plain)), "--no-auto"],
    )
    assert result.exit_code == 1


def test_a_transpose_that_does_not_fit_is_a_mismatch_saying_why(tmp_path: Path) -> None:
    old = _state_dict(tmp_path)
    entries = {**ALIASES, "conv/kernel": {"from": "conv.weight", "transpose": [0, 1, 3, 2]}}
    report = check(old, NEW, alias_map=entries, auto=False)
    (mismatch,) = report.plan.alias.mismatched
    assert mismatch.new_key == "conv/kernel"
    assert mismatch.what == (
        "transpose [0, 1, 3, 2] of the old shape [4, 3, 2, 2] is [4, 3, 2, 2], but the new "
        "model restores [2, 2, 3, 4] (alias map entry 'conv/kernel')"
    )


@pytest.mark.parametrize("bad", [[0, 0], [1], [0, 2], "10", [0.0, 1.0]])
def test_a_transpose_that_is_no_permutation_is_refused(tmp_path: Path, bad: object) -> None:
    path = _alias_map(tmp_path, {"dense/kernel": {"from": "fc.weight", "transpose": bad}})
    with pytest.raises(AliasError, match="is not a permutation") as caught:
        check(_state_dict(tmp_path), NEW, alias_map=path, auto=False)
    assert str(path) in str(caught.value)


def _spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "new.json"
    variables = [
        {"name": k, "dtype": s.dtype.name, "shape": list(s.shape)} for k, s in NEW.keys.items()
    ]
    path.write_text(json.dumps({"version": 1, "variables": variables}))
    return path


# -- TensorFlow restores it and the layer computes what PyTorch's would ----------------------


@pytest.mark.tf
def test_tensorflow_restores_a_transposed_state_dict(tmp_path: Path, tf: Any) -> None:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 5])
        with v1.variable_scope("dense"):
            kernel = v1.get_variable("kernel", [5, 3])
            bias = v1.get_variable("bias", [3])
        y = tf.matmul(x, kernel) + bias
        saver = v1.train.Saver()
        pbtxt = tmp_path / "graph.pbtxt"
        tf.io.write_graph(graph.as_graph_def(), str(tmp_path), "graph.pbtxt")
    old = _state_dict(tmp_path)
    aliases = {k: ALIASES[k] for k in ("dense/kernel", "dense/bias")}
    out = tmp_path / "tf" / "model.ckpt-1"
    result = CliRunner().invoke(
        main,
        ["remap", "--old", str(old), "--new-graph", str(pbtxt), "--out", str(out)]
        + ["--alias-map", str(_alias_map(tmp_path, aliases))],
    )
    assert result.exit_code == 0, result.output
    assert "1 transposed" in result.output
    inputs = RNG.standard_normal((2, 5)).astype(np.float32)
    with v1.Session(graph=graph) as sess:
        saver.restore(sess, str(out))
        got_kernel, got = sess.run([kernel, y], {x: inputs})
    np.testing.assert_array_equal(got_kernel, STATE["fc.weight"].T)
    torch_linear = inputs @ STATE["fc.weight"].T + STATE["fc.bias"]  # what nn.Linear computes
    np.testing.assert_allclose(got, torch_linear, rtol=1e-6)
