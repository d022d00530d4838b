"""Damaged and hostile model descriptions are refused in one line (issue 13, item 5).

Every case starts from a real fixture file written by TensorFlow (``graph.pbtxt``,
``.meta``, ``saved_model.pb``, or a JSON spec made from a fixture checkpoint),
damages one thing in a copy under ``tmp_path``, and checks the library error and
the command line: ``check`` and ``remap`` exit 3 with one ``error:`` line naming
the file, no traceback, and nothing written.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.errors import GraphError, InputError, UnsupportedInputError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers.graph import read_model_spec
from ckptmap.readers.tf_bundle import open_checkpoint

OLD = FIXTURES / "ffm_v1"
GRAPH = FIXTURES / "ffm_v2" / "graph.pbtxt"
META = FIXTURES / "ffm_v2" / "model.ckpt-100.meta"
SAVED_MODEL = FIXTURES / "ffm_v1" / "saved_model" / "saved_model.pb"


# -- damaged copies -------------------------------------------------------------------


def node_span(text: str, name: str) -> tuple[int, int]:
    """Start and end of the ``node { ... }`` block of ``name`` in standard layout."""
    start = text.index(f'node {{\n  name: "{name}"\n')
    return start, text.index("\n}\n", start) + 3


def edit_node(text: str, name: str, old: str, new: str) -> str:
    start, end = node_span(text, name)
    block = text[start:end]
    assert old in block, (name, old)
    return text[:start] + block.replace(old, new, 1) + text[end:]


def pbtxt_copy(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    path = tmp_path / "graph.pbtxt"
    path.write_text(edit(GRAPH.read_text()))
    return path


def shape_text(dims: list[int]) -> str:
    inner = "".join(f"        dim {{\n          size: {d}\n        }}\n" for d in dims)
    return f"      shape {{\n{inner}      }}\n"


def kernel_shape(dims: list[int]) -> Callable[[str], str]:
    """Replace the shape attr of ffm_v2's ``ffm/tower/dense/kernel`` ([64, 32])."""
    return lambda text: edit_node(
        text, "ffm/tower/dense/kernel", shape_text([64, 32]), shape_text(dims)
    )


def meta_copy(tmp_path: Path, edit: Callable[[ckptmap_tf_pb2.GraphDef], None]) -> Path:
    meta = ckptmap_tf_pb2.MetaGraphDef.FromString(META.read_bytes())
    edit(meta.graph_def)
    path = tmp_path / "model.ckpt-100.meta"
    path.write_bytes(meta.SerializeToString())
    return path


def saved_model_copy(tmp_path: Path, edit: Callable[[ckptmap_tf_pb2.GraphDef], None]) -> Path:
    saved = ckptmap_tf_pb2.SavedModel.FromString(SAVED_MODEL.read_bytes())
    edit(saved.meta_graphs[0].graph_def)
    path = tmp_path / "saved_model.pb"
    path.write_bytes(saved.SerializeToString())
    return path


def set_dims(name: str, dims: list[int]) -> Callable[[ckptmap_tf_pb2.GraphDef], None]:
    def edit(graph: ckptmap_tf_pb2.GraphDef) -> None:
        node = next(n for n in graph.node if n.name == name)
        shape = node.attr["shape"].shape
        del shape.dim[:]
        for d in dims:
            shape.dim.add(size=d)

    return edit


def fixture_spec(model: str = "ffm_v2") -> dict[str, object]:
    """A JSON model spec of a fixture checkpoint's keys, slices spelled out."""
    variables: list[dict[str, object]] = []
    with open_checkpoint(FIXTURES / model) as ckpt:
        for spec in ckpt.specs().values():
            entry: dict[str, object] = {
                "name": spec.key,
                "dtype": spec.dtype.name,
                "shape": list(spec.shape),
            }
            if spec.slices:
                entry["partitions"] = {"slices": [s.format() for s in spec.slices]}
            variables.append(entry)
    return {"variables": variables}


def json_copy(tmp_path: Path, edit: Callable[[dict[str, object]], object]) -> Path:
    doc = fixture_spec()
    path = tmp_path / "model.json"
    path.write_text(json.dumps(edit(doc)))
    return path


def set_entry(key: str, field: str, value: object) -> Callable[[dict[str, object]], object]:
    def edit(doc: dict[str, object]) -> object:
        entries = doc["variables"]
        assert isinstance(entries, list)
        entry = next(e for e in entries if e["name"] == key)
        entry[field] = value
        return doc

    return edit


# -- the command line ---------------------------------------------------------------


