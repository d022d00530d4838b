"""The JSON model spec (ckptmap/readers/json_spec.py, format in docs/model-spec.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES

from ckptmap.dtypes import dtype_from_name
from ckptmap.errors import GraphError, MissingInputError, UnsupportedInputError, UsageError
from ckptmap.readers.graph import read_model_spec
from ckptmap.readers.json_spec import model_spec_from_keys, parse_json_spec, read_json_spec
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.spec import GraphVariable, TensorSpec
from ckptmap.split import SliceSpec

F32 = dtype_from_name("float32")


def spec_of(*variables: dict[str, Any]) -> str:
    return json.dumps({"variables": list(variables)})


def test_the_documented_example() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "model-spec.md"
    text = doc.read_text()
    example = text[text.index("```json\n") + 8 : text.index("```", text.index("```json\n") + 8)]
    spec = parse_json_spec(example, "doc")
    assert list(spec.keys) == [
        "emb", "global_step", "odd", "tower/dense/bias", "tower/dense/kernel", "wide/w"
    ]  # fmt: skip
    assert spec.keys["global_step"] == TensorSpec("global_step", dtype_from_name("int64"), ())
    assert [s.format() for s in spec.keys["emb"].slices] == [
        "10 4 0,4:0,4",
        "10 4 4,3:0,4",
        "10 4 7,3:0,4",
    ]
    assert [s.format() for s in spec.keys["wide/w"].slices] == [
        "6 8 0,6:0,3",
        "6 8 0,6:3,3",
        "6 8 0,6:6,2",
    ]
    assert spec.keys["wide/w"].dtype.name == "float64"
    assert [v.name for v in spec.variables_of("emb")] == ["emb/part_0", "emb/part_1", "emb/part_2"]
    assert spec.variables["emb/part_1"] == GraphVariable(
        "emb/part_1", "emb", F32, (3, 4), SliceSpec.parse("10 4 4,3:0,4")
    )
    assert spec.variables["global_step"].is_global_step
    assert not spec.variables["global_step"].trainable
    assert spec.variables["tower/dense/kernel"].trainable


def test_trainable_and_dtype_spellings() -> None:
    spec = parse_json_spec(
        spec_of(
            {"name": "a", "dtype": "DT_FLOAT", "shape": [2], "trainable": False},
            {"name": "b", "dtype": "half", "shape": [0, 3]},
            {"name": "c", "dtype": "bfloat16", "shape": []},
        )
    )
    assert spec.variables["a"] == GraphVariable("a", "a", F32, (2,), None, trainable=False)
    assert spec.keys["b"].dtype.name == "float16"
    assert spec.keys["b"].shape == (0, 3)
    assert spec.keys["c"].dtype.name == "bfloat16"


def test_explicit_slices_are_sorted_by_offset() -> None:
    spec = parse_json_spec(
        spec_of(
            {
                "name": "t",
                "dtype": "float32",
                "shape": [6, 2],
                "partitions": {"slices": ["6 2 4,2:0,2", "6 2 0,2:-", "6 2 2,2:0,2"]},
            }
        )
    )
    assert [s.format() for s in spec.keys["t"].slices] == [
        "6 2 0,2:-",
        "6 2 2,2:0,2",
        "6 2 4,2:0,2",
    ]
    assert spec.variables["t/part_0"].shape == (2, 2)
    assert spec.variables["t/part_2"].slice == SliceSpec.parse("6 2 4,2:0,2")


def test_sizes_along_axis_1() -> None:
    spec = parse_json_spec(
        spec_of(
            {
                "name": "w",
                "dtype": "float32",
                "shape": [3, 7],
                "partitions": {"axis": 1, "sizes": [2, 5]},
            }
        )
    )
    assert [v.shape for v in spec.variables_of("w")] == [(3, 2), (3, 5)]


def test_count_like_fixed_size_partitioner() -> None:
    """200 rows in 3 parts are 67, 67, 66, as TF's partitioner cut ffm_v2's embeddings."""
    spec = parse_json_spec(
        spec_of(
            {
                "name": "ffm/embeddings",
                "dtype": "float32",
                "shape": [200, 16],
                "partitions": {"count": 3},
            }
        )
    )
    with open_checkpoint(FIXTURES / "ffm_v2") as ckpt:
        stored = ckpt.specs()["ffm/embeddings"]
    assert set(spec.keys["ffm/embeddings"].slices) == set(stored.slices)


def test_read_json_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(spec_of({"name": "x", "dtype": "int32", "shape": [1]}))
    spec = read_json_spec(path)
    assert spec.source == str(path)
    assert read_model_spec(path) == spec
    with pytest.raises(UsageError, match="the saver option applies to graphs"):
        read_model_spec(path, saver="save")
    with pytest.raises(MissingInputError, match="no such JSON model spec"):
        read_json_spec(tmp_path / "missing.json")


def test_model_spec_from_checkpoint_keys() -> None:
    with open_checkpoint(FIXTURES / "tf2_module") as ckpt:
        specs = ckpt.specs()
    spec = model_spec_from_keys(specs.values(), "ckpt")
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in spec.keys
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" not in spec.variables
    assert set(spec.variables) == set(spec.keys) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}


BAD = [
    ("{", "<json>:1:2: not valid JSON: Expecting property name enclosed in double quotes"),
    ('{"variables": [}', "<json>:1:16: not valid JSON: Expecting value"),
    ("[]", "<json>: the top level must be an object with 'variables'"),
    ('{"variable": []}', "<json>: unknown field 'variable' (expected: variables, version)"),
    ('{"version": 2, "variables": []}', "<json>: unsupported spec version 2"),
    ('{"variables": {}}', "<json>: 'variables' must be a list of objects"),
    ('{"variables": [1]}', "<json>: variables[0]: must be an object"),
    (
        spec_of({"dtype": "float32", "shape": []}),
        "<json>: variables[0]: 'name' must be a non-empty string",
    ),
    (
        spec_of({"name": "a", "dtype": "float33", "shape": []}),
        "<json>: variables[0] ('a'): unknown dtype 'float33' (expected one of: ",
    ),
    (
        spec_of({"name": "a", "dtype": 1, "shape": []}),
        "<json>: variables[0] ('a'): 'dtype' must be a string",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [2, -1]}),
        "<json>: variables[0] ('a'): 'shape' must be a list of non-negative integers, "
        "such as [8, 4] or [] for a scalar, not [2, -1]",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [True]}),
        "<json>: variables[0] ('a'): 'shape' must be a list of non-negative integers",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": "4"}),
        "<json>: variables[0] ('a'): 'shape' must be a list",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [1], "size": 4}),
        "<json>: variables[0] ('a'): unknown field 'size'",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [1], "trainable": "yes"}),
        "<json>: variables[0] ('a'): 'trainable' must be true or false",
    ),
    (
        spec_of(
            {"name": "a", "dtype": "float32", "shape": [1]},
            {"name": "a", "dtype": "float32", "shape": [1]},
        ),
        "<json>: variables[1]: name 'a' is given twice",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [10, 4], "partitions": 3}),
        "<json>: variables[0] ('a'): partitions: must be an object",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [10, 4], "partitions": {"count": 11}}),
        "<json>: variables[0] ('a'): partitions: 'count' must be an integer from 1 to 10 "
        "(the size of axis 0)",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [10, 4], "partitions": {"count": 0}}),
        "'count' must be an integer from 1 to 10",
    ),
    (
        spec_of(
            {
                "name": "a",
                "dtype": "float32",
                "shape": [10, 4],
                "partitions": {"axis": 2, "count": 2},
            }
        ),
        "<json>: variables[0] ('a'): partitions: 'axis' must be an integer from 0 to 1",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [], "partitions": {"count": 1}}),
        "partitions: a scalar cannot be partitioned",
    ),
    (
        spec_of(
            {
                "name": "a",
                "dtype": "float32",
                "shape": [10],
                "partitions": {"count": 2, "sizes": [5, 5]},
            }
        ),
        "partitions: give exactly one of 'count' and 'sizes'",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [10], "partitions": {"sizes": [5, 4]}}),
        "partitions: 'sizes' add up to 9, not 10 (the size of axis 0)",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [10], "partitions": {"sizes": [10, 0]}}),
        "partitions: 'sizes' must be a list of positive integers",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [10], "partitions": {"slices": []}}),
        "partitions: 'slices' must be a non-empty list of slice-spec strings",
    ),
    (
        spec_of({"name": "a", "dtype": "float32", "shape": [10], "partitions": {"slices": ["10"]}}),
        "partitions: slice spec '10' needs a shape and a slice",
    ),
    (
        spec_of(
            {"name": "a", "dtype": "float32", "shape": [10], "partitions": {"slices": ["9 0,9"]}}
        ),
        "partitions: slice '9 0,9' is of a tensor of shape [9], not [10]",
    ),
    (
        spec_of(
            {
                "name": "a",
                "dtype": "float32",
                "shape": [10],
                "partitions": {"slices": ["10 0,6", "10 5,5"]},
            }
        ),
        "partitions: slices '10 0,6' and '10 5,5' overlap",
    ),
    (
        spec_of(
            {
                "name": "a",
                "dtype": "float32",
                "shape": [10],
                "partitions": {"slices": ["10 0,4", "10 5,5"]},
            }
        ),
        "partitions: slices cover 9 of the 10 elements of a tensor of shape [10] "
        "(a slice is missing)",
    ),
    (
        spec_of(
            {
                "name": "a",
                "dtype": "float32",
                "shape": [10],
                "partitions": {"slices": ["10 0,4"], "count": 1},
            }
        ),
        "partitions: unknown field 'count' (expected: slices)",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_specs(text: str, message: str) -> None:
    with pytest.raises(GraphError) as err:
        parse_json_spec(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_json_syntax_error_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{\n  "variables": [\n    {"name": "a",, "dtype": "float32"}\n  ]\n}\n')
    with pytest.raises(GraphError) as err:
        read_json_spec(path)
    assert str(err.value) == (
        f"{path}:3:18: not valid JSON: Expecting property name enclosed in double quotes"
    )


# -- hostile input: bounded before or while parsing (issue 13) ------------------


def test_deep_nesting_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"variables": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(GraphError) as err:
        read_json_spec(path)
    assert str(err.value) == (
        f"{path}: brackets are nested more than 20 levels deep; a model spec needs 5 "
        "(see docs/model-spec.md for the format)"
    )
    # Unbalanced too: json.loads would recurse before finding the error.
    with pytest.raises(GraphError, match="nested more than 20 levels"):
        parse_json_spec("[" * 100_000)


def test_brackets_in_names_do_not_count_as_nesting() -> None:
    name = "[{" * 50 + '\\"' + "}]" * 50
    text = '{"variables": [{"name": "NAME", "dtype": "int8", "shape": []}]}'
    spec = parse_json_spec(text.replace("NAME", name))
    assert list(spec.keys) == [json.loads(f'"{name}"')]


def test_size_is_bounded_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ckptmap.readers import json_spec

    path = tmp_path / "big.json"
    path.write_text(spec_of({"name": "x", "dtype": "int32", "shape": [1]}))
    monkeypatch.setattr(json_spec, "MAX_BYTES", 20)
    with pytest.raises(GraphError) as err:
        read_json_spec(path)
    assert str(err.value).startswith(
        f"{path}: the JSON model spec is {path.stat().st_size} bytes, more than the 20 "
    )
    with pytest.raises(GraphError, match="more than the 20 ckptmap reads"):
        parse_json_spec(path.read_text(), "where")


def test_an_integer_too_long_for_python_is_not_json() -> None:
    text = '{"variables": [{"name": "a", "dtype": "int8", "shape": [' + "9" * 5000 + "]}]}"
    with pytest.raises(GraphError, match=r"^<json>: not valid JSON: Exceeds the limit"):
        parse_json_spec(text)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        pytest.param(
            [2**70],
            "<json>: variables[0] ('a'): 'shape': dimension 0 is 1180591620717411303424, "
            "beyond 2**62; no tensor has such a shape (the file is corrupt)",
            id="dim-2**70",
        ),
        pytest.param(
            [4, 2**62 + 1],
            "<json>: variables[0] ('a'): 'shape': dimension 1 is 4611686018427387905, beyond",
            id="dim-2**62+1",
        ),
        pytest.param(
            [2**31, 2**31, 2**31],
            "<json>: variables[0] ('a'): 'shape': the shape has 9903520314283042199192993792 "
            "elements, beyond 2**62",
            id="count-2**93",
        ),
    ],
)
def test_impossible_dimensions_are_malformed(shape: list[int], message: str) -> None:
    with pytest.raises(GraphError) as err:
        parse_json_spec(spec_of({"name": "a", "dtype": "float32", "shape": shape}))
    assert str(err.value).startswith(message)
    assert type(err.value) is GraphError


def test_the_largest_real_dimensions_pass() -> None:
    spec = parse_json_spec(
        spec_of(
            {"name": "a", "dtype": "int8", "shape": [2**62]},
            {"name": "b", "dtype": "int8", "shape": [1] * 64},
        )
    )
    assert spec.keys["a"].shape == (2**62,)
    assert len(spec.keys["b"].shape) == 64


def test_rank_above_64_is_unsupported() -> None:
    with pytest.raises(UnsupportedInputError) as err:
        parse_json_spec(spec_of({"name": "a", "dtype": "float32", "shape": [1] * 65}))
    assert str(err.value) == (
        "<json>: variables[0] ('a'): 'shape': rank 65 is more than ckptmap supports "
        "(at most 64 dimensions, numpy's limit)"
    )


@pytest.mark.parametrize(
    "partitions",
    [
        {"count": 2**16 + 1},
        {"sizes": [1] * (2**16 + 1)},
        {"slices": [f"{2**16 + 1} {i},1" for i in range(2**16 + 1)]},
    ],
    ids=["count", "sizes", "slices"],
)
def test_partition_count_is_bounded(partitions: dict[str, Any]) -> None:
    text = spec_of({"name": "a", "dtype": "int8", "shape": [2**16 + 1], "partitions": partitions})
    with pytest.raises(UnsupportedInputError) as err:
        parse_json_spec(text)
    assert str(err.value) == (
        "<json>: variables[0] ('a'): partitions: 65537 slices are more than the 65536 "
        "ckptmap reads for one tensor"
    )


def test_a_lone_surrogate_in_a_name_is_malformed() -> None:
    text = spec_of({"name": "a", "dtype": "int8", "shape": []}).replace('"a"', '"a\\ud800"')
    with pytest.raises(GraphError) as err:
        parse_json_spec(text)
    assert str(err.value).startswith(
        "<json>: variables[0] ('a\\ud800'): 'name' holds a lone surrogate escape"
    )
    pair = spec_of({"name": "a", "dtype": "int8", "shape": []}).replace('"a"', '"a\\ud83d\\ude00"')
    assert list(parse_json_spec(pair).keys) == ["a\U0001f600"]


GOOD = {"name": "ok", "dtype": "float32", "shape": [1, 2]}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"name": "b", "dtype": "float32", "shape": [True, 2]}, "variables[1] ('b'): 'shape'"),
        ({"name": "b", "dtype": "float32", "shape": [1, -2]}, "variables[1] ('b'): 'shape'"),
        ({"name": "b", "dtype": "float32 ", "shape": [1, 2], "trainable": 1}, "'trainable'"),
        ({"name": "b", "dtype": "float33", "shape": [1, 2]}, "unknown dtype 'float33'"),
        ({"name": "b", "dtype": "float32", "shape": [2**62, 4]}, "elements, beyond 2**62"),
    ],
    ids=["bool-dim", "negative", "trainable", "dtype", "elements"],
)
def test_a_bad_entry_after_a_good_one_of_the_same_kind(bad: dict[str, Any], message: str) -> None:
    """What was checked for one entry (its dtype name, its shape) does not excuse the next."""
    with pytest.raises(GraphError) as err:
        parse_json_spec(spec_of(GOOD, bad, bad))
    assert message in str(err.value)


def test_plain_and_partitioned_entries_read_alike() -> None:
    """Plain entries and ones the full reader takes (partitions: null, DT_ names) agree."""
    spec = parse_json_spec(
        spec_of(
            GOOD,
            {"name": "n", "dtype": "DT_FLOAT", "shape": [1, 2], "partitions": None},
            {"name": "t", "dtype": "float32", "shape": [], "trainable": False},
            {"name": "é/ü", "dtype": "int64", "shape": [3]},
        )
    )
    assert spec.keys["ok"] == TensorSpec("ok", F32, (1, 2))
    assert spec.keys["n"] == TensorSpec("n", F32, (1, 2))
    assert spec.keys["é/ü"] == TensorSpec("é/ü", dtype_from_name("int64"), (3,))
    assert spec.variables["t"].trainable is False
    assert spec.variables["ok"].trainable is True


def test_strings_are_cut_out_as_the_regular_expression_cuts_them() -> None:
    """The quote-split fast path of the nesting check agrees with the string pattern."""
    import random

    from ckptmap.readers.json_spec import _STRING, _brackets_outside_strings

    rng = random.Random(0)
    for _ in range(20000):
        text = "".join(rng.choice('"[]{}a,:\\ \né€\U0001d538') for _ in range(rng.randrange(30)))
        for variant in (text, text.replace("\\", "")):
            outside = _STRING.sub("", variant)
            expected = "".join(c for c in outside if c in "[]{}").encode()
            assert _brackets_outside_strings(variant) == expected, repr(variant)
