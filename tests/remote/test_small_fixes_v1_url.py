"""A V1 checkpoint given as a URL (issue 14 item 5): served over HTTP (the range
server of test_http, on 127.0.0.1), every command either works or says in one
line that V1 checkpoints are read from local files only, and to download it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from remote.test_http import _serve, _Server

META = FIXTURES / "tf1_v1" / "model.ckpt-3.meta"


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    yield from _serve(FIXTURES)


def _run(*args: str | os.PathLike[str]) -> Result:
    from ckptmap.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("where", ["tf1_v1/", "tf1_v1/model.ckpt-3", "tf1_v1_sharded/"])
@pytest.mark.parametrize("command", ["inspect", "check", "remap", "convert"])
def test_a_v1_checkpoint_at_a_url(
    server: _Server, where: str, command: str, tmp_path: Path
) -> None:
    url, out = f"{server.url}/{where}", tmp_path / "out"
    args = {
        "inspect": ["inspect", url],
        "check": ["check", "--old", url, "--new-graph", META],
        "remap": ["remap", "--old", url, "--new-graph", META, "--out", f"{out}/"],
        "convert": ["convert", "--old", url, "--to", "npz", "--skip-unsupported", "--out", out],
    }[command]
    result = _run(*args)
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: http://127.0.0.1:")
    assert "a V1 checkpoint (no .index) at a URL is not supported" in line
    assert "download its files" in line
    assert not out.exists()


def test_a_v2_checkpoint_missing_at_a_url_is_not_called_v1(server: _Server) -> None:
    result = _run("inspect", f"{server.url}/ffm_v1/model.ckpt-7")
    assert result.exit_code == 3
    assert "V1" not in result.stderr
    assert result.stderr.startswith(f"error: {server.url}/ffm_v1/model.ckpt-7")
