"""Reading the new model (ckptmap/readers/graph.py, _graphdef.py) without TensorFlow.

The fixtures' graphs saved the fixtures' checkpoints (fixtures/README.md), so the
keys a graph restores must be exactly the keys its checkpoint holds. Graphs
with other savers or broken edges are made by editing copies of the fixtures'
graphs with protobuf; test_graph_tf.py checks the same against TensorFlow live.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import text_format
from helpers import FIXTURES, truncate

from ckptmap.errors import GraphError, MissingInputError, UsageError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers.graph import read_model_spec
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.spec import ModelSpec, TensorSpec
from ckptmap.split import SliceSpec

MODELS = ["ffm_v1", "ffm_v1_ps2", "ffm_v2", "ffm_v2_ps3"]
FORMS = [
    (model, form)
    for model in MODELS
    for form in ("graph.pbtxt", "model.ckpt-100.meta", "saved_model")
    if (FIXTURES / model / form).exists()
]


def keys_of(
    specs: dict[str, TensorSpec],
) -> dict[str, tuple[str, tuple[int, ...], frozenset[SliceSpec]]]:
    """What a restore needs of each key: dtype, full shape, the set of slices."""
    return {k: (s.dtype.name, s.shape, frozenset(s.slices)) for k, s in specs.items()}


def checkpoint_specs(path: Path) -> dict[str, TensorSpec]:
    with open_checkpoint(path) as ckpt:
        return ckpt.specs()


def read_graph_def(model: str) -> ckptmap_tf_pb2.GraphDef:
    graph = ckptmap_tf_pb2.GraphDef()
    text_format.Parse(
        (FIXTURES / model / "graph.pbtxt").read_text(), graph, allow_unknown_field=True
    )
    return graph


def write_text(graph: ckptmap_tf_pb2.GraphDef, path: Path) -> Path:
    path.write_text(text_format.MessageToString(graph))
    return path


def edited(tmp_path: Path, model: str, edit: Callable[[ckptmap_tf_pb2.GraphDef], None]) -> Path:
    """A copy of the model's graph.pbtxt changed by ``edit``."""
    graph = read_graph_def(model)
    edit(graph)
    return write_text(graph, tmp_path / "graph.pbtxt")


def renamed_copies(
    graph: ckptmap_tf_pb2.GraphDef, old: str, new: str
) -> list[ckptmap_tf_pb2.NodeDef]:
    """Copies of the nodes in scope ``old/`` moved to scope ``new/`` (inputs too)."""
    copies = []
    for node in graph.node:
        if not node.name.startswith(f"{old}/"):
            continue
        copy = ckptmap_tf_pb2.NodeDef()
        copy.CopyFrom(node)
        copy.name = new + node.name[len(old) :]
        del copy.input[:]
        for tensor in node.input:
            bare = tensor.lstrip("^")
            if bare.startswith(f"{old}/"):
                tensor = tensor[: len(tensor) - len(bare)] + new + bare[len(old) :]
            copy.input.append(tensor)
        copies.append(copy)
    return copies


def drop_nodes(
    graph: ckptmap_tf_pb2.GraphDef, keep: Callable[[ckptmap_tf_pb2.NodeDef], bool]
) -> None:
    nodes = [n for n in graph.node if keep(n)]
    del graph.node[:]
    graph.node.extend(nodes)


def set_strings(graph: ckptmap_tf_pb2.GraphDef, const: str, old: bytes, new: bytes) -> None:
    node = next(n for n in graph.node if n.name == const)
    values = node.attr["value"].tensor.string_val
    values[list(values).index(old)] = new


# -- every form gives what the model's Saver wrote ------------------------------


@pytest.mark.parametrize(("model", "form"), FORMS, ids=[f"{m}-{f}" for m, f in FORMS])
def test_keys_are_what_the_saver_wrote(model: str, form: str) -> None:
    spec = read_model_spec(FIXTURES / model / form)
    assert keys_of(spec.keys) == keys_of(checkpoint_specs(FIXTURES / model))


