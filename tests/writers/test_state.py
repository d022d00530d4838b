"""The ``checkpoint`` state file writer (ckptmap/writers/state.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from ckptmap.errors import CorruptCheckpointError, OutputError
from ckptmap.readers import locate_checkpoint, read_state_file
from ckptmap.writers import write_state_file


def test_rewriting_tf_state_gives_tf_bytes(fixture_copy: Any) -> None:
    """fixtures/tf2_module/checkpoint was written by TF's update_checkpoint_state."""
    folder = fixture_copy("tf2_module")
    original = (folder / "checkpoint").read_bytes()
    path = write_state_file(folder, folder / "ckpt-1", timestamp=1700000000.0)
    assert path == folder / "checkpoint"
    assert path.read_bytes() == original


def test_appends_relative_paths_like_a_saver(fixture_copy: Any) -> None:
    folder = fixture_copy("ffm_v1")
    write_state_file(folder, folder / "model.ckpt-200")
    assert (folder / "checkpoint").read_text() == (
        'model_checkpoint_path: "model.ckpt-200"\n'
        'all_model_checkpoint_paths: "model.ckpt-50"\n'
        'all_model_checkpoint_paths: "model.ckpt-100"\n'
        'all_model_checkpoint_paths: "model.ckpt-200"\n'
    )
    state = read_state_file(folder / "checkpoint")
    assert state.latest == folder / "model.ckpt-200"
    # an existing path is moved to the end, not repeated
    write_state_file(folder, folder / "model.ckpt-50")
    assert (folder / "checkpoint").read_text() == (
        'model_checkpoint_path: "model.ckpt-50"\n'
        'all_model_checkpoint_paths: "model.ckpt-100"\n'
        'all_model_checkpoint_paths: "model.ckpt-200"\n'
        'all_model_checkpoint_paths: "model.ckpt-50"\n'
    )
    assert locate_checkpoint(folder) == folder / "model.ckpt-50"


def test_timestamps_stay_parallel_to_paths(fixture_copy: Any) -> None:
    folder = fixture_copy("tf2_module")
    write_state_file(folder, folder / "ckpt-2", timestamp=1700000100.5)
    assert (folder / "checkpoint").read_text() == (
        'model_checkpoint_path: "ckpt-2"\n'
        'all_model_checkpoint_paths: "ckpt-1"\n'
        'all_model_checkpoint_paths: "ckpt-2"\n'
        "all_model_checkpoint_timestamps: 1700000000.0\n"
        "all_model_checkpoint_timestamps: 1700000100.5\n"
        "last_preserved_timestamp: 1700000000.0\n"
    )


def test_without_keeping_and_outside_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    write_state_file(folder, folder / "sub" / "a")
    write_state_file(folder, folder / "b", keep_existing=False)
    assert (folder / "checkpoint").read_text() == (
        'model_checkpoint_path: "b"\nall_model_checkpoint_paths: "b"\n'
    )
    elsewhere = tmp_path / "other" / "c"
    write_state_file(folder, elsewhere)
    text = (folder / "checkpoint").read_text()
    assert text.startswith(f'model_checkpoint_path: "{elsewhere}"\n')  # absolute
    assert text.endswith(f'all_model_checkpoint_paths: "{elsewhere}"\n')


def test_subfolder_and_non_ascii_paths_read_back(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    write_state_file(folder, folder / "sub" / "ckpt-ü")
    assert read_state_file(folder / "checkpoint").latest == folder / "sub" / "ckpt-ü"


def test_corrupt_existing_state(tmp_path: Path) -> None:
    (tmp_path / "checkpoint").write_text("model_checkpoint_path: 12 {\n")
    with pytest.raises(CorruptCheckpointError, match="keep_existing=False"):
        write_state_file(tmp_path, tmp_path / "a")
    write_state_file(tmp_path, tmp_path / "a", keep_existing=False)
    assert read_state_file(tmp_path / "checkpoint").latest == tmp_path / "a"


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="not an existing folder"):
        write_state_file(tmp_path / "nope", tmp_path / "nope" / "a")


def test_failed_write_keeps_the_old_state(
    fixture_copy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = fixture_copy("ffm_v1")
    before = (folder / "checkpoint").read_bytes()

    def full_disk(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match="checkpoint: cannot write: no space left"):
        write_state_file(folder, folder / "model.ckpt-200")
    monkeypatch.undo()
    assert (folder / "checkpoint").read_bytes() == before
    assert not [p for p in os.listdir(folder) if "ckptmap-tmp" in p]
