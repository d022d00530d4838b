"""The oracle for object-based outputs: TF2 restores what ``remap`` writes into a template.

For each refactoring in ``fixtures/make_tf2_objects.py`` and both Keras
flavours, ``remap --new-graph <template>`` writes a checkpoint that the new
model (rebuilt by the generator's own code) reads with
``tf.train.Checkpoint(model=..., optimizer=...).read(out).assert_consumed()``,
and every variable, every Adam slot and the iteration equal their source: the
old model's value as TensorFlow itself restores it from the old checkpoint
(the ground truth does not go through ckptmap), matched by the refactoring's
known correspondence of layers. A layer the old model lacks takes the
template's values (``--fill-from`` the template).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.readers import open_checkpoint

pytestmark = pytest.mark.tf

OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
FLAVOURS = {"keras3": FIXTURES / "tf2_keras3", "tfkeras": FIXTURES / "tf2_tfkeras"}
# The layers of each model, in the order of model.trainable_variables (kernel, bias each).
ROLES = {
    "old": ("first", "mid", "head"),
    "renamed": ("first", "mid", "head"),
    "submodule": ("first", "mid", "head"),
    "inserted": ("first", "mid", "extra", "head"),
}
# What the user passes for each refactoring, in the names users know (full names).
CASE_ARGS: dict[str, list[str]] = {
    "renamed": ["--rule", "^net/proj/(.*)$=net/hidden/{}"],
    "submodule": ["--rule", "^net/encoder/(.*)$=net/{}"],
    "inserted": [],  # the names stay; only the positional keys shift
}
FILLED_ROLES = {"inserted": ("extra",)}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_tf2_objects", FIXTURES / "make_tf2_objects.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def restored_state(keras: Any, case: str, prefix: Path) -> dict[str, np.ndarray]:
    """Rebuild the model of ``case`` and its Adam, restore ``prefix`` (every key consumed),
    and return each variable, slot and the iteration by role (``mid/kernel/m``)."""
    import tensorflow as tf

    model = GEN.build_net(keras, case)
    optimizer = GEN.build_optimizer(keras, model)
    tf.train.Checkpoint(model=model, optimizer=optimizer).read(str(prefix)).assert_consumed()
    return optimizer_state(model, optimizer, ROLES[case])


def optimizer_state(model: Any, optimizer: Any, roles: tuple[str, ...]) -> dict[str, np.ndarray]:
    variables = model.trainable_variables
    assert len(variables) == 2 * len(roles)
    state: dict[str, np.ndarray] = {}
    for i, variable in enumerate(variables):
        name = f"{roles[i // 2]}/{('kernel', 'bias')[i % 2]}"
        assert len(variable.shape) == (2 if name.endswith("kernel") else 1)
        # Both flavours' Adam keep the slots in lists aligned with the variables it was built for.
        state[name] = _value(variable)
        state[f"{name}/m"] = _value(optimizer._momentums[i])
        state[f"{name}/v"] = _value(optimizer._velocities[i])
    state["iteration"] = _value(optimizer.iterations)
    state["learning_rate"] = _value(optimizer.learning_rate)
    return state


def _value(variable: Any) -> np.ndarray:
    return np.array(variable.numpy())


def assert_states_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def assert_template_keys(out: Path, template: Path) -> None:
    """The output holds exactly the template's keys and its object graph, byte for byte."""
    with open_checkpoint(out) as written, open_checkpoint(template) as tmpl:
        assert sorted(written.specs()) == sorted(tmpl.specs())
        assert written.read(OBJECT_GRAPH).item() == tmpl.read(OBJECT_GRAPH).item()


