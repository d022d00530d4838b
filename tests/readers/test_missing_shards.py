"""Data files missing for some shards (issue 14 item 5).

Listing works from the index alone, as ``tf.train.list_variables`` does: inspect
lists every tensor and says which data file is missing and how many tensors'
values it holds. Every command that needs values (``inspect --stats``,
``--verify``, ``--tensor``, ``remap``, ``convert``) names the missing file and
writes nothing. Checked for a sharded V2 checkpoint, for TF Serving's
Snappy-compressed SavedModel (a copy of ``../shared/data``) and for a sharded
V1 checkpoint, whose listing is in its shards (so a missing shard is refused
for every command, naming it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main

from .test_snappy import MODEL as SNAPPY_MODEL


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _missing_message(shard: Path) -> str:
    stem = shard.name.split(".data-")[0]
    return (
        f"error: {shard}: data file of this checkpoint is missing (copy every "
        f"{stem}.data-* file together with the .index)\n"
    )


def _case(kind: str, tmp_path: Path) -> tuple[Path, Path, Path, int]:
    """(checkpoint, its graph, the removed data file, how many tensors it held)."""
    if kind == "snappy":
        if not SNAPPY_MODEL.is_dir():
            pytest.skip(f"{SNAPPY_MODEL} (the shared third-party data) is not here")
        folder = tmp_path / "half_plus_two"
        shutil.copytree(SNAPPY_MODEL, folder)
        shard = folder / "variables" / "variables.data-00000-of-00001"
        shard.unlink()
        return folder / "variables" / "variables", folder, shard, 5
    folder = tmp_path / "ffm_v1_ps2"
    shutil.copytree(FIXTURES / "ffm_v1_ps2", folder)
    shard = folder / "model.ckpt-100.data-00001-of-00002"
    shard.unlink()
    return folder, folder / "model.ckpt-100.meta", shard, 20


@pytest.mark.parametrize("kind", ["sharded", "snappy"])
def test_listing_works_from_the_index_alone(kind: str, tmp_path: Path) -> None:
    old, _, shard, held = _case(kind, tmp_path)
    result = _run("inspect", old, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"path": str(shard), "size": None, "missing": True} in doc["checkpoint"]["shards"]
    assert len(doc["tensors"]) == (5 if kind == "snappy" else 33)
    assert result.stderr == (
        f"note: {shard}: data file of this checkpoint is missing; listed from the index alone "
        f"(the values of {held} tensors listed here cannot be read)\n"
    )


@pytest.mark.parametrize("kind", ["sharded", "snappy"])
@pytest.mark.parametrize("command", ["stats", "verify", "remap", "remap-link", "convert"])
def test_commands_needing_values_name_the_missing_file(
    kind: str, command: str, tmp_path: Path
) -> None:
    old, graph, shard, _ = _case(kind, tmp_path)
    out = tmp_path / "out"
    args = {
        "stats": ["inspect", old, "--stats"],
        "verify": ["inspect", old, "--verify"],
        "remap": ["remap", "--old", old, "--new-graph", graph, "--out", f"{out}/"],
        "remap-link": ["remap", "--old", old, "--new-graph", graph, "--out", f"{out}/", "--link"],
        "convert": ["convert", "--old", old, "--to", "zarr3", "--out", out],
    }[command]
    result = _run(*args)
    assert result.exit_code == 3, result.output
    if command.startswith("remap"):  # the writer's own wording, naming the same file
        assert (
            result.stderr == f"error: {shard}: data shard not found (is the checkpoint complete?)\n"
        )
    else:
        assert result.stderr == _missing_message(shard)
    assert not out.exists()


@pytest.mark.parametrize("command", ["inspect", "check", "remap", "convert"])
def test_a_missing_v1_shard_is_named_by_every_command(command: str, tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(FIXTURES / "tf1_v1_sharded", folder)
    shard = folder / "model.ckpt-3-00000-of-00002"
    shard.unlink()
    out = tmp_path / "out"
    meta = folder / "model.ckpt-3.meta"
    args = {
        "inspect": ["inspect", folder],
        "check": ["check", "--old", folder, "--new-graph", meta],
        "remap": ["remap", "--old", folder, "--new-graph", meta, "--out", f"{out}/"],
        "convert": ["convert", "--old", folder, "--to", "zarr3", "--out", out],
    }[command]
    result = _run(*args)
    assert result.exit_code == 3, result.output
    assert result.stderr == (
        f"error: {shard}: shard 0 of this 2-file V1 checkpoint is missing (the tensors it "
        "holds are listed only in it; copy every file of the checkpoint)\n"
    )
    assert not out.exists()