@pytest.mark.parametrize("model", ["ffm_v1", "ffm_v2"])
def test_saved_model_keys_are_its_variables_checkpoint(model: str) -> None:
    spec = read_model_spec(FIXTURES / model / "saved_model")
    stored = checkpoint_specs(FIXTURES / model / "saved_model" / "variables" / "variables")
    assert keys_of(spec.keys) == keys_of(stored)
    assert spec.source == str(FIXTURES / model / "saved_model" / "saved_model.pb")


@pytest.mark.parametrize("model", MODELS)
def test_fast_and_full_are_identical(model: str) -> None:
    path = FIXTURES / model / "graph.pbtxt"
    assert read_model_spec(path, fast=True) == read_model_spec(path, fast=False)


@pytest.mark.parametrize("model", MODELS)
def test_all_forms_agree(model: str) -> None:
    specs = [read_model_spec(FIXTURES / m / f) for m, f in FORMS if m == model]
    assert len(specs) >= 2
    for spec in specs[1:]:
        assert spec.keys == specs[0].keys
        assert spec.variables == specs[0].variables


def test_v1_variables() -> None:
    spec = read_model_spec(FIXTURES / "ffm_v1" / "graph.pbtxt")
    parts = spec.variables_of("ffm/embeddings")
    assert [v.name for v in parts] == [f"ffm/embeddings/part_{i}" for i in range(4)]
    assert [v.slice.format() for v in parts if v.slice] == [
        f"200 16 {r},50:0,16" for r in (0, 50, 100, 150)
    ]
    assert all(v.shape == (50, 16) and v.trainable for v in parts)
    slots = spec.variables_of("ffm/embeddings/Adam")
    assert [v.name for v in slots] == [f"ffm/embeddings/part_{i}/Adam" for i in range(4)]
    assert not any(v.trainable for v in slots)
    kernel = spec.variables["ffm/tower/tower/dense_1/kernel"]
    assert (kernel.key, kernel.shape, kernel.slice, kernel.trainable) == (
        "ffm/tower/tower/dense_1/kernel",
        (64, 32),
        None,
        True,
    )
    step = spec.variables["global_step"]
    assert step.is_global_step
    assert not step.trainable
    assert step.dtype.name == "int64"
    assert not spec.variables["beta1_power"].trainable
    assert {v.key for v in spec.variables.values()} == set(spec.keys)


def test_v2_sharded_variables() -> None:
    """Three devices, three RestoreV2 ops; the uneven partition of 200 rows in 3."""
    spec = read_model_spec(FIXTURES / "ffm_v2_ps3" / "graph.pbtxt")
    emb = spec.keys["ffm/embeddings"]
    assert [s.format() for s in emb.slices] == [
        "200 16 0,67:0,16",
        "200 16 67,67:0,16",
        "200 16 134,66:0,16",
    ]
    assert [v.shape for v in spec.variables_of("ffm/embeddings")] == [(67, 16), (67, 16), (66, 16)]
    assert "ffm/global_bias/w" in spec.keys
    assert len(spec.variables) == 33


def test_trainable_from_a_bare_graph_matches_the_collection() -> None:
    for model in MODELS:
        bare = read_model_spec(FIXTURES / model / "graph.pbtxt")
        meta = read_model_spec(FIXTURES / model / "model.ckpt-100.meta")
        trainable = {n for n, v in bare.variables.items() if v.trainable}
        assert trainable == {n for n, v in meta.variables.items() if v.trainable}
        assert trainable  # the tower, the bias and the embedding parts


