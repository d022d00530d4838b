"""A store written by ``ckptmap convert`` works as ``--old`` for inspect, check and remap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.readers import open_checkpoint

pytest.importorskip("tensorstore")

RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
NEW = FIXTURES / "ffm_v2" / "graph.pbtxt"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zarr") / "ffm_v1.zarr"
    result = run("convert", "--old", FIXTURES / "ffm_v1_ps2", "--to", "zarr3", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _listing(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(t["name"], t["dtype"], t["shape"], sorted(t["slices"])) for t in data["tensors"]]


def test_inspect_lists_the_store_like_its_source(store: Path) -> None:
    from_store = json.loads(run("inspect", store, "--json").stdout)
    from_ckpt = json.loads(run("inspect", FIXTURES / "ffm_v1_ps2", "--json").stdout)
    assert from_store["checkpoint"]["format"] == "zarr3"
    assert _listing(from_store) == _listing(from_ckpt)
    refused = run("inspect", store, "--verify")
    assert refused.exit_code == 2
    assert "a zarr store has none" in refused.stderr


def test_check_and_remap_from_the_store(store: Path, tmp_path: Path) -> None:
    assert run("check", "--old", store, "--new-graph", NEW, "--rule", RULE).exit_code == 0
    out = tmp_path / "new"
    result = run(
        "remap", "--old", store, "--new-graph", NEW, "--rule", RULE, "--out", f"{out}/", "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["pieces_copied_as_bytes"] == 0  # a store has no bytes to copy
    expected = json.loads((FIXTURES / "ffm_v2" / "expected_alias.json").read_text())["aliases"]
    with (
        open_checkpoint(out / "model.ckpt-100") as new,
        open_checkpoint(FIXTURES / "ffm_v1_ps2") as old,
    ):
        assert sorted(new.keys()) == sorted(expected)
        for key, source in expected.items():
            np.testing.assert_array_equal(new.read(key, verify=True), old.read(source))


def test_link_from_a_store_is_a_usage_error(store: Path, tmp_path: Path) -> None:
    result = run(
        "remap",
        "--old",
        store,
        "--new-graph",
        NEW,
        "--rule",
        RULE,
        "--out",
        f"{tmp_path}/",
        "--link",
    )
    assert result.exit_code == 2
    assert "a zarr store has none" in result.stderr


@pytest.mark.tf
def test_saver_restores_a_remap_from_the_store(tf: Any, store: Path, tmp_path: Path) -> None:
    out = tmp_path / "new"
    assert (
        run(
            "remap", "--old", store, "--new-graph", NEW, "--rule", RULE, "--out", f"{out}/"
        ).exit_code
        == 0
    )
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(
            str(FIXTURES / "ffm_v2" / "model.ckpt-100.meta"), clear_devices=True
        )
        step = tf.compat.v1.train.get_global_step()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(out / "model.ckpt-100"))
            assert sess.run(step) == 100
