"""The new model's keys against TensorFlow live: what its Saver actually writes.

For every fixture graph form (``graph.pbtxt``, ``.meta``, SavedModel) TensorFlow
loads the graph, restores the fixture checkpoint through that graph's own
Saver, saves again into a temporary folder, and ckptmap's reading of the graph
must name exactly the keys, dtypes, shapes and slices of what TF wrote. A
synthetic graph adds what the fixtures lack: several savers, renamed and
non-ASCII keys, axis-1 and uneven partitions, ref and resource variables, more
dtypes, a sharded saver over three devices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from helpers import FIXTURES

from ckptmap.errors import UnsupportedInputError
from ckptmap.readers.graph import read_model_spec
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.spec import TensorSpec
from ckptmap.split import SliceSpec

pytestmark = pytest.mark.tf

MODELS = ["ffm_v1", "ffm_v1_ps2", "ffm_v2", "ffm_v2_ps3"]
FORMS = [
    (model, form)
    for model in MODELS
    for form in ("graph.pbtxt", "model.ckpt-100.meta", "saved_model")
    if (FIXTURES / model / form).exists()
]

Keys = dict[str, tuple[str, tuple[int, ...], frozenset[SliceSpec]]]


def keys_of(specs: dict[str, TensorSpec]) -> Keys:
    return {k: (s.dtype.name, s.shape, frozenset(s.slices)) for k, s in specs.items()}


def written_keys(prefix: Path) -> Keys:
    with open_checkpoint(prefix) as ckpt:
        return keys_of(ckpt.specs())


def session_config(tf: Any) -> Any:
    return tf.compat.v1.ConfigProto(device_count={"CPU": 3}, allow_soft_placement=True)


def save_with_graph_def(tf: Any, text: str, restore_from: Path, out: Path, scope: str) -> None:
    """Import a GraphDef text, restore through its Saver's ops, and save with them."""
    graph_def = tf.compat.v1.GraphDef()
    text_format.Parse(text, graph_def)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    ops = {op.name for op in graph.get_operations()}
    filename = f"{scope}/Const:0"
    with tf.compat.v1.Session(graph=graph, config=session_config(tf)) as sess:
        sess.run(f"{scope}/restore_all", {filename: str(restore_from)})
        # A sharded Saver's merge op runs every shard's SaveV2 first (control inputs).
        merge = f"{scope}/MergeV2Checkpoints"
        sess.run(merge if merge in ops else f"{scope}/SaveV2", {filename: str(out)})


@pytest.mark.parametrize(("model", "form"), FORMS, ids=[f"{m}-{f}" for m, f in FORMS])
def test_keys_equal_what_tf_saves(tf: Any, tmp_path: Path, model: str, form: str) -> None:
    source = FIXTURES / model / form
    fixture_prefix = FIXTURES / model / "model.ckpt-100"
    out = tmp_path / "out" / "model.ckpt"
    out.parent.mkdir()
    graph = tf.Graph()
    if form == "graph.pbtxt":
        save_with_graph_def(tf, source.read_text(), fixture_prefix, out, "save")
    elif form.endswith(".meta"):
        with graph.as_default():
            saver = tf.compat.v1.train.import_meta_graph(str(source))
            with tf.compat.v1.Session(graph=graph, config=session_config(tf)) as sess:
                saver.restore(sess, str(fixture_prefix))
                saver.save(sess, str(out), write_meta_graph=False, write_state=False)
    else:
        with (
            graph.as_default(),
            tf.compat.v1.Session(graph=graph, config=session_config(tf)) as sess,
        ):
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(source))
            saver = tf.compat.v1.train.Saver(saver_def=meta.saver_def)
            saver.save(sess, str(out), write_meta_graph=False, write_state=False)
    assert keys_of(read_model_spec(source).keys) == written_keys(out)


def test_tf2_saved_model_is_unsupported(tf: Any, tmp_path: Path) -> None:
    module = tf.Module()
    module.w = tf.Variable(tf.ones([3, 4]), name="w")
    tf.saved_model.save(module, str(tmp_path / "sm"))
    with pytest.raises(UnsupportedInputError) as err:
        read_model_spec(tmp_path / "sm")
    assert str(err.value) == (
        f"{tmp_path / 'sm' / 'saved_model.pb'}: no RestoreV2 op in the graph, so this is not a "
        "TF1 name-based model (a TF2 object-based SavedModel keeps its keys in "
        "variables/variables: pass that checkpoint prefix as the new model instead)"
    )


# -- a synthetic graph with several savers ----------------------------------------