def test_checkpoint_of_the_new_model() -> None:
    spec = read_model_spec(FIXTURES / "ffm_v1_ps2")
    assert keys_of(spec.keys) == keys_of(checkpoint_specs(FIXTURES / "ffm_v1_ps2"))
    assert spec.source == str(FIXTURES / "ffm_v1_ps2" / "model.ckpt-100")
    assert [v.slice for v in spec.variables_of("ffm/embeddings")] == list(
        spec.keys["ffm/embeddings"].slices
    )
    assert read_model_spec(FIXTURES / "ffm_v1" / "model.ckpt-50").source.endswith("model.ckpt-50")
    assert read_model_spec(FIXTURES / "ffm_v1" / "model.ckpt-50.index").keys == spec.keys
    with pytest.raises(UsageError, match="the saver option applies to graphs, not to a checkpoint"):
        read_model_spec(FIXTURES / "ffm_v1_ps2", saver="save")


def test_binary_graph_def(tmp_path: Path) -> None:
    graph = read_graph_def("ffm_v2_ps3")
    path = tmp_path / "graph.pb"
    path.write_bytes(graph.SerializeToString())
    spec = read_model_spec(path)
    text = read_model_spec(FIXTURES / "ffm_v2_ps3" / "graph.pbtxt")
    assert (spec.keys, spec.variables) == (text.keys, text.variables)
    # Without a known suffix, the content decides.
    shutil.copy(path, tmp_path / "graph")
    shutil.copy(FIXTURES / "ffm_v2_ps3" / "graph.pbtxt", tmp_path / "graph_text")
    assert read_model_spec(tmp_path / "graph").keys == text.keys
    assert read_model_spec(tmp_path / "graph_text").keys == text.keys


def test_text_meta_graph(tmp_path: Path) -> None:
    meta = ckptmap_tf_pb2.MetaGraphDef()
    meta.ParseFromString((FIXTURES / "ffm_v1" / "model.ckpt-100.meta").read_bytes())
    path = tmp_path / "model.meta.pbtxt"
    path.write_text(text_format.MessageToString(meta))
    spec = read_model_spec(path)
    binary = read_model_spec(FIXTURES / "ffm_v1" / "model.ckpt-100.meta")
    assert (spec.keys, spec.variables) == (binary.keys, binary.variables)
    assert spec.source == str(path)


def test_saved_model_text(tmp_path: Path) -> None:
    saved = ckptmap_tf_pb2.SavedModel()
    saved.ParseFromString((FIXTURES / "ffm_v2" / "saved_model" / "saved_model.pb").read_bytes())
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "saved_model.pbtxt").write_text(text_format.MessageToString(saved))
    spec = read_model_spec(folder)
    binary = read_model_spec(FIXTURES / "ffm_v2" / "saved_model")
    assert (spec.keys, spec.variables) == (binary.keys, binary.variables)
    assert spec.source == str(folder / "saved_model.pbtxt")


# -- savers --------------------------------------------------------------------


def test_default_saver_is_save(tmp_path: Path) -> None:
    def add_second_saver(graph: ckptmap_tf_pb2.GraphDef) -> None:
        copies = renamed_copies(graph, "save", "save_1")
        graph.node.extend(copies)
        set_strings(graph, "save_1/RestoreV2/tensor_names", b"global_step", b"step_of_save_1")

    path = edited(tmp_path, "ffm_v2", add_second_saver)
    base = read_model_spec(FIXTURES / "ffm_v2" / "graph.pbtxt")
    default = read_model_spec(path)
    assert default.keys == base.keys
    other = read_model_spec(path, saver="save_1")
    assert set(other.keys) == set(base.keys) - {"global_step"} | {"step_of_save_1"}
    assert other.variables["global_step"].key == "step_of_save_1"  # followed by the edge
    assert other.keys["step_of_save_1"].shape == ()
    assert read_model_spec(path, saver="save_1/") == other
    for fast in (True, False):
        assert read_model_spec(path, saver="save_1", fast=fast) == other
    with pytest.raises(GraphError) as err:
        read_model_spec(path, saver="save_2")
    assert (
        str(err.value) == f"{path}: no Saver named 'save_2'; the graph has savers 'save', 'save_1'"
    )


