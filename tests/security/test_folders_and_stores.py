"""The trust boundary beyond a checkpoint's own files (docs/security.md).

A SavedModel folder the user names is a model folder too: its files may link
only inside it. A local zarr3 store is read by tensorstore, which opens files
itself, so the store is looked at as a whole before it is opened; its manifest
cannot name a node outside it. A ``file://`` URL is a local input with the same
checks. Every command is run as a user runs it and what the process opens is
recorded (``opened_paths``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import FIXTURES

from ckptmap.cli import main

PREFIX = "model.ckpt-100"


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    """A command in its own process, so that a hang fails the test instead of blocking it."""
    return subprocess.run(
        [sys.executable, "-m", "ckptmap", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


# -- a SavedModel folder named as the new model ---------------------------------------


@pytest.fixture
def saved_model(tmp_path: Path) -> Path:
    folder = tmp_path / "export" / "saved_model"
    shutil.copytree(FIXTURES / "ffm_v1" / "saved_model", folder)
    return folder


def _check(new: Path) -> list[str]:
    return ["check", "--old", str(FIXTURES / "ffm_v1"), "--new-graph", str(new)]


def test_a_saved_model_pb_linked_out_of_its_folder_is_refused(
    saved_model: Path, tmp_path: Path, opened_paths: list[str]
) -> None:
    elsewhere = tmp_path / "elsewhere.pb"
    shutil.move(saved_model / "saved_model.pb", elsewhere)
    (saved_model / "saved_model.pb").symlink_to(elsewhere)
    opened_paths.clear()
    code, stdout, stderr = _invoke(_check(saved_model))
    assert code == 3, (stdout, stderr)
    assert stderr.count("\n") == 1
    assert f"{saved_model / 'saved_model.pb'}: is a symbolic link to {elsewhere}" in stderr
    assert "outside the model folder" in stderr
    assert str(elsewhere) not in opened_paths


def test_a_saved_model_pb_linked_inside_its_folder_is_read(saved_model: Path) -> None:
    (saved_model / "kept").mkdir()
    shutil.move(saved_model / "saved_model.pb", saved_model / "kept" / "saved_model.pb")
    (saved_model / "saved_model.pb").symlink_to(Path("kept") / "saved_model.pb")
    code, stdout, stderr = _invoke(_check(saved_model))
    assert code == 0, (stdout, stderr)


def test_the_saved_model_pb_named_itself_may_link_anywhere(
    saved_model: Path, tmp_path: Path
) -> None:
    """The user named this file: its link is theirs, followed (to a regular file)."""
    elsewhere = tmp_path / "elsewhere.pb"
    shutil.move(saved_model / "saved_model.pb", elsewhere)
    (saved_model / "saved_model.pb").symlink_to(elsewhere)
    code, stdout, stderr = _invoke(_check(saved_model / "saved_model.pb"))
    assert code == 0, (stdout, stderr)


def test_a_fifo_as_saved_model_pb_is_not_taken_for_the_model(saved_model: Path) -> None:
    (saved_model / "saved_model.pb").unlink()
    os.mkfifo(saved_model / "saved_model.pb")
    started = time.monotonic()
    run = _run(_check(saved_model))
    assert time.monotonic() - started < 15
    assert run.returncode in (2, 3), run.stderr  # not a model: named in one line, never opened
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr


# -- a local zarr3 store ------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Path:
    out = tmp_path / "zoo" / "store"
    out.parent.mkdir()
    code, stdout, stderr = _invoke(
        ["convert", "--old", str(FIXTURES / "ffm_v1"), "--to", "zarr3", "--out", str(out)]
    )
    assert code == 0, (stdout, stderr)
    return out


def _chunk(store: Path) -> Path:
    return next((store / "ffm.embeddings" / "c").rglob("0"))


def _first_file(path: Path) -> Path:
    return path if path.is_file() else next(p for p in sorted(path.rglob("*")) if p.is_file())


STORE_COMMANDS = {
    "inspect": lambda s, out: ["inspect", str(s)],
    "tensor": lambda s, out: ["inspect", str(s), "--tensor", "ffm/embeddings"],
    "remap": lambda s, out: [
        "remap", "--old", str(s), "--new-graph", str(FIXTURES / "ffm_v1" / "graph.pbtxt"),
        "--out", f"{out}/",
    ],
    "convert": lambda s, out: ["convert", "--old", str(s), "--to", "zarr3", "--out", str(out)],
}  # fmt: skip


@pytest.mark.parametrize("command", list(STORE_COMMANDS))
def test_a_store_node_linked_out_of_the_store_is_refused(
    store: Path, tmp_path: Path, opened_paths: list[str], command: str
) -> None:
    chunk = _first_file(_chunk(store))
    elsewhere = tmp_path / "zoo" / "elsewhere.bin"
    shutil.move(chunk, elsewhere)
    chunk.symlink_to(elsewhere)
    out = tmp_path / "out"
    opened_paths.clear()
    code, stdout, stderr = _invoke(STORE_COMMANDS[command](store, out))
    assert code == 3, (stdout, stderr)
    assert stderr == (
        f"error: {chunk}: is a symbolic link to {elsewhere}, outside the model folder "
        f"{store}; ckptmap follows links only inside it (copy the file into the folder)\n"
    )
    assert str(elsewhere) not in opened_paths
    assert not out.exists()


def test_a_store_folder_linked_out_of_the_store_is_refused(store: Path, tmp_path: Path) -> None:
    node = store / "ffm.embeddings"
    elsewhere = tmp_path / "zoo" / "embeddings-elsewhere"
    shutil.move(node, elsewhere)
    node.symlink_to(elsewhere)
    code, stdout, stderr = _invoke(["inspect", str(store)])
    assert code == 3, (stdout, stderr)
    assert f"{node}: is a symbolic link to {elsewhere}, outside the store {store}" in stderr


def test_a_store_node_linked_inside_the_store_is_read(store: Path) -> None:
    chunk = _first_file(_chunk(store))
    kept = store / "kept.bin"
    shutil.move(chunk, kept)
    chunk.symlink_to(os.path.relpath(kept, chunk.parent))
    code, stdout, stderr = _invoke(["inspect", str(store), "--tensor", "ffm/embeddings"])
    assert code == 0, (stdout, stderr)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_special_file_in_a_store_is_refused_without_a_hang(
    store: Path, kind: str, tmp_path: Path
) -> None:
    chunk = _first_file(_chunk(store))
    chunk.unlink()
    if kind == "fifo":
        os.mkfifo(chunk)
        detail = f"{chunk}: is a FIFO (named pipe); ckptmap reads only regular files"
    else:
        chunk.symlink_to("/dev/zero")
        detail = f"{chunk}: is a symbolic link to /dev/zero, outside the model folder"
    for args in (["inspect", str(store)], ["convert", "--old", str(store), "--to", "zarr3",
                                             "--out", str(tmp_path / "out")]):  # fmt: skip
        started = time.monotonic()
        run = _run(args)
        assert time.monotonic() - started < 15
        assert run.returncode == 3, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert detail in run.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", ["../outside", "ffm.embeddings/../../outside", "/tmp", ""])
def test_a_manifest_naming_a_node_outside_the_store_is_refused(
    store: Path, path: str, opened_paths: list[str]
) -> None:
    outside = store.parent / "outside"
    shutil.copytree(store / "beta1_power", outside)
    manifest = json.loads((store / "zarr.json").read_text())
    arrays = manifest["attributes"]["ckptmap"]["arrays"]
    entry = next(a for a in arrays if a["key"] == "beta1_power")
    entry["path"] = path
    (store / "zarr.json").write_text(json.dumps(manifest))
    opened_paths.clear()
    code, stdout, stderr = _invoke(["inspect", str(store)])
    assert code == 3, (stdout, stderr)
    assert stderr == (
        f"error: {store}/zarr.json: the manifest is missing or invalid (ValueError: the node "
        f"{path!r} of 'beta1_power' is not a name in the store; the store is damaged or was "
        "not written by `ckptmap convert`; convert again)\n"
    )
    assert not [p for p in opened_paths if p.startswith(str(outside))]


def test_tensorstore_still_rejects_dot_dot_in_a_file_path(store: Path) -> None:
    """The second line of defence: tensorstore's file driver refuses ``..`` (pinned)."""
    import tensorstore as ts

    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{store}/../outside/"}}
    with pytest.raises(ValueError, match="Invalid file path"):
        ts.open(spec, open=True, read=True).result()


