"""The model folder is a trust boundary (docs/security.md).

A hostile checkpoint folder holds links out of itself and special files in
place of its files. Each command must refuse in one line (exit 3) or succeed
without reading anything outside the folder, and never hang. What the library
opens is recorded in-process (the tests run as root, so file modes prove
nothing): no recorded path may lie outside the folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import FIXTURES

from ckptmap.cli import main

PREFIX = "model.ckpt-100"
SECRET = b"aws_secret_access_key = do-not-upload\n"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(model folder, a secret file next to it) — the attacker's target."""
    folder = tmp_path / "zoo" / "model"
    folder.parent.mkdir()
    shutil.copytree(FIXTURES / "ffm_v1", folder)
    secret = tmp_path / "zoo" / "secret.txt"
    secret.write_bytes(SECRET)
    return folder, secret


def _asset(folder: Path) -> Path:
    return folder / f"{PREFIX}.assets" / "hash_filter_1"


def _shard(folder: Path) -> Path:
    return folder / f"{PREFIX}.data-00000-of-00001"


def _replace_with_link(path: Path, target: str | Path) -> None:
    path.unlink()
    path.symlink_to(target)


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _outside(opened: list[str], folder: Path, *allowed: Path) -> list[str]:
    home = os.path.realpath(folder)
    keep = [os.path.realpath(a) for a in allowed]
    return [
        p
        for p in opened
        if not (p == home or p.startswith(home + os.sep))
        and not any(p == k or p.startswith(k + os.sep) for k in keep)
        and not p.startswith((sys.prefix, sys.base_prefix, "/proc", "/dev/null"))
        and "site-packages" not in p
        and "/ckptmap/" not in p  # the package's own files (proto descriptors)
        and os.path.basename(p) not in ("pyproject.toml", "ckptmap.toml")  # the user's config
    ]


def _commands(folder: Path, out: Path) -> dict[str, list[str]]:
    graph = FIXTURES / "ffm_v1" / "graph.pbtxt"
    return {
        "inspect": ["inspect", str(folder)],
        "verify": ["inspect", str(folder), "--verify"],
        "check": ["check", "--old", str(folder), "--new-graph", str(graph)],
        "remap": ["remap", "--old", str(folder), "--new-graph", str(graph), "--out", f"{out}/"],
        "remap-link": [
            "remap", "--old", str(folder), "--new-graph", str(graph), "--out", f"{out}/", "--link",
            "--on-existing-assets", "link",
        ],
        "remap-memory": [
            "remap", "--old", str(folder), "--new-graph", str(graph), "--out", "memory://out/",
        ],
        "convert": ["convert", "--old", str(folder), "--to", "zarr3", "--out", str(out)],
    }  # fmt: skip


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


REFUSING = ["inspect", "verify", "remap", "remap-link", "remap-memory", "convert"]


@pytest.mark.parametrize("command", REFUSING)
def test_an_asset_linked_out_of_the_folder_is_refused(
    layout: tuple[Path, Path], tmp_path: Path, opened_paths: list[str], command: str
) -> None:
    folder, secret = layout
    _replace_with_link(_asset(folder), "../../secret.txt")
    out = tmp_path / "out"
    opened_paths.clear()  # the test's own copies above are not the library's reads
    code, stdout, stderr = _invoke(_commands(folder, out)[command])
    assert code == 3, (stdout, stderr)
    assert stderr == (
        f"error: {_asset(folder)}: is a symbolic link to {secret}, outside the model folder "
        f"{folder}; ckptmap follows links only inside it (copy the file into the folder)\n"
    )
    assert not out.exists()
    assert str(secret) not in opened_paths
    assert _outside(opened_paths, folder, tmp_path / "out") == []


def test_check_reads_no_asset(layout: tuple[Path, Path], opened_paths: list[str]) -> None:
    """check reads the index and state file only: the hostile asset is never touched."""
    folder, secret = layout
    _replace_with_link(_asset(folder), "../../secret.txt")
    opened_paths.clear()
    code, _, _ = _invoke(_commands(folder, folder / "unused")["check"])
    assert code in (0, 1, 3)
    assert str(secret) not in opened_paths
    assert _outside(opened_paths, folder, FIXTURES / "ffm_v1" / "graph.pbtxt") == []