def test_several_savers_and_none_chosen(tmp_path: Path) -> None:
    def two_scoped_savers(graph: ckptmap_tf_pb2.GraphDef) -> None:
        copies = renamed_copies(graph, "save", "a/save") + renamed_copies(graph, "save", "b/save")
        drop_nodes(graph, lambda n: not n.name.startswith("save/"))
        graph.node.extend(copies)

    path = edited(tmp_path, "ffm_v1", two_scoped_savers)
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value) == (
        f"{path}: the graph has several savers ('a/save', 'b/save') and none is called "
        "'save'; choose one with the saver option"
    )
    chosen = read_model_spec(path, saver="b/save")
    assert chosen.keys == read_model_spec(FIXTURES / "ffm_v1" / "graph.pbtxt").keys


def test_only_saver_in_another_scope(tmp_path: Path) -> None:
    def move_saver(graph: ckptmap_tf_pb2.GraphDef) -> None:
        copies = renamed_copies(graph, "save", "tower/save")
        drop_nodes(graph, lambda n: not n.name.startswith("save/"))
        graph.node.extend(copies)

    path = edited(tmp_path, "ffm_v1_ps2", move_saver)
    spec = read_model_spec(path)
    base = read_model_spec(FIXTURES / "ffm_v1_ps2" / "graph.pbtxt")
    assert (spec.keys, spec.variables) == (base.keys, base.variables)


def test_meta_graph_names_its_saver(tmp_path: Path) -> None:
    meta = ckptmap_tf_pb2.MetaGraphDef()
    meta.ParseFromString((FIXTURES / "ffm_v2" / "model.ckpt-100.meta").read_bytes())
    meta.graph_def.node.extend(renamed_copies(meta.graph_def, "save", "save_1"))
    set_strings(meta.graph_def, "save_1/RestoreV2/tensor_names", b"global_step", b"step_1")
    meta.saver_def.restore_op_name = "save_1/restore_all"
    path = tmp_path / "model.meta"
    path.write_bytes(meta.SerializeToString())
    assert "step_1" in read_model_spec(path).keys
    assert "global_step" in read_model_spec(path, saver="save").keys


# -- edges and names ------------------------------------------------------------


def test_edges_beat_names(tmp_path: Path) -> None:
    """A key that is not the variable's name still finds its variable through Assign."""

    def rename_key(graph: ckptmap_tf_pb2.GraphDef) -> None:
        for const in ("save/RestoreV2/tensor_names", "save/SaveV2/tensor_names"):
            set_strings(graph, const, b"ffm/bias_net/w", b"old_scope/w")

    spec = read_model_spec(edited(tmp_path, "ffm_v1", rename_key))
    assert "ffm/bias_net/w" not in spec.keys
    assert spec.keys["old_scope/w"].shape == (200, 1)
    assert spec.variables["ffm/bias_net/w"].key == "old_scope/w"


@pytest.mark.parametrize("model", MODELS)
def test_without_assign_edges_names_give_the_same_spec(tmp_path: Path, model: str) -> None:
    def drop_assigns(graph: ckptmap_tf_pb2.GraphDef) -> None:
        drop_nodes(
            graph,
            lambda n: not (n.name.startswith("save/") and n.op in ("Assign", "AssignVariableOp")),
        )

    spec = read_model_spec(edited(tmp_path, model, drop_assigns))
    base = read_model_spec(FIXTURES / model / "graph.pbtxt")
    assert (spec.keys, spec.variables) == (base.keys, base.variables)