def assert_refused(tmp_path: Path, bad: Path, message: str) -> None:
    """``check`` and ``remap`` exit 3 with one line naming ``bad``, and write nothing."""
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    for args in (
        ["check", "--old", str(OLD), "--new-graph", str(bad)],
        ["remap", "--old", str(OLD), "--new-graph", str(bad), "--out", str(out)],
    ):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 3, (args[0], result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {bad}"), lines[0]
        assert message in lines[0]
        assert "Traceback" not in result.output
        assert result.stdout == ""
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def refused(
    tmp_path: Path, bad: Path, kind: type[InputError], message: str, *, fast: bool = True
) -> str:
    with pytest.raises(kind) as err:
        read_model_spec(bad, fast=fast)
    text = str(err.value)
    assert text.startswith(str(bad)), text
    assert message in text
    assert "\n" not in text
    assert_refused(tmp_path, bad, message)
    return text


# -- pbtxt escapes ------------------------------------------------------------------


def test_unknown_escape_in_an_input_line(tmp_path: Path) -> None:
    bad = pbtxt_copy(
        tmp_path,
        lambda t: edit_node(t, "save/Identity", 'input: "save/', 'input: "sa\\ye/'),
    )
    text = refused(tmp_path, bad, GraphError, "bad input string: unknown escape \\y")
    line = bad.read_text().splitlines().index('  input: "sa\\ye/Read/ReadVariableOp"') + 1
    assert text.startswith(f"{bad}:{line}:10: node 'save/Identity': ")
    # Before protobuf's own parser (which would keep the backslash) sees it, too.
    with pytest.raises(GraphError) as err:
        read_model_spec(bad, fast=False)
    assert str(err.value) == (
        f"{bad}:{line}:10: bad string: unknown escape \\y "
        "(fix the file, or write it again with tf.io.write_graph)"
    )


def test_unknown_escape_in_a_restored_name(tmp_path: Path) -> None:
    bad = pbtxt_copy(
        tmp_path,
        lambda t: edit_node(
            t, "save/RestoreV2/tensor_names", '"ffm/global_bias/w"', '"ffm/global_bias/\\w"'
        ),
    )
    refused(tmp_path, bad, GraphError, "bad string: unknown escape \\w")


def test_unknown_escape_in_a_node_name(tmp_path: Path) -> None:
    bad = pbtxt_copy(tmp_path, lambda t: t.replace('name: "global_step"', 'name: "gl\\yobal"', 1))
    refused(tmp_path, bad, GraphError, "bad string: unknown escape \\y")


def test_lone_surrogate_and_big_octal_are_malformed(tmp_path: Path) -> None:
    for body, message in (("\\ud800", "lone surrogate"), ("\\777", "above \\377")):
        bad = pbtxt_copy(
            tmp_path,
            lambda t, body=body: edit_node(
                t, "save/RestoreV2/tensor_names", '"global_step"', f'"global{body}"'
            ),
        )
        refused(tmp_path, bad, GraphError, message)


def test_escaped_spellings_read_as_the_plain_ones(tmp_path: Path) -> None:
    """Octal, hex, \\u, \\U, a surrogate pair and \\? all decode as protobuf defines them."""
    plain = read_model_spec(GRAPH)
    spelled = {
        "global_step": "gl\\157b\\x61l_\\u0073t\\U00000065p",
        "beta1_power": "beta1\\137power",
    }

    def respell(text: str) -> str:
        for name, escaped in spelled.items():
            text = edit_node(text, "save/RestoreV2/tensor_names", f'"{name}"', f'"{escaped}"')
        return text

    path = pbtxt_copy(tmp_path, respell)
    assert read_model_spec(path) == read_model_spec(path, fast=False)
    assert read_model_spec(path).keys == plain.keys

    emoji = pbtxt_copy(
        tmp_path,
        lambda t: edit_node(
            t, "save/RestoreV2/tensor_names", '"global_step"', '"global_step\\ud83d\\ude00\\?"'
        ),
    )
    keys = read_model_spec(emoji).keys
    assert "global_step\U0001f600?" in keys


# -- dimensions and ranks in graphs --------------------------------------------------


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        pytest.param(
            [2**70, 32], "dimension 0 is 1180591620717411303424, beyond 2**62", id="2**70"
        ),
        pytest.param([64, -5], "dimension 1 is -5, negative (only -1, unknown", id="negative"),
        pytest.param([2**31, 2**31, 2**31], "elements, beyond 2**62", id="count"),
    ],
)
def test_impossible_shape_attr_in_pbtxt(tmp_path: Path, dims: list[int], message: str) -> None:
    bad = pbtxt_copy(tmp_path, kernel_shape(dims))
    text = refused(tmp_path, bad, GraphError, message)
    assert text.startswith(
        f"{bad}: variable 'ffm/tower/dense/kernel' (key 'ffm/tower/dense/kernel'): "
    )


def test_rank_65_shape_attr_in_pbtxt_is_unsupported(tmp_path: Path) -> None:
    bad = pbtxt_copy(tmp_path, kernel_shape([1] * 65))
    text = refused(tmp_path, bad, UnsupportedInputError, "rank 65 is more than ckptmap supports")
    assert "'ffm/tower/dense/kernel'" in text
    refused(tmp_path, bad, UnsupportedInputError, "rank 65 is more", fast=False)


def test_2_70_in_shape_and_slices(tmp_path: Path) -> None:
    big = f"{2**70} 16 0,67:0,16"
    bad = pbtxt_copy(
        tmp_path,
        lambda t: edit_node(t, "save/RestoreV2/shape_and_slices", '"200 16 0,67:0,16"', f'"{big}"'),
    )
    refused(tmp_path, bad, GraphError, "the slices of key 'ffm/embeddings' disagree on the full")


