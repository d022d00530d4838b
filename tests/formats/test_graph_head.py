"""The op types a graph file declares up front (ckptmap/formats/graph_head.py).

Checked on every graph TensorFlow wrote among the fixtures and ../shared/data
(TensorFlow's own parse of the op list is the oracle where it is installed),
then on deliberately damaged copies, which must be left to a whole-file search.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers import FIXTURES

from ckptmap.formats.graph_head import declared_ops
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers.graph_files import _TABLE_IMPORT, _holds

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
GRAPHS = sorted(
    [*FIXTURES.glob("*/*.meta"), *FIXTURES.glob("*/saved_model/saved_model.pb")]
    + sorted(SHARED.glob("**/saved_model.pb"))
)


def _ops(data: bytes, *, saved_model: bool) -> list[bytes] | None:
    return declared_ops(lambda at, count: data[at : at + count], len(data), saved_model=saved_model)


def _is_saved_model(path: Path) -> bool:
    return path.name == "saved_model.pb"


def test_the_graphs_include_meta_graphs_saved_models_and_tables() -> None:
    assert len([g for g in GRAPHS if _is_saved_model(g)]) >= 3
    assert len([g for g in GRAPHS if g.suffix == ".meta"]) >= 6
    assert any(_TABLE_IMPORT in g.read_bytes() for g in GRAPHS)


@pytest.mark.parametrize("graph", GRAPHS, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_every_tensorflow_graph_declares_its_op_types(graph: Path) -> None:
    data = graph.read_bytes()
    ops = _ops(data, saved_model=_is_saved_model(graph))
    assert ops is not None
    assert all(b"RestoreV2" in op_list for op_list in ops)  # every one saves and restores
    # the table op's name is in the op list exactly when it is anywhere in the file
    assert any(_TABLE_IMPORT in op_list for op_list in ops) == (_TABLE_IMPORT in data)
    assert _holds(graph, _TABLE_IMPORT, saved_model=_is_saved_model(graph)) == (
        _TABLE_IMPORT in data
    )


@pytest.mark.tf
@pytest.mark.parametrize("graph", GRAPHS, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_the_op_lists_are_tensorflows(graph: Path, tf) -> None:  # type: ignore[no-untyped-def]
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

    data = graph.read_bytes()
    if _is_saved_model(graph):
        metas = list(saved_model_pb2.SavedModel.FromString(data).meta_graphs)
    else:
        metas = [meta_graph_pb2.MetaGraphDef.FromString(data)]
    expected = [m.meta_info_def.stripped_op_list.SerializeToString() for m in metas]
    ops = _ops(data, saved_model=_is_saved_model(graph))
    assert ops is not None
    assert [op_def_pb2.OpList.FromString(o).SerializeToString() for o in ops] == expected


def test_other_layouts_are_left_to_a_whole_search(tmp_path: Path) -> None:
    meta = (FIXTURES / "tf1_tables" / "model.ckpt-1.meta").read_bytes()
    saved = (FIXTURES / "tf1_tables" / "saved_model" / "saved_model.pb").read_bytes()
    info_only = ckptmap_tf_pb2.MetaGraphDef(
        meta_info_def=ckptmap_tf_pb2.MetaGraphDef.MetaInfoDef(tensorflow_version="2.21.0")
    ).SerializeToString()
    graph_first = ckptmap_tf_pb2.MetaGraphDef.FromString(meta)
    graph_first.ClearField("meta_info_def")
    cases = {
        "empty": (b"", False),
        "no op list": (info_only, False),
        "graph first": (graph_first.SerializeToString() + meta[: meta.index(b"\x12")], False),
        "cut in the info": (meta[:40], False),
        "saved model, unknown field": (b"\x1a\x00" + saved, True),
        "saved model, cut": (saved[:-1], True),
        "saved model of nothing": (b"\x08\x01", True),
    }
    for name, (data, saved_model) in cases.items():
        assert _ops(data, saved_model=saved_model) is None, name
    # such a file is searched whole: its table op is found wherever it is
    graph = tmp_path / "model.ckpt-1.meta"
    graph.write_bytes(info_only + b"." * 100 + _TABLE_IMPORT)
    assert _holds(graph, _TABLE_IMPORT)


def test_an_info_too_large_is_not_read() -> None:
    """A (damaged) 128 MiB MetaInfoDef in a 1 GiB file: left to the windowed search."""
    head = b"\x0a\x80\x80\x80\x40"
    asked: list[int] = []

    def read(at: int, count: int) -> bytes:
        asked.append(count)
        return head[at : at + count]

    assert declared_ops(read, 1 << 30, saved_model=False) is None
    assert max(asked) <= 20


@pytest.mark.parametrize("seed", range(40))
def test_mutated_heads_never_fail(seed: int) -> None:
    """Damaged bytes give an op list or None; never an exception or a read past the end."""
    rng = random.Random(seed)
    path = rng.choice(GRAPHS)
    data = bytearray(path.read_bytes()[:4096])
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    asked: list[tuple[int, int]] = []

    def read(at: int, count: int) -> bytes:
        asked.append((at, count))
        return bytes(data[at : at + count])

    result = declared_ops(read, len(data), saved_model=_is_saved_model(path))
    assert result is None or all(isinstance(o, bytes) for o in result)
    assert all(0 <= at <= len(data) for at, _ in asked)
