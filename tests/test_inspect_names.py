"""inspect shows TF2 object-based checkpoints by the names users know.

The checkpoints are the TF-written fixtures of fixtures/make_tf2_objects.py;
the TF-marked test holds ``inspect --json`` against TensorFlow's own reading
of the object graph (the proto and ``tf.train.CheckpointView``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ckptmap.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHECKPOINTS = {
    "keras3": FIXTURES / "tf2_keras3" / "old" / "ckpt",
    "tfkeras": FIXTURES / "tf2_tfkeras" / "old" / "ckpt",
}
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def listing(*args: str | Path) -> dict[str, dict[str, Any]]:
    result = run("inspect", *args, "--json")
    assert result.exit_code == 0, result.output
    return {t["name"]: t for t in json.loads(result.stdout)["tensors"]}


def test_the_table_shows_names_and_keys() -> None:
    result = run("inspect", CHECKPOINTS["tfkeras"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1].split()
    assert header[:3] == ["name", "key", "dtype"]
    row = next(line for line in result.stdout.splitlines() if "optimizer/_variables/1/" in line)
    assert row.split()[:2] == ["net/hidden/kernel/m", "optimizer/_variables/1" + VALUE]


def test_filter_matches_the_name_or_the_key() -> None:
    by_name = listing(CHECKPOINTS["keras3"], "--filter", "^net/hidden/kernel")
    assert sorted(t["user_name"] for t in by_name.values()) == [
        "net/hidden/kernel",
        "net/hidden/kernel/momentum",
        "net/hidden/kernel/velocity",
    ]
    by_key = listing(CHECKPOINTS["keras3"], "--filter", "_iterations")
    assert [t["user_name"] for t in by_key.values()] == ["global_step"]
    # In the table too: a pattern only keys match (anchored on the key, not the name).
    result = run("inspect", CHECKPOINTS["keras3"], "--filter", "^model/hidden/")
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()[2:-1]]
    assert rows == [
        ["net/hidden/kernel", "model/hidden/_kernel" + VALUE],
        ["net/hidden/bias", "model/hidden/bias" + VALUE],
    ]
    assert "2 tensors" in result.stdout
    # A name the tf-keras graph gives (no key holds 'mid/'): by name.
    by_name = listing(CHECKPOINTS["tfkeras"], "--filter", "^mid/")
    assert sorted(t["user_name"] for t in by_name.values()) == [
        "mid/bias", "mid/bias/m", "mid/bias/v", "mid/kernel", "mid/kernel/m", "mid/kernel/v",
    ]  # fmt: skip


def test_tensor_by_its_name() -> None:
    result = run("inspect", CHECKPOINTS["keras3"], "--tensor", "global_step")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("optimizer/_iterations" + VALUE)


def test_a_name_based_checkpoint_lists_no_names() -> None:
    tensors = listing(FIXTURES / "ffm_v1")
    assert tensors
    assert all("user_name" not in t and "full_name" not in t for t in tensors.values())
    result = run("inspect", FIXTURES / "ffm_v1")
    assert result.stdout.splitlines()[1].split()[:2] == ["name", "dtype"]


@pytest.mark.tf
@pytest.mark.parametrize("flavour", sorted(CHECKPOINTS))
def test_json_agrees_with_tensorflow(tf, flavour: str) -> None:  # type: ignore[no-untyped-def]
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    prefix = str(CHECKPOINTS[flavour])
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        tf.train.load_checkpoint(prefix).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    )
    view = tf.train.CheckpointView(prefix)
    tensors = listing(prefix)
    named = {a.checkpoint_key: (i, a) for i, n in enumerate(graph.nodes) for a in n.attributes}
    assert set(named) == set(tensors) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    for key, (node_id, attribute) in named.items():
        item = tensors[key]
        assert item["full_name"] == attribute.full_name
        assert key == item["object_path"] + "/.ATTRIBUTES/" + attribute.name
        assert item["object_paths"][0] == item["object_path"]
        for path in item["object_paths"]:  # each path walks TF's children to the node
            at = 0
            for part in path.split("/"):
                at = view.children(at)[part]
            assert at == node_id
    # Slots: the optimizer's slot lists, item i belonging to its variable i.
    optimizer = view.children(0)["optimizer"]
    lists = view.children(optimizer)
    trainable = view.children(lists["_trainable_variables"]) if flavour == "keras3" else {}
    slot_names = {"_momentums": ("momentum", "m"), "_velocities": ("velocity", "v")}
    found = 0
    for list_name, (keras3_slot, tfkeras_slot) in slot_names.items():
        for index, slot_node in view.children(lists[list_name]).items():
            slot = graph.nodes[slot_node].attributes[0]
            slot_of = tensors[slot.checkpoint_key]["slot_of"]
            assert slot_of["optimizer"] == "optimizer"
            if flavour == "keras3":
                variable = graph.nodes[trainable[index]].attributes[0].full_name
                assert slot_of == {
                    "variable": variable,
                    "slot": keras3_slot,
                    "optimizer": "optimizer",
                }
            else:  # tf-keras names a slot <optimizer>/<slot>/<variable full name>
                assert slot_of["slot"] == tfkeras_slot
                assert slot.full_name.endswith(f"/{tfkeras_slot}/{slot_of['variable']}")
                assert slot_of["variable"] in {a.full_name for _, a in named.values()}
            assert (
                tensors[slot.checkpoint_key]["user_name"]
                == f"{slot_of['variable']}/{slot_of['slot']}"
            )
            found += 1
    assert found == 12  # 6 variables, 2 slots each


@pytest.mark.tf
def test_a_damaged_object_graph_is_one_line_exit_3(tf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = str(tmp_path / "ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=["_CHECKPOINTABLE_OBJECT_GRAPH", "x/.ATTRIBUTES/VARIABLE_VALUE"],
        shape_and_slices=["", ""],
        tensors=[tf.constant(b"\x0a\xff\xff\xff"), tf.constant([1.0])],
    )
    for command in (["inspect", prefix], ["check", "--old", prefix, "--new-graph", prefix]):
        result = run(*command)
        assert result.exit_code == 3, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"error: {prefix}.index: _CHECKPOINTABLE_OBJECT_GRAPH is not")
        assert "Traceback" not in result.output