def test_whole_key_without_variable(tmp_path: Path) -> None:
    def orphan(graph: ckptmap_tf_pb2.GraphDef) -> None:
        drop_nodes(graph, lambda n: not (n.name.startswith("save/") and n.op == "Assign"))
        set_strings(graph, "save/RestoreV2/tensor_names", b"ffm/bias_net/w", b"nowhere/w")

    path = edited(tmp_path, "ffm_v1", orphan)
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value) == (
        f"{path}: cannot tell the shape of key 'nowhere/w': the Saver restores it into no "
        "variable of the graph (describe the model with a JSON spec instead)"
    )


def test_inconsistent_restore_op(tmp_path: Path) -> None:
    def drop_a_name(graph: ckptmap_tf_pb2.GraphDef) -> None:
        node = next(n for n in graph.node if n.name == "save/RestoreV2/tensor_names")
        tensor = node.attr["value"].tensor
        tensor.tensor_shape.dim[0].size -= 1
        del tensor.string_val[-1]

    path = edited(tmp_path, "ffm_v2", drop_a_name)
    for fast in (True, False):
        with pytest.raises(GraphError) as err:
            read_model_spec(path, fast=fast)
        assert str(err.value) == (
            f"{path}: save/RestoreV2: 32 tensor names, 33 slice specs and 33 dtypes do not "
            "match (the Saver nodes are inconsistent)"
        )


def test_bad_slice_spec(tmp_path: Path) -> None:
    def bad_spec(graph: ckptmap_tf_pb2.GraphDef) -> None:
        set_strings(graph, "save/RestoreV2/shape_and_slices", b"200 16 0,67:0,16", b"200 16 0,67")

    path = edited(tmp_path, "ffm_v2", bad_spec)
    with pytest.raises(GraphError, match="key 'ffm/embeddings': slice has 1 extents for a tensor"):
        read_model_spec(path)


def test_names_input_not_a_const(tmp_path: Path) -> None:
    def feed_names(graph: ckptmap_tf_pb2.GraphDef) -> None:
        node = next(n for n in graph.node if n.name == "save/RestoreV2")
        node.input[1] = "save/Const"

    path = edited(tmp_path, "ffm_v2", feed_names)
    with pytest.raises(
        GraphError,
        match=r"save/RestoreV2 tensor_names: input 'save/Const' is a "
        "PlaceholderWithDefault op, not a Const",
    ):
        read_model_spec(path)


# -- graphs without a Saver ------------------------------------------------------


def no_saver(graph: ckptmap_tf_pb2.GraphDef) -> None:
    drop_nodes(graph, lambda n: not n.name.startswith("save/"))


@pytest.mark.parametrize("model", MODELS)
def test_without_saver_keys_come_from_variables(tmp_path: Path, model: str) -> None:
    spec = read_model_spec(edited(tmp_path, model, no_saver))
    base = read_model_spec(FIXTURES / model / "graph.pbtxt")
    assert (spec.keys, spec.variables) == (base.keys, base.variables)
    with pytest.raises(GraphError, match="no Saver named 'save': the graph has no RestoreV2 op"):
        read_model_spec(tmp_path / "graph.pbtxt", saver="save")


def test_without_saver_a_missing_part(tmp_path: Path) -> None:
    def drop_part(graph: ckptmap_tf_pb2.GraphDef) -> None:
        no_saver(graph)
        drop_nodes(graph, lambda n: n.name != "ffm/embeddings/part_1")

    path = edited(tmp_path, "ffm_v1", drop_part)
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value) == (
        f"{path}: the parts of 'ffm/embeddings' are not numbered 0 to 2 (ffm/embeddings/part_0, "
        "ffm/embeddings/part_2, ffm/embeddings/part_3); describe the model with a JSON spec "
        "instead"
    )


def test_without_saver_a_name_clash(tmp_path: Path) -> None:
    def clash(graph: ckptmap_tf_pb2.GraphDef) -> None:
        no_saver(graph)
        next(n for n in graph.node if n.name == "ffm/bias_net/w").name = "ffm/embeddings"

    path = edited(tmp_path, "ffm_v1", clash)
    with pytest.raises(GraphError, match="'ffm/embeddings' is both a variable and the name of"):
        read_model_spec(path)