@pytest.mark.parametrize("case", sorted(CASE_ARGS))
@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_refactored_keras_model_restores(flavour: str, case: str, tmp_path: Path) -> None:
    keras = GEN.import_keras(flavour)
    folder = FLAVOURS[flavour]
    template = folder / case / "ckpt"
    out = tmp_path / "out" / "ckpt"
    fill = ["--fill-from", template] if case in FILLED_ROLES else []
    result = run(
        "remap", "--old", folder / "old" / "ckpt", "--new-graph", template,
        *CASE_ARGS[case], *fill, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_template_keys(out, template)

    got = restored_state(keras, case, out)
    old = restored_state(keras, "old", folder / "old" / "ckpt")
    filled = restored_state(keras, case, template)
    want = {
        name: filled[name] if name.split("/")[0] in FILLED_ROLES.get(case, ()) else old[name]
        for name in got
    }
    assert_states_equal(got, want)
    assert int(got["iteration"]) == 1  # the old model's one training step, not the template's 0


SAVER = FIXTURES / "tf2_from_saver"
SAVER_NAMES = {"first": "hidden", "mid": "tower/mid", "head": "tower/head"}
SAVER_RULES = {
    # Keras full names -> the TF1 variable names; Adam's slots -> AdamOptimizer's
    # (Keras 3 names them momentum/velocity, tf-keras m/v). A tf-keras Sequential
    # names its layers without the model's scopes (mid/kernel for tower/mid/kernel).
    "keras3": [r"^net/(.*)/momentum$={}/Adam", r"^net/(.*)/velocity$={}/Adam_1", r"^net/(.*)$={}"],
    "tfkeras": [
        r"^net/(.*)/m$={}/Adam", r"^net/(.*)/v$={}/Adam_1", r"^net/(.*)$={}",
        r"^(.*)/m$=tower/{}/Adam", r"^(.*)/v$=tower/{}/Adam_1", r"^(.*)$=tower/{}",
    ],
}  # fmt: skip


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_tf1_saver_checkpoint_into_a_keras_template(flavour: str, tmp_path: Path) -> None:
    import tensorflow as tf

    keras = GEN.import_keras(flavour)
    old = SAVER / "old" / GEN.SAVER_PREFIX
    template = SAVER / flavour / "ckpt"
    out = tmp_path / "out" / "ckpt"
    rules = [a for r in SAVER_RULES[flavour] for a in ("--rule", r)]
    result = run(
        "remap", "--old", old, "--new-graph", template, *rules,
        "--fill-from", template, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_template_keys(out, template)

    got = restored_state(keras, "old", out)
    filled = restored_state(keras, "old", template)
    reader = tf.train.load_checkpoint(str(old))
    want: dict[str, np.ndarray] = {}
    for role, scope in SAVER_NAMES.items():
        for weight in ("kernel", "bias"):
            name = f"{scope}/{weight}"
            want[f"{role}/{weight}"] = reader.get_tensor(name)
            want[f"{role}/{weight}/m"] = reader.get_tensor(f"{name}/Adam")
            want[f"{role}/{weight}/v"] = reader.get_tensor(f"{name}/Adam_1")
    want["iteration"] = reader.get_tensor("global_step")
    want["learning_rate"] = filled["learning_rate"]  # no TF1 source: the template's
    assert_states_equal(got, want)


def test_ambiguous_structure_is_refused_with_candidates(tmp_path: Path) -> None:
    """Two layers of one shape, both renamed: nothing tells which is which, so no guess."""
    folder = FLAVOURS["keras3"]
    old, new = folder / "twins_old" / "ckpt", folder / "twins_new" / "ckpt"
    out = tmp_path / "out" / "ckpt"
    result = run("remap", "--old", old, "--new-graph", new, "--out", out)
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "out").exists()

    check = run("check", "--old", old, "--new-graph", new, "--json")
    assert check.exit_code == 1
    report = json.loads(check.output)
    assert report["verdict"] == "unresolved"
    kernels = {u["new_key"]: u for u in report["unresolved"] if "/a/_kernel/" in u["new_key"]}
    assert len(kernels) == 1
    (entry,) = kernels.values()
    candidates = {c["old_key"] for c in entry["candidates"]}
    assert {"model/left/_kernel/.ATTRIBUTES/VARIABLE_VALUE",
            "model/right/_kernel/.ATTRIBUTES/VARIABLE_VALUE"} <= candidates  # fmt: skip
    assert entry["suggested_rule"] is None
    resolved = {r["key"]: r["source"] for r in report["resolved"]}
    assert not any("/left/" in s or "/right/" in s for s in resolved.values())


def test_allow_missing_does_not_apply_to_an_object_based_output(tmp_path: Path) -> None:
    """TF2 fails to restore a key its object graph names and the checkpoint lacks, so
    --allow-missing is no way out for a template: the remap is refused, nothing written."""
    folder = FLAVOURS["keras3"]
    template = folder / "twins_new" / "ckpt"
    out = tmp_path / "out" / "ckpt"
    result = run(
        "remap", "--old", folder / "twins_old" / "ckpt", "--new-graph", template,
        "--allow-missing", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "--allow-missing does not apply to an object-based new model" in result.output
    assert f"--fill-from {template}" in result.output
    assert not (tmp_path / "out").exists()


TF1_GRAPH = FLAVOURS["keras3"] / GEN.TF1_GRAPH  # one TF1 graph; the Keras flavour is the old side's
TF1_LAYERS = {"first": "proj", "mid": "tower/mid", "head": "tower/head"}
# The rules a name-based checkpoint with these names would need (TF1 names -> Keras names).
TF1_RULES = {
    "keras3": [
        r"^proj/(.*)/Adam$=net/hidden/{}/momentum", r"^proj/(.*)/Adam_1$=net/hidden/{}/velocity",
        r"^proj/(.*)$=net/hidden/{}",
        r"^(.*)/Adam$=net/{}/momentum", r"^(.*)/Adam_1$=net/{}/velocity", r"^(.*)$=net/{}",
    ],
    "tfkeras": [  # tf-keras: slots m/v, a Sequential's layers without the model's scope
        r"^proj/(.*)/Adam$=net/hidden/{}/m", r"^proj/(.*)/Adam_1$=net/hidden/{}/v",
        r"^proj/(.*)$=net/hidden/{}",
        r"^tower/(.*)/Adam$={}/m", r"^tower/(.*)/Adam_1$={}/v", r"^tower/(.*)$={}",
    ],
}  # fmt: skip


def restored_by_graph_saver(graph_pbtxt: Path, prefix: Path) -> dict[str, np.ndarray]:
    """Every variable of the TF1 graph in ``graph_pbtxt`` after its own Saver restores ``prefix``.

    The graph is imported as TF wrote it; the Saver is the one whose ops it holds
    (``save/restore_all``), so every variable the graph saves must be in ``prefix``.
    """
    import tensorflow as tf
    from google.protobuf import text_format

    v1 = tf.compat.v1
    graph_def = text_format.Parse(graph_pbtxt.read_text(), tf.compat.v1.GraphDef())
    graph = tf.Graph()
    with graph.as_default():
        v1.import_graph_def(graph_def, name="")
        saver = v1.train.Saver(
            saver_def=tf.compat.v1.train.SaverDef(
                filename_tensor_name="save/Const:0",
                save_tensor_name="save/control_dependency:0",
                restore_op_name="save/restore_all",
                version=tf.compat.v1.train.SaverDef.V2,
            )
        )
        handles = {n.name: n for n in graph_def.node if n.op == "VarHandleOp"}
        reads = {
            name: tf.raw_ops.ReadVariableOp(
                resource=graph.get_tensor_by_name(f"{name}:0"),
                dtype=tf.dtypes.as_dtype(node.attr["dtype"].type),
            )
            for name, node in handles.items()
        }
    with v1.Session(graph=graph) as session:
        saver.restore(session, str(prefix))
        return {name: np.array(value) for name, value in session.run(reads).items()}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_object_based_into_a_tf1_graph_pbtxt(flavour: str, tmp_path: Path) -> None:
    """An object-based checkpoint into a TF1 ``graph.pbtxt`` with a renamed layer and Adam:
    the graph's own Saver restores the output; every value is the old model's (TF's restore
    of the old checkpoint), the step its iteration; beta1/2_power (no Keras counterpart) the
    graph's initial values (--fill-from its initial checkpoint)."""
    import tensorflow as tf

    keras = GEN.import_keras(flavour)
    folder = FLAVOURS[flavour]
    graph, init = TF1_GRAPH / "graph.pbtxt", TF1_GRAPH / GEN.TF1_INIT_PREFIX
    out = tmp_path / "out" / "model.ckpt-1"
    rules = [a for r in TF1_RULES[flavour] for a in ("--rule", r)]
    result = run(
        "remap", "--old", folder / "old" / "ckpt", "--new-graph", graph, *rules,
        "--fill-from", init, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    got = restored_by_graph_saver(graph, out)
    old = restored_state(keras, "old", folder / "old" / "ckpt")
    initial = tf.train.load_checkpoint(str(init))
    want: dict[str, np.ndarray] = {}
    for role, scope in TF1_LAYERS.items():
        for weight in ("kernel", "bias"):
            want[f"{scope}/{weight}"] = old[f"{role}/{weight}"]
            want[f"{scope}/{weight}/Adam"] = old[f"{role}/{weight}/m"]
            want[f"{scope}/{weight}/Adam_1"] = old[f"{role}/{weight}/v"]
    want["global_step"] = old["iteration"]
    for power in ("beta1_power", "beta2_power"):
        want[power] = initial.get_tensor(power)
    assert_states_equal(got, want)
    assert int(got["global_step"]) == 1
