"""A copied model folder whose state file holds absolute paths (TensorFlow's default).

The state file names the original folder; ckptmap uses the checkpoint of the
same name in the copy, says so in one note, and never opens the original (every
path the library opens is recorded). Without a local match it still refuses.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import FIXTURES

from ckptmap.cli import main

ORIGINAL = FIXTURES / "ffm_v1"


def _state(prefixes: list[Path]) -> str:
    """A state file as TensorFlow writes it by default: absolute paths."""
    lines = [f'model_checkpoint_path: "{prefixes[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{p}"' for p in prefixes]
    return "\n".join(lines) + "\n"


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere" / "ffm_v1"
    shutil.copytree(ORIGINAL, folder)
    (folder / "checkpoint").write_text(
        _state([ORIGINAL.resolve() / "model.ckpt-50", ORIGINAL.resolve() / "model.ckpt-100"])
    )
    return folder


def _run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _commands(folder: Path, out: Path) -> dict[str, list[str | Path]]:
    graph = folder / "graph.pbtxt"
    return {
        "inspect": ["inspect", folder],
        "check": ["check", "--old", folder, "--new-graph", graph],
        "remap": ["remap", "--old", folder, "--new-graph", graph, "--out", f"{out}/"],
    }


@pytest.mark.parametrize("command", ["inspect", "check", "remap"])
def test_the_copy_is_used_with_a_note(
    copied: Path, tmp_path: Path, opened_paths: list[str], command: str
) -> None:
    code, stdout, stderr = _run(*_commands(copied, tmp_path / "out")[command])
    assert code == 0, (stdout, stderr)
    note = (
        f"note: checkpoint state file names {ORIGINAL.resolve() / 'model.ckpt-100'}; "
        "using ./model.ckpt-100 in this folder"
    )
    assert note in stderr.splitlines()
    original = str(ORIGINAL.resolve())
    assert [p for p in opened_paths if p.startswith(original + os.sep)] == []
    if command == "inspect":
        assert stdout.startswith(f"Checkpoint {copied / 'model.ckpt-100'} ")


def test_a_kept_step_is_found_in_the_copy_too(copied: Path, opened_paths: list[str]) -> None:
    code, stdout, stderr = _run("inspect", copied, "--step", "50")
    assert code == 0, stderr
    assert stdout.startswith(f"Checkpoint {copied / 'model.ckpt-50'} ")
    assert "using ./model.ckpt-50 in this folder" in stderr


@pytest.mark.parametrize(
    "stored",
    ["/old/place/model.ckpt-999", "../ffm_v1_ps2/model.ckpt-100"],
    ids=["absolute-without-a-local-match", "traversal"],
)
@pytest.mark.parametrize("command", ["inspect", "check", "remap"])
def test_without_a_local_match_it_still_refuses(
    copied: Path, tmp_path: Path, opened_paths: list[str], stored: str, command: str
) -> None:
    (copied / "checkpoint").write_text(f'model_checkpoint_path: "{stored}"\n')
    out = tmp_path / "out"
    code, _, stderr = _run(*_commands(copied, out)[command])
    assert code == 3
    assert stderr.startswith(
        f"error: {copied / 'checkpoint'}: checkpoint path '{stored}' points outside"
    )
    assert len(stderr.splitlines()) == 1
    assert not out.exists()
    outside = [p for p in opened_paths if not p.startswith(str(tmp_path)) and "ffm_v1_ps2" in p]
    assert outside == []