def build_synthetic(tf: Any, folder: Path, n_dense: int = 40) -> dict[str, Any]:
    """Write graph.pbtxt and model.meta of a graph with three savers; return the savers."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.train.get_or_create_global_step()
        with tf.device("/device:CPU:1"):
            rows = v1.get_variable(
                "emb/rows", [101, 8], partitioner=v1.fixed_size_partitioner(4), use_resource=True
            )
        with tf.device("/device:CPU:2"):
            cols = v1.get_variable(
                "wide/cols",
                [6, 10],
                dtype=tf.float64,
                partitioner=v1.fixed_size_partitioner(3, axis=1),
                use_resource=False,
            )
        sized = v1.get_variable(
            "sized/w",
            [64, 300],
            partitioner=v1.variable_axis_size_partitioner(max_shard_bytes=20000),
            use_resource=True,
        )
        counts = v1.get_variable("counts", [7], dtype=tf.int32, use_resource=False)
        flags = v1.get_variable("flags", [2, 2], dtype=tf.bool, use_resource=True)
        for i in range(n_dense):
            with tf.device(f"/device:CPU:{i % 3}"), v1.variable_scope(None, default_name="dense"):
                v1.get_variable("kernel", [i % 7 + 1, 5], use_resource=bool(i % 2))
                v1.get_variable("bias", [5], dtype=tf.float16, use_resource=bool(i % 2))
        main = v1.train.Saver()
        renamed = v1.train.Saver(
            {"ünï/codé": counts, "old/emb": rows, "old/cols": cols, "flags_v0": flags, "big": sized}
        )
        sharded = v1.train.Saver(sharded=True)
        tf.io.write_graph(graph.as_graph_def(), str(folder), "graph.pbtxt", as_text=True)
        v1.train.export_meta_graph(
            str(folder / "model.meta"), graph=graph, saver_def=sharded.as_saver_def()
        )
    return {"graph": graph, "save": main, "save_1": renamed, "save_2": sharded}


@pytest.fixture(scope="module")
def synthetic(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The synthetic graph and, per saver scope, a checkpoint that saver wrote."""
    folder = tmp_path_factory.mktemp("synthetic")
    built = build_synthetic(tf, folder)
    written = {}
    with tf.compat.v1.Session(graph=built["graph"], config=session_config(tf)) as sess:
        sess.run(tf.compat.v1.variables_initializer(built["graph"].get_collection("variables")))
        for scope in ("save", "save_1", "save_2"):
            prefix = folder / scope / "model.ckpt"
            prefix.parent.mkdir()
            built[scope].save(sess, str(prefix), write_meta_graph=False, write_state=False)
            written[scope] = prefix
    return folder, written


@pytest.mark.parametrize("scope", ["save", "save_1", "save_2"])
@pytest.mark.parametrize("form", ["graph.pbtxt", "model.meta"])
def test_synthetic_savers(synthetic: tuple[Path, dict[str, Path]], scope: str, form: str) -> None:
    folder, written = synthetic
    spec = read_model_spec(folder / form, saver=scope)
    assert keys_of(spec.keys) == written_keys(written[scope])
    if form == "graph.pbtxt":
        assert spec == read_model_spec(folder / form, saver=scope, fast=False)


def test_synthetic_defaults(synthetic: tuple[Path, dict[str, Path]]) -> None:
    folder, written = synthetic
    # graph.pbtxt: "save"; the MetaGraphDef names the sharded saver "save_2".
    assert keys_of(read_model_spec(folder / "graph.pbtxt").keys) == written_keys(written["save"])
    assert keys_of(read_model_spec(folder / "model.meta").keys) == written_keys(written["save_2"])


def test_synthetic_variables(synthetic: tuple[Path, dict[str, Path]]) -> None:
    folder, _ = synthetic
    renamed = read_model_spec(folder / "graph.pbtxt", saver="save_1")
    assert renamed.variables["counts"].key == "ünï/codé"
    assert [v.key for v in renamed.variables_of("old/emb")] == ["old/emb"] * 4
    assert [v.name for v in renamed.variables_of("old/cols")] == [
        "wide/cols/part_0",
        "wide/cols/part_1",
        "wide/cols/part_2",
    ]
    assert [v.slice.format() for v in renamed.variables_of("old/cols") if v.slice] == [
        "6 10 0,6:0,4",
        "6 10 0,6:4,3",
        "6 10 0,6:7,3",
    ]
    full = read_model_spec(folder / "graph.pbtxt")
    meta = read_model_spec(folder / "model.meta", saver="save")
    assert full.variables == meta.variables  # trainable included
    assert len(full.variables) == len(meta.variables) > 80


def test_synthetic_pbtxt_restores_in_tf(
    tf: Any, synthetic: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    """Round trip through the text: TF imports graph.pbtxt and saves the same keys again."""
    folder, written = synthetic
    out = tmp_path / "model.ckpt"
    save_with_graph_def(tf, (folder / "graph.pbtxt").read_text(), written["save_2"], out, "save_2")
    assert keys_of(read_model_spec(folder / "graph.pbtxt", saver="save_2").keys) == written_keys(
        out
    )
