"""Finding checkpoints (ckptmap/readers/state.py): folders, state files, prefixes, steps.

The same search runs over local folders and stores: every case is also run
on a copy of the fixtures in a ``memory://`` store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES

from ckptmap.errors import CorruptCheckpointError, MissingInputError, UsageError
from ckptmap.readers import find_checkpoint, locate_checkpoint, open_checkpoint, read_state_file
from ckptmap.storage import KvLocation

MEMORY = "memory://readers-state/"


@pytest.fixture(scope="module")
def uploaded() -> str:
    """The fixtures folder copied into a memory:// store."""
    store = KvLocation(MEMORY)
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file() and "golden" not in path.parts:
            store.write(path.relative_to(FIXTURES).as_posix(), path.read_bytes())
    return MEMORY


@pytest.mark.parametrize(
    ("given", "step", "expected"),
    [
        pytest.param("ffm_v1", None, "ffm_v1/model.ckpt-100", id="folder-latest"),
        pytest.param("ffm_v1", 50, "ffm_v1/model.ckpt-50", id="folder-step"),
        pytest.param("ffm_v1/checkpoint", 50, "ffm_v1/model.ckpt-50", id="state-file"),
        pytest.param("ffm_v1/model.ckpt-50", None, "ffm_v1/model.ckpt-50", id="prefix"),
        pytest.param("ffm_v1/model.ckpt", 100, "ffm_v1/model.ckpt-100", id="prefix-step"),
        pytest.param("ffm_v1/model.ckpt-50.index", None, "ffm_v1/model.ckpt-50", id="index"),
        pytest.param(
            "ffm_v1_ps2/model.ckpt-100.data-00001-of-00002",
            None,
            "ffm_v1_ps2/model.ckpt-100",
            id="data-file",
        ),
        pytest.param(
            "ffm_v1/saved_model", None, "ffm_v1/saved_model/variables/variables", id="saved-model"
        ),
        pytest.param("tf2_module", None, "tf2_module/ckpt-1", id="tf2-manager"),
        pytest.param("dtype_zoo", None, "dtype_zoo/zoo", id="folder-without-state-file"),
    ],
)
def test_locate_checkpoint(given: str, step: int | None, expected: str) -> None:
    assert locate_checkpoint(FIXTURES / given, step=step) == FIXTURES / expected


@pytest.mark.parametrize(
    ("given", "step", "expected"),
    [
        pytest.param("ffm_v1/", None, "ffm_v1/model.ckpt-100", id="folder-latest"),
        pytest.param("ffm_v1", 50, "ffm_v1/model.ckpt-50", id="folder-step"),
        pytest.param("ffm_v1/checkpoint", 50, "ffm_v1/model.ckpt-50", id="state-file"),
        pytest.param("ffm_v1/model.ckpt-50", None, "ffm_v1/model.ckpt-50", id="prefix"),
        pytest.param("ffm_v1/model.ckpt", 100, "ffm_v1/model.ckpt-100", id="prefix-step"),
        pytest.param("ffm_v1/model.ckpt-50.index", None, "ffm_v1/model.ckpt-50", id="index"),
        pytest.param(
            "ffm_v1/saved_model/", None, "ffm_v1/saved_model/variables/variables", id="saved-model"
        ),
        pytest.param("tf2_module/", None, "tf2_module/ckpt-1", id="tf2-manager"),
        pytest.param("dtype_zoo/", None, "dtype_zoo/zoo", id="folder-without-state-file"),
    ],
)
def test_the_same_search_in_a_store(
    uploaded: str, given: str, step: int | None, expected: str
) -> None:
    ref = find_checkpoint(uploaded + given, step=step)
    assert ref.location.where(ref.prefix) == uploaded + expected
    local = find_checkpoint(FIXTURES / given, step=step)
    assert local.path == FIXTURES / expected


def test_a_prefix_url_keeps_the_index_it_read(uploaded: str) -> None:
    ref = find_checkpoint(uploaded + "ffm_v1/model.ckpt-100")
    assert ref.index == (FIXTURES / "ffm_v1" / "model.ckpt-100.index").read_bytes()
    assert find_checkpoint(FIXTURES / "ffm_v1" / "model.ckpt-100").index is None


def test_step_with_an_index_path_is_a_usage_error() -> None:
    index = FIXTURES / "ffm_v1" / "model.ckpt-50.index"
    with pytest.raises(UsageError) as info:
        open_checkpoint(index, step=50)
    assert str(info.value) == (
        f"{index}: a step cannot be used with an .index file path "
        "(pass the model folder or the prefix with the step)"
    )


def test_unknown_step_lists_the_kept_ones() -> None:
    with pytest.raises(MissingInputError) as info:
        open_checkpoint(FIXTURES / "ffm_v1", step=75)
    assert str(info.value) == (
        f"{FIXTURES / 'ffm_v1' / 'checkpoint'}: no checkpoint for step 75 (steps kept: 50, 100)"
    )


def test_absolute_paths_inside_the_folder_are_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(FIXTURES / "ffm_v1", folder)
    (folder / "checkpoint").write_text(
        f'model_checkpoint_path: "{folder}/model.ckpt-50"\n'
        f'all_model_checkpoint_paths: "{folder}/model.ckpt-50"\n'
    )
    with open_checkpoint(folder) as ckpt:
        assert ckpt.prefix == folder / "model.ckpt-50"


def test_step_with_an_index_url_is_a_usage_error(uploaded: str) -> None:
    url = uploaded + "ffm_v1/model.ckpt-50.index"
    with pytest.raises(UsageError) as info:
        find_checkpoint(url, step=50)
    assert str(info.value) == (
        f"{url}: a step cannot be used with an .index file URL "
        "(pass the model folder or the prefix with the step)"
    )


def test_unknown_step_in_a_store_lists_the_kept_ones(uploaded: str) -> None:
    with pytest.raises(MissingInputError) as info:
        find_checkpoint(uploaded + "ffm_v1/", step=75)
    assert str(info.value) == (
        f"{uploaded}ffm_v1/checkpoint: no checkpoint for step 75 (steps kept: 50, 100)"
    )


def test_a_store_refuses_paths_that_leave_the_folder() -> None:
    store = KvLocation("memory://readers-state-outside/m/")
    store.write("checkpoint", b'model_checkpoint_path: "../other/model.ckpt-1"\n')
    with pytest.raises(CorruptCheckpointError, match="points outside"):
        find_checkpoint("memory://readers-state-outside/m/")


def test_read_state_file_resolves_against_its_folder(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "ffm_v1", tmp_path / "m")
    state = read_state_file(tmp_path / "m" / "checkpoint")
    assert state.latest == tmp_path / "m" / "model.ckpt-100"
    assert state.all == (tmp_path / "m" / "model.ckpt-50", tmp_path / "m" / "model.ckpt-100")
    with pytest.raises(MissingInputError, match="checkpoint state file not found"):
        read_state_file(tmp_path / "checkpoint")
