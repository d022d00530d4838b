"""The GraphDef text scanner and its text-format parser (ckptmap/readers/_pbtxt.py).

The graphs are the fixtures' ``graph.pbtxt`` files (written by TensorFlow's
``tf.io.write_graph``), copies of them laid out differently by protobuf's own
printer, and copies damaged on one line for the error tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import text_encoding, text_format
from helpers import FIXTURES

from ckptmap.errors import GraphError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers._graphproto import ProtoNodes
from ckptmap.readers._pbtxt import GraphText, check_escapes, line_col, parse_text, unescape
from ckptmap.readers.graph import read_model_spec

GRAPHS = sorted(FIXTURES.glob("*/graph.pbtxt"))
# The ops whose nodes the graph logic reads.
READ_OPS = (
    "VariableV2",
    "VarHandleOp",
    "RestoreV2",
    "Const",
    "Assign",
    "AssignVariableOp",
    "Identity",
)


def fixture_text(name: str = "ffm_v2") -> str:
    return (FIXTURES / name / "graph.pbtxt").read_text()


def proto_graph(text: str) -> ckptmap_tf_pb2.GraphDef:
    graph = ckptmap_tf_pb2.GraphDef()
    text_format.Parse(text, graph, allow_unknown_field=True)
    return graph


def find_line(lines: list[str], start: int, needle: str) -> int:
    """Index of the first line at or after ``start`` that contains ``needle``."""
    return next(i for i in range(start, len(lines)) if needle in lines[i])


def node_line(lines: list[str], name: str) -> int:
    return lines.index(f'  name: "{name}"')


# -- strings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("plain/name", b"plain/name", id="plain"),
        pytest.param(r"\303\274nicode", "ünicode".encode(), id="octal-utf8"),
        pytest.param(r"\0\00\000x", b"\x00\x00\x00x", id="octal-lengths"),
        pytest.param(r"\x41\x4a\xf", b"AJ\x0f", id="hex"),
        pytest.param(r"\u00fc\U0001F600", "ü😀".encode(), id="unicode"),
        pytest.param(r"\n\t\r\a\b\f\v\\\'\"\?", b"\n\t\r\a\b\f\v\\'\"?", id="simple"),
        pytest.param("ü", "ü".encode(), id="raw-utf8"),
        # As protobuf's C++ tokenizer: \X like \x, a \u surrogate pair is one code point,
        # a fourth octal digit or third hex digit is a plain character.
        pytest.param(r"\X41\x414\1234", b"AA4S4", id="upper-x-and-lengths"),
        pytest.param(r"\ud83d\ude00", "😀".encode(), id="surrogate-pair"),
        pytest.param(r"\U0010FFFF\u0000", "\U0010ffff\x00".encode(), id="unicode-bounds"),
    ],
)
def test_unescape(body: str, expected: bytes) -> None:
    assert unescape(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(r"\q", r"unknown escape \q", id="unknown"),
        pytest.param(r"name\y", r"unknown escape \y", id="unknown-y"),
        pytest.param(r"\x", r"unknown escape \x", id="hex-without-digits"),
        pytest.param(r"\xg1", r"unknown escape \x", id="hex-non-digit"),
        pytest.param(r"\u12", r"unknown escape \u", id="short-u"),
        pytest.param(r"\U0000004", r"unknown escape \U", id="short-long-u"),
        pytest.param(r"\U00110000", r"\U escape 0x110000 is above U+10FFFF, not a character"),
        pytest.param(r"\8", r"unknown escape \8", id="not-octal"),
        pytest.param(r"\400", r"octal escape \400 is above \377", id="octal>255"),
        pytest.param(r"\ud800", r"\u escape 0xd800 is a lone surrogate, not a character"),
        pytest.param(r"\udc00", r"\u escape 0xdc00 is a lone surrogate, not a character"),
        pytest.param(r"\u0041\udc00", r"\u escape 0xdc00 is a lone surrogate, not a character"),
        pytest.param(r"\ud800\u0041", r"\u escape 0xd800 is a lone surrogate, not a character"),
        pytest.param(r"\U0000d800", r"\u escape 0xd800 is a lone surrogate, not a character"),
        pytest.param("end\\", "a backslash ends the string", id="trailing-backslash"),
        pytest.param("\\\n", "unknown escape \\\n", id="backslash-newline"),
    ],
)
def test_unescape_rejects(body: str, message: str) -> None:
    with pytest.raises(ValueError, match=".") as err:
        unescape(body)
    assert str(err.value) == message


def test_every_escape_of_the_text_format() -> None:
    """Each of the 256 characters after a backslash is decoded or refused, never mistaken."""
    simple = dict(zip("abfnrtv\\'\"?", "\a\b\f\n\r\t\v\\'\"?", strict=True))
    for code in range(256):
        char = chr(code)
        if char in simple:
            assert unescape("\\" + char) == simple[char].encode()
        elif char in "01234567":
            assert unescape("\\" + char) == bytes([code - 48])
        else:
            with pytest.raises(ValueError, match="unknown escape"):
                unescape("\\" + char)


def test_unescape_matches_protobuf_on_every_fixture_string() -> None:
    """Every string literal TF wrote in the fixtures decodes as protobuf decodes it."""
    text = "".join(path.read_text() for path in GRAPHS)
    bodies = set(re.findall(r'"((?:[^"\\\n]|\\.)*)"', text))
    assert any("\\" in body for body in bodies)  # the fixtures do contain escapes
    for body in bodies:
        assert unescape(body) == text_encoding.CUnescape(body), body


# -- the parser ----------------------------------------------------------------


def test_parse_text_grammar() -> None:
    text = """
    # a comment
    name: "a" 'b'   # adjacent strings are joined
    n: -12, f: 1.5e-3; e: DT_FLOAT
    sub { x: 1 sub { y: "deep" } }
    angle < x: 2 >
    colon: { x: 3 }
    rep: 1 rep: 2
    lst: [4, 5]
    msgs: [{x: 6}, <x: 7>]
    empty: []
    """
    assert parse_text(text, "t") == {
        "name": [b"ab"],
        "n": ["-12"],
        "f": ["1.5e-3"],
        "e": ["DT_FLOAT"],
        "sub": [{"x": ["1"], "sub": [{"y": [b"deep"]}]}],
        "angle": [{"x": ["2"]}],
        "colon": [{"x": ["3"]}],
        "rep": ["1", "2"],
        "lst": ["4", "5"],
        "msgs": [{"x": ["6"]}, {"x": ["7"]}],
        "empty": [],
    }


def test_parse_text_range_keeps_file_positions() -> None:
    text = "junk junk\nnode {\n  name: \n}\n"
    start = text.index("node")
    with pytest.raises(GraphError) as err:
        parse_text(text, "g.pbtxt", start, len(text))
    assert str(err.value).startswith("g.pbtxt:4:1: a value for 'name' expected, found '}'")


@pytest.mark.parametrize(
    ("text", "where", "detail"),
    [
        pytest.param(
            "a {\n  b: 1\n",
            "3:1",
            "unexpected end of text, '}' expected (for the 'a' block opened at line 1, column 3)",
            id="eof-in-block",
        ),
        pytest.param('a: "x\nb: 1', "1:4", "string not terminated on its line", id="open-string"),
        pytest.param("a: }", "1:4", "a value for 'a' expected, found '}'", id="no-value"),
        pytest.param("\n\n  1: 2", "3:3", "field name expected, found '1'", id="bad-name"),
        pytest.param("a { b: [1, 2 }", "1:14", "',' or ']' expected, found '}'", id="bad-list"),
        pytest.param('x: 1\na: "\\q"', "2:4", "bad string: unknown escape \\q", id="bad-escape"),
        pytest.param("# c\na b", "2:3", "':' or '{' expected after 'a', found 'b'", id="no-colon"),
        pytest.param("a: 1 }", "1:6", "field name expected, found '}'", id="stray-brace"),
        pytest.param("a: 1 @", "1:6", "field name expected, found '@'", id="bad-char"),
        pytest.param("a < b: 1 }", "1:10", "field name expected, found '}'", id="wrong-closer"),
    ],
)
def test_syntax_errors_report_line_and_column(text: str, where: str, detail: str) -> None:
    with pytest.raises(GraphError) as err:
        parse_text(text, "g.pbtxt")
    assert str(err.value) == (
        f"g.pbtxt:{where}: {detail} (fix the file, or write it again with tf.io.write_graph)"
    )


def test_long_runs_of_space_and_comments() -> None:
    """Whitespace and comments are skipped without backtracking (this once hung)."""
    text = "a: 1" + " " * 100_000 + "\n# c" * 50_000 + "\n  "
    assert parse_text(text, "t") == {"a": ["1"]}
    assert parse_text("# only a comment", "t") == {}


def test_comment_only_file_with_a_brace(tmp_path: Path) -> None:
    path = tmp_path / "graph.pbtxt"
    path.write_text("# comment\n# node\n{\n")
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value) == (
        f"{path}:3:1: field name expected, found '{{' "
        "(fix the file, or write it again with tf.io.write_graph)"
    )


def test_line_col() -> None:
    text = "ab\ncd\n\nef"
    assert [line_col(text, text.index(c)) for c in "acdf"] == [(1, 1), (2, 1), (2, 2), (4, 2)]


# -- the scanner on TF's layout and on other layouts ---------------------------


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.parent.name)
def test_scan_finds_every_node(path: Path) -> None:
    text = path.read_text()
    scanned = GraphText(text, str(path))
    expected = {node.name: node.op for node in proto_graph(text).node}
    assert dict(scanned.ops()) == expected
    assert scanned.top_fields == {"versions"}


def other_layouts(text: str) -> dict[str, str]:
    """The same GraphDef printed by protobuf in other layouts."""
    graph = proto_graph(text)
    standard = text_format.MessageToString(graph)
    return {
        "one-line": text_format.MessageToString(graph, as_one_line=True),
        "crlf": standard.replace("\n", "\r\n"),
        "indent-4": "\n".join(
            " " * (2 * (len(line) - len(line.lstrip(" ")))) + line.lstrip(" ")
            for line in standard.split("\n")
        ),
        "comments": "# written by hand\n" + standard.replace("\nnode {", "\n# next\nnode {"),
        "no-final-newline": standard.rstrip("\n"),
    }


@pytest.mark.parametrize("layout", list(other_layouts(fixture_text("ffm_v1_ps2"))))
def test_other_layouts_read_the_same(layout: str) -> None:
    text = fixture_text("ffm_v1_ps2")
    standard = GraphText(text, "std")
    other = GraphText(other_layouts(text)[layout], layout)
    assert dict(other.ops()) == dict(standard.ops())
    for name, op in standard.ops().items():
        if op in ("VariableV2", "RestoreV2", "Const", "Assign", "Identity"):
            assert other.node(name) == standard.node(name)
            assert other.inputs(name) == standard.inputs(name)


def test_nodes_match_protobuf_facts() -> None:
    """Every node the graph logic reads gives the same facts from the scanner and protobuf."""
    for path in GRAPHS:
        text = path.read_text()
        scanned = GraphText(text, str(path))
        proto = ProtoNodes(proto_graph(text), str(path))
        for name, op in proto.ops().items():
            if op in READ_OPS:
                assert scanned.node(name) == proto.node(name), name
                assert scanned.inputs(name) == proto.inputs(name), name


def test_escaped_node_names(tmp_path: Path) -> None:
    """Names with escapes (non-ASCII, quotes) take the careful path and decode like protobuf."""
    text = fixture_text("ffm_v2").replace('"global_step', '"gl\\303\\266bal\\"step')
    scanned = GraphText(text, "g")
    assert scanned.ops()['glöbal"step'] == "VarHandleOp"
    assert dict(scanned.ops()) == {n.name: n.op for n in proto_graph(text).node}


# -- errors in real graphs -----------------------------------------------------


def damaged(tmp_path: Path, lines: list[str], index: int, old: str, new: str) -> Path:
    assert old in lines[index]
    changed = lines.copy()
    changed[index] = lines[index].replace(old, new, 1)
    path = tmp_path / "graph.pbtxt"
    path.write_text("\n".join(changed))
    return path


def test_syntax_error_in_the_restore_op(tmp_path: Path) -> None:
    lines = fixture_text("ffm_v2").split("\n")
    index = find_line(lines, node_line(lines, "save/RestoreV2"), "type: DT_FLOAT")
    path = damaged(tmp_path, lines, index, "type: DT_FLOAT", "type DT_FLOAT")
    column = lines[index].index("DT_FLOAT") + 1 - 1  # one character shorter: the colon is gone
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value) == (
        f"{path}:{index + 1}:{column}: ':' or '{{' expected after 'type', found 'DT_FLOAT' "
        "(fix the file, or write it again with tf.io.write_graph)"
    )
    with pytest.raises(GraphError, match=rf"^{path}:{index + 1}:\d+: "):
        read_model_spec(path, fast=False)


def test_syntax_error_in_a_variable_attr(tmp_path: Path) -> None:
    lines = fixture_text("ffm_v2").split("\n")
    index = find_line(lines, node_line(lines, "ffm/tower/dense_1/kernel"), "type: DT_FLOAT")
    path = damaged(tmp_path, lines, index, "DT_FLOAT", '"DT_FLOAT')
    column = lines[index].index("DT_FLOAT") + 1
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value) == (
        f"{path}:{index + 1}:{column}: string not terminated on its line "
        "(fix the file, or write it again with tf.io.write_graph)"
    )


def test_bad_value_in_a_variable_shape(tmp_path: Path) -> None:
    lines = fixture_text("ffm_v2").split("\n")
    start = node_line(lines, "ffm/tower/dense_1/kernel")
    index = find_line(lines, start, "size: 32")
    path = damaged(tmp_path, lines, index, "size: 32", "size: 3x2")
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    # A value error is reported at the node that holds it.
    assert str(err.value) == (
        f"{path}:{start}:1: node 'ffm/tower/dense_1/kernel': '3x2' is not an integer "
        "(fix the file, or write it again with tf.io.write_graph)"
    )


def test_unknown_dtype_in_the_restore_op(tmp_path: Path) -> None:
    lines = fixture_text("ffm_v1").split("\n")
    start = node_line(lines, "save/RestoreV2")
    index = find_line(lines, start, "type: DT_INT64")
    path = damaged(tmp_path, lines, index, "DT_INT64", "DT_INT65")
    with pytest.raises(
        GraphError,
        match=rf"^{path}:{start}:1: node 'save/RestoreV2': "
        "unknown DataType 'DT_INT65'",
    ):
        read_model_spec(path)
    with pytest.raises(GraphError, match=rf"^{path}:{index + 1}:\d+: .*DT_INT65"):
        read_model_spec(path, fast=False)


@pytest.mark.parametrize("keep", [0.5, 0.999], ids=["half", "last-brace"])
def test_truncated_text(tmp_path: Path, keep: float) -> None:
    text = fixture_text("ffm_v1")
    cut = text[: text.rindex("\n", 0, int(len(text) * keep)) + 1]  # after a whole line
    path = tmp_path / "graph.pbtxt"
    path.write_text(cut)
    eof_line, eof_col = line_col(cut, len(cut))
    with pytest.raises(GraphError) as err:
        read_model_spec(path)
    assert str(err.value).startswith(
        f"{path}:{eof_line}:{eof_col}: unexpected end of text, '}}' expected (for the "
    )
    with pytest.raises(GraphError, match=rf"^{path}:\d+:\d+: "):
        read_model_spec(path, fast=False)


def test_fast_mode_skips_blocks_it_does_not_need(tmp_path: Path) -> None:
    """Documented limit: a syntax error inside an unread block only shows with fast=False."""
    lines = fixture_text("ffm_v2").split("\n")
    index = find_line(lines, node_line(lines, "save/SaveV2/tensor_names"), 'string_val: "')
    path = damaged(tmp_path, lines, index, lines[index], lines[index][:-1])  # no closing quote
    read = read_model_spec(path)
    expected = read_model_spec(FIXTURES / "ffm_v2" / "graph.pbtxt")
    assert (read.keys, read.variables) == (expected.keys, expected.variables)
    with pytest.raises(GraphError, match=rf"^{path}:{index + 1}:\d+: "):
        read_model_spec(path, fast=False)


def test_duplicate_node_names(tmp_path: Path) -> None:
    text = fixture_text("ffm_v2")
    lines = text.split("\n")
    start = node_line(lines, "global_step") - 1
    end = lines.index("}", start)
    path = tmp_path / "graph.pbtxt"
    path.write_text("\n".join(lines[: end + 1] + lines[start:]))
    for fast in (True, False):
        with pytest.raises(GraphError, match="two nodes are named 'global_step'"):
            read_model_spec(path, fast=fast)


def test_check_escapes_sees_only_string_literals() -> None:
    check_escapes('a: "x#\\n" # a "comment \\y with a quote\nb: \'\\101\'', "t")
    with pytest.raises(GraphError) as err:
        check_escapes('a: "ok" # "\\y"\nb: "fine\\"" c: \'bad\\y\'', "t.pbtxt")
    assert str(err.value) == (
        "t.pbtxt:2:16: bad string: unknown escape \\y "
        "(fix the file, or write it again with tf.io.write_graph)"
    )
