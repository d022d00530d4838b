"""The per-key action of check and remap says what happens to the key's layout
and bytes: nothing is called re-partitioned unless its slices change.

``copy``: same layout, bytes copied as they are (a V2 bundle). ``convert``: same
layout, from a source whose bytes cannot be copied (a V1 checkpoint, npz,
safetensors), each piece read as an array and written. ``repartition`` only
when the output's slices differ from the stored ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main

V1 = FIXTURES / "tf1_v1"
V1_META = V1 / "model.ckpt-3.meta"


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _check(old: Path, new: Path) -> dict[str, Any]:
    result = _run("check", "--old", old, "--new-graph", new, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_a_v1_checkpoint_into_its_own_graph_is_converted_not_repartitioned() -> None:
    data = _check(V1, V1_META)
    actions = {r["key"]: r["action"] for r in data["resolved"]}
    assert actions["emb"] == "convert"  # partitioned 4, 3, 3 rows, asked for the same
    assert set(actions.values()) == {"convert"}
    assert data["restores_directly"] is True
    text = _run("check", "--old", V1, "--new-graph", V1_META).stdout
    assert text.startswith("OK: 16 keys resolved, 0 renamed, 0 split, 0 merged, 0 re-partitioned,")


def test_a_v1_partition_asked_for_in_other_slices_is_repartitioned(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "variables": [
                    {
                        "name": "emb",
                        "dtype": "float32",
                        "shape": [10, 4],
                        "partitions": {"axis": 0, "count": 2},
                    },
                    {"name": "global_step", "dtype": "int64", "shape": []},
                ]
            }
        )
    )
    out = tmp_path / "out"
    result = _run("remap", "--old", V1, "--new-graph", spec, "--out", out, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert {t["key"]: t["action"] for t in plan["tensors"]} == {
        "emb": "repartition",
        "global_step": "convert",
    }
    assert plan["summary"]["repartitioned"] == 1


@pytest.mark.parametrize("to", ["npz", "safetensors"])
def test_keys_of_an_array_file_in_their_recorded_layout_are_converted(
    to: str, tmp_path: Path
) -> None:
    out = tmp_path / f"ps2.{to}"
    result = _run("convert", "--old", FIXTURES / "ffm_v1_ps2", "--to", to, "--out", out)
    assert result.exit_code == 0, result.output
    data = _check(out, FIXTURES / "ffm_v1_ps2")  # the new model: the TF checkpoint itself
    actions = {r["key"]: r["action"] for r in data["resolved"]}
    # the file records ffm/embeddings' 4 slices (its manifest); the model asks for them
    assert actions["ffm/embeddings"] == "convert"
    assert set(actions.values()) == {"convert"}


def test_a_v2_bundle_into_its_own_layout_is_copied() -> None:
    data = _check(FIXTURES / "ffm_v1_ps2", FIXTURES / "ffm_v1_ps2")
    assert {r["action"] for r in data["resolved"]} == {"copy"}
    assert data["restores_directly"] is True
