"""Alias maps, rules and the automatic engine in the names users know (TF2 object graphs).

The old checkpoints and templates are the TF-written fixtures of
fixtures/make_tf2_objects.py; the TF-marked test migrates an object-based
checkpoint into a TF1 graph (a .meta) with a renamed layer and restores it with
that graph's Saver.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from ckptmap.cli import main
from ckptmap.migration.api import plan_remap
from ckptmap.readers.object_graph import object_names
from ckptmap.readers.source import open_source

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KERAS3 = FIXTURES / "tf2_keras3"
OLD = KERAS3 / "old" / "ckpt"
RENAMED = KERAS3 / "renamed" / "ckpt"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
RENAME_RULE = "^net/proj/(.*)$=net/hidden/{}"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_renamed_layer_is_suggested_and_resolved_by_a_rule_in_user_names() -> None:
    result = run("check", "--old", OLD, "--new-graph", RENAMED, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["suggested_rules"] == [RENAME_RULE]
    result = run("check", "--old", OLD, "--new-graph", RENAMED, "--rule", RENAME_RULE, "--json")
    assert result.exit_code == 0, result.output
    sources = {r["key"]: r["source"] for r in json.loads(result.stdout)["resolved"]}
    # The plan is in real keys: the renamed layer's kernel reads the old layer's key.
    assert sources["model/proj/_kernel" + VALUE] == "model/hidden/_kernel" + VALUE
    with open_source(OLD) as source:
        old_keys = set(source.keys())
    assert set(sources.values()) <= old_keys


def test_an_alias_map_may_name_old_keys_by_user_name_full_name_or_key(tmp_path: Path) -> None:
    entries = {
        "net/proj/kernel": "net/hidden/kernel",  # user names on both sides
        "model/proj/bias" + VALUE: "model/hidden/bias" + VALUE,  # keys on both sides
        "net/proj/kernel/momentum": "adam/net_hidden_kernel_momentum",  # a full name
        "net/proj/kernel/velocity": "net/hidden/kernel/velocity",
        "net/proj/bias/momentum": "net/hidden/bias/momentum",
        "net/proj/bias/velocity": "net/hidden/bias/velocity",
        "global_step": "adam/iteration",
    }
    alias_map = tmp_path / "map.json"
    alias_map.write_text(json.dumps(entries))
    plan = plan_remap(OLD, RENAMED, alias_map=alias_map)
    matches = plan.alias.matches
    assert matches["model/proj/_kernel" + VALUE].old_key == "model/hidden/_kernel" + VALUE
    assert matches["model/proj/bias" + VALUE].old_key == "model/hidden/bias" + VALUE
    assert matches["optimizer/_variables/2" + VALUE].reason == "explicit"
    assert matches["optimizer/_iterations" + VALUE].reason == "explicit"
    assert plan.alias.complete


def test_an_unknown_user_name_in_a_map_is_refused_with_the_closest_name(tmp_path: Path) -> None:
    alias_map = tmp_path / "map.json"
    alias_map.write_text(json.dumps({"net/proj/kernel": "net/hiden/kernel"}))
    result = run("check", "--old", OLD, "--new-graph", RENAMED, "--alias-map", alias_map)
    assert result.exit_code == 2
    assert "has no key 'net/hiden/kernel'" in result.output
    assert "did you mean 'net/hidden/kernel'" in result.output
    assert "Traceback" not in result.output


def test_the_iteration_counter_matches_a_graphs_global_step(tmp_path: Path) -> None:
    # A JSON spec of a TF1 model that names the counter global_step, as every TF1 graph does.
    spec = tmp_path / "new.json"
    spec.write_text(
        json.dumps({"variables": [{"name": "global_step", "dtype": "int64", "shape": []}]})
    )
    plan = plan_remap(OLD, spec, allow_missing=True)
    assert plan.alias.matches["global_step"].old_key == "optimizer/_iterations" + VALUE


@pytest.mark.tf
def test_object_based_into_a_tf1_graph_with_a_renamed_layer(tf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The rule a name-based checkpoint would need; TF's Saver of the graph restores it."""
    with open_source(OLD) as source:
        names = object_names(source)
        assert names is not None
        keys = [k for k in source if k in names]
    reader = tf.train.load_checkpoint(str(OLD))  # the old values as TF reads them
    old = {names.user_name(k): reader.get_tensor(k) for k in keys}
    layers = {"net/proj": "net/hidden", "net/tower/mid": "net/tower/mid"}
    graph = tf.Graph()
    made: dict[str, object] = {}
    with graph.as_default():
        for new_layer, old_layer in layers.items():
            for part in ("kernel", "bias"):
                value = old[f"{old_layer}/{part}"]
                made[f"{new_layer}/{part}"] = tf.compat.v1.get_variable(
                    f"{new_layer}/{part}", shape=value.shape, dtype=tf.float32
                )
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        meta = tmp_path / "new.meta"
        saver.export_meta_graph(str(meta))
    out = tmp_path / "out" / "model.ckpt-1"
    result = run("remap", "--old", OLD, "--new-graph", meta, "--rule", RENAME_RULE, "--out", out)
    assert result.exit_code == 0, result.output
    with tf.compat.v1.Session(graph=graph) as session:
        saver.restore(session, str(out))
        for new_layer, old_layer in layers.items():
            for part in ("kernel", "bias"):
                got = session.run(made[f"{new_layer}/{part}"])
                np.testing.assert_array_equal(got, old[f"{old_layer}/{part}"])
        step = session.run(tf.compat.v1.train.get_global_step(graph))
    assert step == old["global_step"]
    assert step > 0


