"""``check`` of a local checkpoint whose data file is missing fails (exit 3, one
line naming the file): a restore from it would fail. A stat, no read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import FIXTURES

from ckptmap import check
from ckptmap.cli import main
from ckptmap.errors import MissingInputError

GRAPH = FIXTURES / "ffm_v2" / "graph.pbtxt"
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    folder = tmp_path / "ps2"
    shutil.copytree(FIXTURES / "ffm_v1_ps2", folder)
    return folder


@pytest.mark.parametrize("json_out", [False, True])
def test_check_names_a_missing_data_file(old: Path, json_out: bool) -> None:
    args = ["check", "--old", str(old), "--new-graph", str(GRAPH), "--rule", RULE]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    shard = old / "model.ckpt-100.data-00001-of-00002"
    shard.unlink()
    result = CliRunner().invoke(main, args + (["--json"] if json_out else []))
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {shard}: data file of this checkpoint is missing, so no restore from it can"
        " succeed (copy every model.ckpt-100.data-* file together with the .index)\n"
    )


def test_the_library_check_raises(old: Path) -> None:
    (old / "model.ckpt-100.data-00000-of-00002").unlink()
    with pytest.raises(MissingInputError, match="data-00000-of-00002: data file"):
        check(old, GRAPH, rules=[RULE])


def test_a_v1_or_array_source_is_not_stat_for_v2_data_files() -> None:
    report = check(FIXTURES / "tf1_v1", FIXTURES / "tf1_v1" / "model.ckpt-3.meta")
    assert report.ok
    result = CliRunner().invoke(
        main, ["check", "--old", str(FIXTURES / "tf1_v1"), "--new-graph",
               str(FIXTURES / "tf1_v1" / "model.ckpt-3.meta"), "--json"],
    )  # fmt: skip
    assert json.loads(result.stdout)["ok"] is True