def test_2_70_in_every_slice_of_a_key(tmp_path: Path) -> None:
    def edit(text: str) -> str:
        for spec in ("200 16 0,67:0,16", "200 16 67,67:0,16", "200 16 134,66:0,16"):
            new = spec.replace("200", str(2**70), 1)
            text = edit_node(text, "save/RestoreV2/shape_and_slices", f'"{spec}"', f'"{new}"')
        return text

    bad = pbtxt_copy(tmp_path, edit)
    text = refused(tmp_path, bad, GraphError, "dimension 0 is 1180591620717411303424, beyond 2**62")
    assert "key 'ffm/embeddings'" in text


def test_saver_slices_with_a_gap(tmp_path: Path) -> None:
    bad = pbtxt_copy(
        tmp_path,
        lambda t: edit_node(
            t, "save/RestoreV2/shape_and_slices", '"200 16 134,66:0,16"', '"200 16 135,65:0,16"'
        ),
    )
    refused(
        tmp_path,
        bad,
        GraphError,
        "key 'ffm/embeddings': slices cover 3184 of the 3200 elements of a tensor of shape "
        "[200, 16] (a slice is missing)",
    )


def test_huge_string_const_is_not_expanded(tmp_path: Path) -> None:
    """tensor_names of shape [2**40]: refused from its shape, no 2**40-element list made."""
    bad = pbtxt_copy(
        tmp_path,
        lambda t: edit_node(t, "save/RestoreV2/tensor_names", "size: 33", f"size: {2**40}"),
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(tmp_path, bad, GraphError, f"{2**40} tensor names, 33 slice specs and 33 dtypes")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


@pytest.mark.parametrize("form", ["meta", "saved_model"])
@pytest.mark.parametrize(
    ("dims", "kind", "message"),
    [
        pytest.param([2**62 + 1], GraphError, "dimension 0 is 4611686018427387905", id="dim"),
        pytest.param([-7, 3], GraphError, "dimension 0 is -7, negative", id="negative"),
        pytest.param([1] * 65, UnsupportedInputError, "rank 65 is more", id="rank"),
    ],
)
def test_impossible_shape_attr_in_binary_graphs(
    tmp_path: Path, form: str, dims: list[int], kind: type[InputError], message: str
) -> None:
    if form == "meta":
        bad = meta_copy(tmp_path, set_dims("ffm/tower/dense/kernel", dims))
    else:
        bad = saved_model_copy(tmp_path, set_dims("global_step", dims))
    refused(tmp_path, bad, kind, message)


# -- JSON specs ---------------------------------------------------------------------------


def test_the_fixture_spec_reads_like_the_checkpoint(tmp_path: Path) -> None:
    path = json_copy(tmp_path, lambda doc: doc)
    with open_checkpoint(FIXTURES / "ffm_v2") as ckpt:
        assert read_model_spec(path).keys == ckpt.specs()


def test_deeply_nested_json_spec(tmp_path: Path) -> None:
    bad = json_copy(tmp_path, set_entry("global_step", "shape", "DEEP"))
    bad.write_text(bad.read_text().replace('"DEEP"', "[" * 50_000 + "]" * 50_000))
    refused(tmp_path, bad, GraphError, "brackets are nested more than 20 levels deep")


@pytest.mark.parametrize(
    ("shape", "kind", "message"),
    [
        pytest.param([2**70, 16], GraphError, "dimension 0 is 1180591620717411303424", id="2**70"),
        pytest.param([2**40, 2**40], GraphError, "elements, beyond 2**62", id="count"),
        pytest.param([1] * 65, UnsupportedInputError, "rank 65 is more", id="rank"),
    ],
)
def test_impossible_shape_in_json_spec(
    tmp_path: Path, shape: list[int], kind: type[InputError], message: str
) -> None:
    bad = json_copy(tmp_path, set_entry("ffm/tower/dense/kernel", "shape", shape))
    text = refused(tmp_path, bad, kind, message)
    assert text.startswith(f"{bad}: variables[")
    assert "('ffm/tower/dense/kernel')" in text


# -- nesting in text protos ------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("form", ["graph", "meta"])
def test_deeply_nested_text(tmp_path: Path, form: str, fast: bool) -> None:
    """A text GraphDef or MetaGraphDef nested 5000 deep: one line, no RecursionError."""
    deep = "{ x " * 5000 + "}" * 5000
    if form == "graph":
        text = GRAPH.read_text().replace("node {\n", f"node {{\n  junk {deep}\n", 1)
    else:
        meta = ckptmap_tf_pb2.MetaGraphDef.FromString(META.read_bytes())
        text = f"meta_info_def {{ junk {deep} }}\n" + text_format.MessageToString(meta)
    bad = tmp_path / "graph.pbtxt"
    bad.write_text(text)
    with pytest.raises(GraphError) as err:
        read_model_spec(bad, fast=fast)
    assert str(err.value).startswith(f"{bad}")
    assert "messages are nested too deeply" in str(err.value)
    if fast:
        assert_refused(tmp_path, bad, "messages are nested too deeply")
