"""Crash safety of the writers: staging folder, fsync, rename, cleanup, output errors.

Some tests run a writer in a child process and kill it (SIGKILL) mid-write or
mid-commit, or limit its file size (RLIMIT_FSIZE) so that writes fail with EFBIG.
The commit protocol itself is tested step by step in tests/writers/test_commit.py
and tests/writers/test_faults.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckptmap.cli._output import exit_code_for
from ckptmap.errors import MissingInputError, OutputError
from ckptmap.readers import open_checkpoint
from ckptmap.writers import BundleWriter, write_state_file
from ckptmap.writers._atomic import (
    TEMP_MARKER,
    atomic_write_bytes,
    make_folders,
    output_error,
    remove_empty_folders,
    temp_path,
)
from ckptmap.writers.commit import FAULT_ENV, STAGING_PREFIX, pending_commits, recover_folder

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _child(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    code = textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _kill_after(proc: subprocess.Popen[str], marker: str) -> None:
    """Wait until the child prints ``marker``, then SIGKILL it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == marker:
            break
    else:
        _, err = proc.communicate()
        pytest.fail(f"child ended before {marker!r}: {err}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# -- killed while writing --------------------------------------------------------------------------

_SLOW_WRITER = """
import sys, time
import numpy as np
from ckptmap.formats.crc import unmask_crc
from ckptmap.readers import open_checkpoint
from ckptmap.writers.commit import FAULT_ENV, STAGING_PREFIX, pending_commits, recover_folder
from ckptmap.writers import BundleWriter

src, out = sys.argv[1], sys.argv[2]
with open_checkpoint(src) as ckpt, BundleWriter(out, num_shards=2, force=True) as writer:
    for key in ckpt.keys():
        e = ckpt.entry(key)
        if not e.slices:
            writer.add_copy(key, ckpt.shard_path(e.shard_id), e.offset, e.size,
                            dtype=e.dtype, shape=e.shape, expected_crc32c=unmask_crc(e.crc32c))
    for i in range(64):  # 64 MiB in all
        writer.add_array(f"big/{i}", np.full(256 * 1024, i, np.float32))
        if i == 8:
            print("writing", flush=True)
            time.sleep(120)
    writer.commit()
"""


def test_sigkill_while_writing_leaves_old_checkpoint_and_source_untouched(
    fixture_copy: Any,
) -> None:
    source = fixture_copy("ffm_v1")
    target = fixture_copy("ffm_v1_ps2")  # an older checkpoint at the output prefix
    src_before, target_before = _digests(source), _digests(target)
    names_before = _files(target)
    prefix = target / "model.ckpt-100"
    proc = _child(_SLOW_WRITER, str(source / "model.ckpt-100"), str(prefix))
    _kill_after(proc, "writing")
    leftovers = sorted(set(_files(target)) - set(names_before))
    assert len(leftovers) == 1  # the child was really mid-write: its staging folder remains
    assert leftovers[0].startswith(STAGING_PREFIX)
    staged = _files(target / leftovers[0])
    assert all(TEMP_MARKER in n for n in staged if not n.startswith("."))
    assert _digests(source) == src_before
    assert {k: v for k, v in _digests(target).items() if k in target_before} == target_before
    with open_checkpoint(prefix) as ckpt:  # the old checkpoint and state file still work
        assert ckpt.num_shards == 2
    with open_checkpoint(target) as ckpt:
        assert ckpt.prefix == prefix
    [found] = pending_commits(target)
    assert (found.live, found.phase, found.prefix) == (False, "writing", "model.ckpt-100")
    recover_folder(target)  # what the next write into the folder does first
    assert _files(target) == names_before
    assert _digests(target) == target_before


_THREE_SHARDS = """
import sys
import numpy as np
from ckptmap.writers import BundleWriter

with BundleWriter(sys.argv[1], num_shards=3) as writer:
    for i in range(6):
        writer.add_array(f"t{i}", np.full(1000, i, np.int64))
    writer.commit()
"""


def test_sigkill_before_the_index_is_in_place_leaves_no_checkpoint(fixture_copy: Any) -> None:
    folder = fixture_copy("ffm_v1")
    state_before = (folder / "checkpoint").read_bytes()
    names_before = _files(folder)
    prefix = folder / "model.ckpt-200"
    proc = _child(_THREE_SHARDS, str(prefix), env={FAULT_ENV: "place-data#3"})
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    names = _files(folder)
    assert "model.ckpt-200.index" not in names
    # the data shards were renamed already; without an index they are not a checkpoint,
    # and the journal in the staging folder names them
    assert [n for n in names if n.startswith("model.ckpt-200.data-")] == [
        f"model.ckpt-200.data-0000{i}-of-00003" for i in range(3)
    ]
    with pytest.raises(MissingInputError):
        open_checkpoint(prefix)
    assert (folder / "checkpoint").read_bytes() == state_before
    [found] = pending_commits(folder)
    assert (found.phase, found.live) == ("replacing", False)
    recover_folder(folder)  # rolled back: the shards go, with the staging folder
    assert _files(folder) == names_before


# -- out of space (RLIMIT_FSIZE) -------------------------------------------------------------------

_LIMITED_WRITER = """
import resource, signal, sys
import numpy as np
from ckptmap.dtypes import BY_NAME
from ckptmap.errors import OutputError
from ckptmap.writers import BundleWriter

mode, out, src = sys.argv[1], sys.argv[2], sys.argv[3]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 18, 1 << 18))  # 256 KiB
try:
    with BundleWriter(out) as writer:
        if mode == "array":
            writer.add_array("a", np.zeros(1 << 20, np.float32))
        elif mode == "copy":
            writer.add_copy("c", src, 0, 3 << 20, dtype=BY_NAME["uint8"], shape=(3 << 20,))
        else:  # an index larger than the limit
            for i in range(20000):
                writer.add_array(f"scalars/variable_number_{i:06d}", np.float32(i))
        writer.commit()
except OutputError as err:
    print(str(err))
    sys.exit(4)
"""


@pytest.mark.parametrize("mode", ["array", "copy", "index"])
def test_file_size_limit_gives_output_error_and_no_leftovers(mode: str, tmp_path: Path) -> None:
    src = tmp_path / "source.bin"
    src.write_bytes(np.random.default_rng(0).bytes(3 << 20))
    out = tmp_path / "out"
    proc = _child(_LIMITED_WRITER, mode, str(out / "ckpt"), str(src))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 4, stderr
    lines = stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{out / 'ckpt'}: ")
    assert "file too large" in lines[0]
    assert _files(tmp_path) == ["source.bin"]  # not even the output folder is left


def test_disk_full_at_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with BundleWriter(tmp_path / "c", num_shards=2) as writer:
        writer.add_array("x", np.zeros(10))
        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(OutputError) as info:
            writer.commit()
    expected = "cannot write the checkpoint: no space left on the device; free some space"
    assert str(info.value) == f"{tmp_path / 'c'}: {expected} or write elsewhere"
    assert exit_code_for(info.value) == 4
    assert _files(tmp_path) == []


def test_failed_rename_removes_published_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.link

    def link(src: Any, dst: Any) -> None:
        if str(dst).endswith(".index"):
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    with BundleWriter(tmp_path / "c", num_shards=2) as writer:
        writer.add_array("x", np.zeros(10))
        monkeypatch.setattr(os, "link", link)
        with pytest.raises(OutputError, match="cannot put the checkpoint in place"):
            writer.commit()
    assert _files(tmp_path) == []


# -- unwritable places (we may be root, so permissions alone do not stop us) -----------------------


def _assert_unwritable(prefix: Path | str) -> None:
    with pytest.raises(OutputError) as info:
        BundleWriter(prefix)
    assert "\n" not in str(info.value)
    assert exit_code_for(info.value) == 4


def test_output_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    _assert_unwritable(tmp_path / "file" / "ckpt")
    _assert_unwritable(tmp_path / "file" / "sub" / "ckpt")
    with pytest.raises(OutputError, match="not an existing folder"):
        write_state_file(tmp_path / "file", tmp_path / "file" / "ckpt")
    assert _files(tmp_path) == ["file"]


@pytest.mark.parametrize("folder", ["/proc", "/proc/ckptmap-test-folder", "/sys"])
def test_output_in_a_pseudo_file_system(folder: str) -> None:
    if not os.path.isdir(os.path.dirname(folder) or folder):
        pytest.skip(f"{folder} is not available here")
    _assert_unwritable(Path(folder) / f"ckptmap-test-{os.getpid()}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        _assert_unwritable(folder / "ckpt")
    finally:
        folder.chmod(0o755)


# -- the helpers -----------------------------------------------------------------------------------


def test_atomic_write_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _files(tmp_path) == ["f"]


def test_atomic_write_failure_keeps_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def broken(src: Any, dst: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OutputError, match="read-only file system"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _files(tmp_path) == ["f"]


def test_temp_names_never_look_like_checkpoint_files(tmp_path: Path) -> None:
    name = temp_path(tmp_path / "model.ckpt-7", "abc", "-index").name
    assert name == "model.ckpt-7.ckptmap-tmp-abc-index"
    with BundleWriter(tmp_path / "m", num_shards=2) as writer:
        [staging] = _files(tmp_path)  # everything goes into one hidden staging folder
        assert staging.startswith(STAGING_PREFIX)
        names = [n for n in _files(tmp_path / staging) if not n.startswith(".")]
        assert len(names) == 2
        assert all(n.startswith("m" + TEMP_MARKER) for n in names)
        assert not any(n.endswith(".index") or "-of-" in n for n in names)
        writer.abort()
    assert _files(tmp_path) == []


def test_output_error_messages() -> None:
    err = output_error("/x/y", OSError(errno.EACCES, "Permission denied"))
    hint = "permission denied; check the folder's permissions or write elsewhere"
    assert str(err) == f"/x/y: cannot write: {hint}"
    err = output_error("/x/y", OSError(errno.EIO, "Input/output error"), "cannot sync")
    assert str(err) == "/x/y: cannot sync: Input/output error"


def test_make_and_remove_folders(tmp_path: Path) -> None:
    created = make_folders(tmp_path / "a" / "b" / "c")
    assert created == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    (tmp_path / "a" / "keep").write_text("x")
    remove_empty_folders(created)
    assert _files(tmp_path / "a") == ["keep"]
    assert make_folders(tmp_path) == []