def test_meta_graph_without_saver_uses_save_slice_info(tmp_path: Path) -> None:
    meta = ckptmap_tf_pb2.MetaGraphDef()
    meta.ParseFromString((FIXTURES / "ffm_v1_ps2" / "model.ckpt-100.meta").read_bytes())
    no_saver(meta.graph_def)
    meta.ClearField("saver_def")
    path = tmp_path / "model.meta"
    path.write_bytes(meta.SerializeToString())
    spec = read_model_spec(path)
    base = read_model_spec(FIXTURES / "ffm_v1_ps2" / "model.ckpt-100.meta")
    assert (spec.keys, spec.variables) == (base.keys, base.variables)


def test_no_variables_and_no_saver(tmp_path: Path) -> None:
    def constants_only(graph: ckptmap_tf_pb2.GraphDef) -> None:
        drop_nodes(graph, lambda n: n.op == "Const")

    path = edited(tmp_path, "ffm_v1", constants_only)
    for fast in (True, False):
        with pytest.raises(GraphError) as err:
            read_model_spec(path, fast=fast)
        assert str(err.value) == (
            f"{path}: the graph has no variables and no Saver (is this the model's training graph?)"
        )


# -- bad inputs ----------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError) as err:
        read_model_spec(tmp_path / "nothing.pbtxt")
    assert str(err.value).startswith(f"{tmp_path / 'nothing.pbtxt'}: no such file or folder")


def test_saved_model_folder_without_pb(tmp_path: Path) -> None:
    folder = tmp_path / "saved_model"
    shutil.copytree(FIXTURES / "ffm_v1" / "saved_model", folder)
    (folder / "saved_model.pb").unlink()
    with pytest.raises(MissingInputError) as err:
        read_model_spec(folder)
    assert str(err.value) == (
        f"{folder}: this SavedModel folder has no saved_model.pb (copy the complete export)"
    )
    shutil.rmtree(folder / "variables")
    with pytest.raises(
        MissingInputError, match="the folder has no saved_model.pb and no checkpoint"
    ):
        read_model_spec(folder)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(
        MissingInputError, match="the folder has no saved_model.pb and no checkpoint"
    ):
        read_model_spec(tmp_path)


@pytest.mark.parametrize(
    ("source", "name", "what"),
    [
        ("ffm_v1/model.ckpt-100.meta", "model.ckpt-100.meta", "MetaGraphDef"),
        ("ffm_v1/saved_model/saved_model.pb", "saved_model.pb", "SavedModel"),
    ],
    ids=["meta", "saved-model"],
)
def test_truncated_binary(tmp_path: Path, source: str, name: str, what: str) -> None:
    path = tmp_path / name
    shutil.copy(FIXTURES / source, path)
    truncate(path, path.stat().st_size // 2)
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value) == (
        f"{path}: cannot parse as a binary {what} (the file is truncated, corrupt or not of "
        "this kind; export it again)"
    )


def test_not_a_graph(tmp_path: Path) -> None:
    path = tmp_path / "graph.pb"
    shutil.copy(FIXTURES / "ffm_v1" / "model.ckpt-100.index", path)
    with pytest.raises(GraphError, match=f"^{path}: "):
        read_model_spec(path)
    empty = tmp_path / "empty.pbtxt"
    empty.write_text("\n")
    with pytest.raises(GraphError, match="the file is empty, not a GraphDef"):
        read_model_spec(empty)
    binary = tmp_path / "binary.pbtxt"
    binary.write_bytes(b"\xff\xfe\x00node")
    with pytest.raises(GraphError, match="not a text GraphDef"):
        read_model_spec(binary)


def test_model_spec_type() -> None:
    assert isinstance(read_model_spec(FIXTURES / "ffm_v1" / "graph.pbtxt"), ModelSpec)