def test_an_asset_linked_inside_the_folder_is_copied_as_a_file(
    layout: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, _ = layout
    inside = folder / "kept_elsewhere.bin"
    shutil.copyfile(_asset(folder), inside)
    _replace_with_link(_asset(folder), "../kept_elsewhere.bin")
    out = tmp_path / "out"
    code, stdout, stderr = _invoke(_commands(folder, out)["remap"])
    assert code == 0, (stdout, stderr)
    copied = next(out.glob("*.assets")) / "hash_filter_1"
    assert not copied.is_symlink()
    assert copied.read_bytes() == inside.read_bytes()
    assert os.stat(copied).st_ino != os.stat(inside).st_ino  # copied by default, not linked


def test_link_mode_never_links_a_link(layout: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = layout
    inside = folder / "kept_elsewhere.bin"
    shutil.copyfile(_asset(folder), inside)
    _replace_with_link(_asset(folder), "../kept_elsewhere.bin")
    out = tmp_path / "out"
    code, stdout, stderr = _invoke(_commands(folder, out)["remap-link"])
    assert code == 0, (stdout, stderr)
    linked = next(out.glob("*.assets")) / "hash_filter_1"
    assert not linked.is_symlink()
    assert linked.read_bytes() == inside.read_bytes()


@pytest.mark.parametrize("command", ["verify", "remap", "convert"])
def test_a_data_shard_linked_out_of_the_folder_is_refused(
    layout: tuple[Path, Path], tmp_path: Path, opened_paths: list[str], command: str
) -> None:
    folder, _ = layout
    elsewhere = tmp_path / "elsewhere.data"
    shutil.copyfile(_shard(folder), elsewhere)
    _replace_with_link(_shard(folder), elsewhere)
    out = tmp_path / "out"
    opened_paths.clear()  # the test's own copies above are not the library's reads
    code, stdout, stderr = _invoke(_commands(folder, out)[command])
    assert code == 3, (stdout, stderr)
    assert f"{_shard(folder)}: is a symbolic link to {elsewhere}, outside the model folder" in (
        stderr
    )
    assert str(elsewhere) not in opened_paths
    assert not out.exists()


@pytest.mark.parametrize("command", ["verify", "remap", "convert"])
def test_a_data_shard_linked_inside_the_folder_is_read(
    layout: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    folder, _ = layout
    (folder / "shards").mkdir()
    moved = folder / "shards" / _shard(folder).name
    shutil.move(_shard(folder), moved)
    _shard(folder).symlink_to(Path("shards") / moved.name)
    code, stdout, stderr = _invoke(_commands(folder, tmp_path / "out")[command])
    assert code == 0, (stdout, stderr)


def _special(kind: str, path: Path) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        here = os.getcwd()
        os.chdir(path.parent)  # a relative name: AF_UNIX paths are short
        try:
            server.bind(path.name)  # left bound for the test's life; the file is the socket
        finally:
            os.chdir(here)
        _SOCKETS.append(server)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to("no-such-file")


_SOCKETS: list[socket.socket] = []
SPECIAL = {
    "fifo": "is a FIFO (named pipe); ckptmap reads only regular files of a checkpoint",
    "socket": "is a socket; ckptmap reads only regular files of a checkpoint",
    "dev-zero": "is a symbolic link to /dev/zero, outside the model folder",
    "dangling": "is a dangling symbolic link (to no-such-file)",
}


@pytest.mark.parametrize("kind", list(SPECIAL))
@pytest.mark.parametrize("where", ["shard", "asset", "index"])
def test_special_files_are_refused_without_a_hang(
    layout: tuple[Path, Path], tmp_path: Path, kind: str, where: str
) -> None:
    """Each command in a subprocess with a timeout: a hang fails the test, never blocks it."""
    folder, _ = layout
    path = {
        "shard": _shard(folder),
        "asset": _asset(folder),
        "index": folder / f"{PREFIX}.index",
    }[where]
    _special(kind, path)
    out = tmp_path / "out"
    commands = _commands(folder, out)
    names = ["verify", "remap", "remap-memory", "convert"]
    names += ["inspect"] if where != "shard" else []
    names += ["check"] if where == "index" else []
    for name in names:
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "ckptmap", *commands[name]],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        took = time.monotonic() - started
        assert run.returncode == 3, (name, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, (name, run.stderr)
        assert "Traceback" not in run.stderr
        if where == "index" and kind == "dangling":
            assert str(path) in lines[0], (name, lines[0])  # not a checkpoint: named
        else:
            assert f"{path}: {SPECIAL[kind]}" in lines[0], (name, lines[0])
        assert took < 15, (name, took)
        assert not out.exists()


@pytest.mark.parametrize("kind", list(SPECIAL))
@pytest.mark.parametrize("where", ["shard", "asset"])
def test_check_never_opens_a_special_shard_or_asset(
    layout: tuple[Path, Path], kind: str, where: str
) -> None:
    """check reads no tensor bytes, but looks at every data file and asset with
    ``lstat`` (a restore would read them): a special one is refused by name, unopened,
    so a FIFO cannot even slow it down."""
    folder, _ = layout
    _special(kind, _shard(folder) if where == "shard" else _asset(folder))
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "ckptmap", *_commands(folder, folder / "unused")["check"]],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    path = _shard(folder) if where == "shard" else _asset(folder)
    assert run.returncode == 3, run.stderr
    assert f"{path}: {SPECIAL[kind]}" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-link"])
def test_a_special_file_as_the_new_graph_is_refused_without_a_hang(
    layout: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    """A graph or spec the user names may be a link anywhere, but only to a regular file."""
    folder, _ = layout
    graph = tmp_path / "graph.pbtxt"
    if kind == "fifo":
        os.mkfifo(graph)
        detail = "a FIFO (named pipe); ckptmap reads only regular files"
    else:
        graph.symlink_to("/dev/zero")
        detail = "links to a character device; ckptmap reads only regular files"
    for new in (graph, tmp_path / "spec.json"):
        if new != graph:
            new.symlink_to(graph)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "ckptmap",
                "check",
                "--old",
                str(folder),
                "--new-graph",
                str(new),
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert run.returncode == 3, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert detail in run.stderr


def test_a_graph_linked_from_elsewhere_is_read(layout: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = layout
    graph = tmp_path / "graph.pbtxt"
    graph.symlink_to(FIXTURES / "ffm_v1" / "graph.pbtxt")  # the user named it: followed
    code, stdout, stderr = _invoke(["check", "--old", str(folder), "--new-graph", str(graph)])
    assert code == 0, (stdout, stderr)