# -- file:// URLs are local inputs ------------------------------------------------------------


def test_a_file_url_gets_the_local_checks(tmp_path: Path, opened_paths: list[str]) -> None:
    folder = tmp_path / "zoo" / "model"
    folder.parent.mkdir()
    shutil.copytree(FIXTURES / "ffm_v1", folder)
    secret = tmp_path / "zoo" / "secret.txt"
    secret.write_text("aws_secret_access_key = do-not-upload\n")
    asset = folder / f"{PREFIX}.assets" / "hash_filter_1"
    asset.unlink()
    asset.symlink_to("../../secret.txt")
    out = tmp_path / "out"
    opened_paths.clear()
    code, stdout, stderr = _invoke(
        ["remap", "--old", f"file://{folder}/", "--new-graph",
         f"file://{FIXTURES / 'ffm_v1' / 'graph.pbtxt'}", "--out", f"{out}/"]
    )  # fmt: skip
    assert code == 3, (stdout, stderr)
    assert f"{asset}: is a symbolic link to {secret}, outside the model folder" in stderr
    assert str(secret) not in opened_paths
    assert not out.exists()


def test_a_file_url_checkpoint_reads_as_the_local_one(tmp_path: Path) -> None:
    code, stdout, _ = _invoke(["inspect", f"file://{FIXTURES / 'ffm_v1'}/", "--json"])
    assert code == 0
    local_code, local, _ = _invoke(["inspect", str(FIXTURES / "ffm_v1"), "--json"])
    assert local_code == 0
    assert json.loads(stdout)["tensors"] == json.loads(local)["tensors"]
