"""Keys of the new model that take any shape (lookup-table ``-keys``/``-values``
restored into table import ops) are shown as such, never as the scalar ``[]``.

The new model is the TF-written ``fixtures/tf1_tables`` graph (its ``.meta`` or
its SavedModel); the old checkpoint, ``ffm_v1``, has none of its keys, so they
are all unresolved and listed with their shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main

TABLES = FIXTURES / "tf1_tables"
TABLE_KEYS = {
    "id_weights-keys": "int64",
    "id_weights-values": "float32",
    "word_ids-keys": "string",
    "word_ids-values": "int64",
}


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=["model.ckpt-1.meta", "saved_model"])
def graph(request: pytest.FixtureRequest) -> Path:
    return TABLES / str(request.param)


def test_check_json_gives_table_keys_no_shape_and_marks_them_dynamic(graph: Path) -> None:
    result = _run("check", "--old", FIXTURES / "ffm_v1", "--new-graph", graph, "--json")
    assert result.exit_code == 1, result.output
    unresolved = {u["new_key"]: u for u in json.loads(result.stdout)["unresolved"]}
    for key, dtype in TABLE_KEYS.items():
        assert (unresolved[key]["dtype"], unresolved[key]["shape"]) == (dtype, None)
        assert unresolved[key]["dynamic"] is True
    assert unresolved["embed/w"]["shape"] == [4, 3]
    assert "dynamic" not in unresolved["embed/w"]


def test_check_table_shows_any_shape(graph: Path) -> None:
    result = _run("check", "--old", FIXTURES / "ffm_v1", "--new-graph", graph)
    assert result.exit_code == 1, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()[2:7]}
    assert rows == {
        "embed/w": ["float32", "[4,"],
        **{key: [dtype, "any"] for key, dtype in TABLE_KEYS.items()},
    }


def test_remap_failure_table_shows_any_shape(graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run("remap", "--old", FIXTURES / "ffm_v1", "--new-graph", graph, "--out", out)
    assert result.exit_code == 1, result.output
    lines = [line.split() for line in result.stderr.splitlines()]
    shapes = {words[0]: words[2] for words in lines if words and words[0] in TABLE_KEYS}
    assert shapes == dict.fromkeys(TABLE_KEYS, "any")
    assert not out.exists()
