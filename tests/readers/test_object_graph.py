"""The object graph of TF2 checkpoints: full names, object paths, slots, user names.

Core tests read the TF-written fixtures of fixtures/make_tf2_objects.py; the
TF-marked test compares every key with TensorFlow's own reading of the proto
and ``tf.train.CheckpointView``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptmap.errors import CorruptCheckpointError, UnsupportedInputError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers import object_graph
from ckptmap.readers.object_graph import SlotOf, object_names, parse_object_graph
from ckptmap.readers.source import open_source

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
KERAS3 = FIXTURES / "tf2_keras3" / "old" / "ckpt"
TFKERAS = FIXTURES / "tf2_tfkeras" / "old" / "ckpt"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def _names(prefix: Path) -> object_graph.ObjectNames:
    with open_source(prefix) as source:
        names = object_names(source)
    assert names is not None
    return names


def test_keras3_model_variables_under_the_optimizer_get_their_full_names() -> None:
    names = _names(KERAS3)
    key = "optimizer/_trainable_variables/2" + VALUE
    assert names.user_name(key) == "net/tower/mid/kernel"
    assert names[key].object_paths == (
        "optimizer/_trainable_variables/2",
        "model/tower/_functional/_operations/1/_kernel",
    )
    slot = names["optimizer/_variables/6" + VALUE]
    assert slot.full_name == "adam/net_tower_mid_kernel_momentum"
    assert slot.slot_of == SlotOf("net/tower/mid/kernel", "momentum", "optimizer")
    assert names.user_name(slot.key) == "net/tower/mid/kernel/momentum"
    counter = "optimizer/_iterations" + VALUE
    assert names.user_name(counter) == "global_step"
    assert names[counter].full_name == "adam/iteration"
    assert names.key_of("global_step") == counter
    assert names.key_of("adam/iteration") == counter
    assert names.key_of(counter) == counter
    assert names.key_of("no/such/name") is None


def test_tfkeras_slots_are_named_by_their_variable() -> None:
    names = _names(TFKERAS)
    slot = names["optimizer/_variables/1" + VALUE]
    assert slot.full_name == "adam/m/net/hidden/kernel"
    assert slot.slot_of == SlotOf("net/hidden/kernel", "m", "optimizer")
    assert names.user_name(slot.key) == "net/hidden/kernel/m"
    assert names.user_name("optimizer/_iterations" + VALUE) == "global_step"
    assert names["model/tower/layer_with_weights-0/kernel" + VALUE].object_paths == (
        "model/tower/layer_with_weights-0/kernel",
        "model/tower/layer-0/kernel",
    )


@pytest.mark.parametrize("prefix", [KERAS3, TFKERAS], ids=["keras3", "tfkeras"])
def test_every_key_is_named_and_its_first_path_is_the_key(prefix: Path) -> None:
    with open_source(prefix) as source:
        keys = source.keys()
        names = object_names(source)
    assert names is not None
    assert set(names) == set(keys) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    for key, entry in names.items():
        assert entry.object_paths[0] + "/.ATTRIBUTES/" + entry.attribute == key
        assert len(set(entry.object_paths)) == len(entry.object_paths)
    user = list(names.user_names().values())
    assert len(user) == len(set(user))  # one key per user name


def test_a_name_based_checkpoint_has_no_object_names() -> None:
    with open_source(FIXTURES / "ffm_v1") as source:
        assert object_names(source) is None


def _graph(*nodes: tuple[list[tuple[int, str]], list[tuple[str, str]]]) -> bytes:
    graph = ckptmap_tf_pb2.TrackableObjectGraph()
    for children, attributes in nodes:
        node = graph.nodes.add()
        for node_id, local_name in children:
            node.children.add(node_id=node_id, local_name=local_name)
        for full_name, key in attributes:
            node.attributes.add(name="VARIABLE_VALUE", full_name=full_name, checkpoint_key=key)
    return graph.SerializeToString()


def test_shared_full_names_fall_back_to_the_key_and_cycles_are_cut() -> None:
    data = _graph(
        ([(1, "a"), (2, "b"), (3, "c")], []),
        ([(0, "root"), (1, "self")], [("Variable", "a" + VALUE)]),
        ([(1, "back")], [("Variable", "b" + VALUE)]),
        ([], [("global_step", "c" + VALUE)]),
    )
    names = parse_object_graph(data, "ckpt.index")
    assert names.user_name("a" + VALUE) == "a" + VALUE
    assert names.user_name("b" + VALUE) == "b" + VALUE
    assert names.user_name("c" + VALUE) == "global_step"
    assert names["a" + VALUE].object_paths == ("a", "b/back")
    assert names.key_of("Variable") is None


def test_a_damaged_graph_is_one_error_naming_the_file() -> None:
    with pytest.raises(CorruptCheckpointError, match=r"^ckpt.index: _CHECKPOINTABLE_OBJECT_GRAPH"):
        parse_object_graph(b"\x0a\xff\xff\xff", "ckpt.index")
    dangling = _graph(([(5, "a")], []))
    with pytest.raises(CorruptCheckpointError, match="refers to node 5, but the graph has 1 nodes"):
        parse_object_graph(dangling, "ckpt.index")


def test_a_huge_graph_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(object_graph, "MAX_GRAPH_BYTES", 10)
    with pytest.raises(UnsupportedInputError, match="more than the 10"):
        parse_object_graph(b"\x00" * 11, "ckpt.index")


def test_paths_per_object_are_capped() -> None:
    # 20 parents of one variable: only MAX_PATHS paths, shortest (stored order) first.
    parents = [([(21, "v")], []) for _ in range(20)]
    data = _graph(
        ([(i + 1, f"p{i}") for i in range(20)], []), *parents, ([], [("v", "p0/v" + VALUE)])
    )
    paths = parse_object_graph(data, "ckpt.index")["p0/v" + VALUE].object_paths
    assert paths == tuple(f"p{i}/v" for i in range(object_graph.MAX_PATHS))


@pytest.mark.tf
@pytest.mark.parametrize("prefix", [KERAS3, TFKERAS], ids=["keras3", "tfkeras"])
def test_names_agree_with_tensorflow(tf, prefix: Path) -> None:  # type: ignore[no-untyped-def]
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(str(prefix))
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    )
    view = tf.train.CheckpointView(str(prefix))
    names = _names(prefix)
    expected = {a.checkpoint_key: a.full_name for node in graph.nodes for a in node.attributes}
    assert {k: e.full_name for k, e in names.items()} == expected
    # The first path of each key walks CheckpointView's children from the root to the node.
    for node_id, node in enumerate(graph.nodes):
        for attribute in node.attributes:
            at = 0
            for part in names[attribute.checkpoint_key].object_paths[0].split("/"):
                at = view.children(at)[part]
            assert at == node_id


@pytest.mark.tf
def test_slots_referenced_by_the_graph(tf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A TF1 optimizer's slots are referenced in the graph, keyed under .OPTIMIZER_SLOT."""
    module = tf.Module()
    module.dense = tf.Module()
    module.dense.kernel = tf.Variable(tf.ones((2, 2)), name="dense/kernel")
    optimizer = tf.compat.v1.train.AdamOptimizer(0.1)
    optimizer.apply_gradients([(tf.ones((2, 2)), module.dense.kernel)])
    prefix = tf.train.Checkpoint(model=module, optimizer=optimizer).write(str(tmp_path / "ckpt"))
    names = _names(Path(prefix))
    key = "model/dense/kernel/.OPTIMIZER_SLOT/optimizer/m" + VALUE
    assert names[key].slot_of == SlotOf("dense/kernel", "m", "optimizer")
    assert names[key].object_paths == ("model/dense/kernel/.OPTIMIZER_SLOT/optimizer/m",)
    assert names.user_name(key) == "dense/kernel/m"
    assert names.user_name(key.replace("/m/", "/v/")) == "dense/kernel/v"
    assert names.user_name("model/dense/kernel" + VALUE) == "dense/kernel"