def test_check_explains_object_based_keys_by_name_with_ranked_candidates() -> None:
    submodule = KERAS3 / "submodule" / "ckpt"
    result = run("check", "--old", OLD, "--new-graph", submodule, "--json")
    assert result.exit_code == 1
    unresolved = {u["name"]: u for u in json.loads(result.stdout)["unresolved"]}
    kernel = unresolved["net/encoder/hidden/kernel"]
    assert kernel["new_key"] == "optimizer/_trainable_variables/0" + VALUE
    # Ranked, not guessed: the layer's own kernel first, then the slots of its shape.
    assert [c["name"] for c in kernel["candidates"]][:3] == [
        "net/hidden/kernel",
        "net/hidden/kernel/momentum",
        "net/hidden/kernel/velocity",
    ]
    assert kernel["candidates"][0]["old_key"] == "model/hidden/_kernel" + VALUE
    text = run("check", "--old", OLD, "--new-graph", submodule)
    assert "net/encoder/hidden/kernel" in text.output
    assert "net/hidden/kernel (0." in text.output
    assert "no confident candidate; best: net/hidden/kernel (0." in text.output


OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
TF1_GRAPH = KERAS3 / "tf1_graph" / "graph.pbtxt"


def test_the_old_object_graph_is_not_an_unused_old_key() -> None:
    """The old graph describes the old object structure: metadata, never migrated, not unused."""
    inserted = KERAS3 / "inserted" / "ckpt"
    result = run("check", "--old", OLD, "--new-graph", inserted, "--fill-from", inserted, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unused_old"] == []
    assert report["counts"]["unused_old"] == 0
    text = run("check", "--old", OLD, "--new-graph", inserted, "--fill-from", inserted)
    assert "0 old keys unused" in text.output
    # Into a name-based model (a TF1 graph): only the variable no graph variable takes.
    result = run("check", "--old", OLD, "--new-graph", TF1_GRAPH, "--allow-missing", "--json")
    unused = json.loads(result.stdout)["unused_old"]
    assert OBJECT_GRAPH not in unused
    assert "optimizer/_learning_rate" + VALUE in unused
    plan = plan_remap(OLD, TF1_GRAPH, allow_missing=True)
    assert OBJECT_GRAPH not in plan.unused_old
    assert OBJECT_GRAPH not in plan.alias.unused_old


def test_the_old_object_graph_is_copied_when_the_new_model_restores_it(tmp_path: Path) -> None:
    spec = tmp_path / "new.json"
    spec.write_text(
        json.dumps({"variables": [{"name": OBJECT_GRAPH, "dtype": "string", "shape": []}]})
    )
    plan = plan_remap(OLD, spec, allow_missing=True)
    assert plan.alias.matches[OBJECT_GRAPH].old_key == OBJECT_GRAPH
    assert OBJECT_GRAPH not in plan.unused_old


def test_a_rule_that_matches_no_name_but_keys_is_applied_to_keys() -> None:
    """``^model/proj/(.*)$`` matches no user name (they start ``net/``) but the template's keys
    under ``model/``: it applies to those keys; its result names old keys. The slots' keys say
    nothing of the layer, so a rule in names covers them, side by side."""
    key_rule = "^model/proj/(.*)$=model/hidden/{}"
    result = run("check", "--old", OLD, "--new-graph", RENAMED, "--rule", key_rule, "--json")
    assert result.exit_code == 1  # today's behaviour without the name rule: the slots remain
    unresolved = {u["new_key"] for u in json.loads(result.stdout)["unresolved"]}
    assert unresolved == {f"optimizer/_variables/{i}" + VALUE for i in (2, 3, 4, 5)}
    result = run(
        "check", "--old", OLD, "--new-graph", RENAMED, "--rule", key_rule,
        "--rule", RENAME_RULE, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    resolved = {r["key"]: r for r in json.loads(result.stdout)["resolved"]}
    kernel = resolved["model/proj/_kernel" + VALUE]
    assert kernel["source"] == "model/hidden/_kernel" + VALUE
    assert kernel["reason"] == "rule ^model/proj/(.*)$"
    assert resolved["model/proj/bias" + VALUE]["source"] == "model/hidden/bias" + VALUE
    slot = resolved["optimizer/_variables/2" + VALUE]
    assert slot["reason"] == "rule ^net/proj/(.*)$"


def test_a_rule_matching_a_name_is_not_applied_to_keys() -> None:
    """Names come first: a pattern that matches a user name is matched against names only."""
    plan = plan_remap(OLD, RENAMED, rules=["^(model/proj|net/proj)/(.*)$=net/hidden/{1}"])
    # Matched on names (net/proj/...), so the slots resolve too; the keys model/proj/... are
    # not rewritten into 'net/hidden/_kernel/.ATTRIBUTES/VARIABLE_VALUE'.
    assert plan.alias.complete
    assert (
        plan.alias.matches["model/proj/_kernel" + VALUE].old_key == "model/hidden/_kernel" + VALUE
    )


def test_a_rule_may_give_an_old_key_or_a_unique_full_name(tmp_path: Path) -> None:
    """Into a name-based model: the result of a rule may be an old key (or a full name)."""
    spec = tmp_path / "new.json"
    variables = [
        {"name": "proj/kernel", "dtype": "float32", "shape": [3, 4]},
        {"name": "proj/bias", "dtype": "float32", "shape": [4]},
        {"name": "step", "dtype": "int64", "shape": []},
    ]
    spec.write_text(json.dumps({"variables": variables}))
    rules = [
        "^proj/kernel$=model/hidden/_kernel" + VALUE,  # an old key
        "^proj/bias$=net/hidden/bias",  # an old user name
        "^step$=adam/iteration",  # the iteration's full name (its user name is global_step)
    ]
    plan = plan_remap(OLD, spec, rules=rules)
    assert plan.alias.complete
    matches = plan.alias.matches
    assert matches["proj/kernel"].old_key == "model/hidden/_kernel" + VALUE
    assert matches["proj/bias"].old_key == "model/hidden/bias" + VALUE
    assert matches["step"].old_key == "optimizer/_iterations" + VALUE


def test_a_rule_on_positional_keys() -> None:
    """tf-keras Sequential keys are positional (an inserted layer shifts them): a key rule maps."""
    folder = FIXTURES / "tf2_tfkeras"
    inserted = folder / "inserted" / "ckpt"
    rule = "^model/tower/layer_with_weights-2/(.*)$=model/tower/layer_with_weights-1/{}"
    plan = plan_remap(folder / "old" / "ckpt", inserted, rules=[rule], fill_from=inserted)
    for weight in ("kernel", "bias"):
        match = plan.alias.matches[f"model/tower/layer_with_weights-2/{weight}" + VALUE]
        assert match.old_key == f"model/tower/layer_with_weights-1/{weight}" + VALUE
        assert match.reason == "rule ^model/tower/layer_with_weights-2/(.*)$"
    assert plan.complete
