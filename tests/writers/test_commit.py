"""The commit protocol (ckptmap/writers/commit.py), in process.

Failures are injected with the fault hook (an exception at a step boundary);
kills of real processes are in tests/writers/test_faults.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckptmap.errors import OutputError, OutputExistsError, UsageError
from ckptmap.readers import open_checkpoint
from ckptmap.writers import BundleWriter, CommitResult
from ckptmap.writers.commit import (
    STAGING_PREFIX,
    STEPS,
    is_staging_name,
    open_commit,
    pending_commits,
    recover_folder,
    set_fault_hook,
)


class Injected(Exception):
    """The failure the hook raises."""


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def hook() -> Iterator[Callable[[Callable[[str], None] | None], None]]:
    yield set_fault_hook
    set_fault_hook(None)


def _write(
    prefix: str | Path,
    *,
    shards: int = 1,
    force: bool = False,
    value: int = 7,
    asset: bool = True,
    state: bool = True,
) -> CommitResult:
    with BundleWriter(prefix, num_shards=shards, force=force) as writer:
        for i in range(4):
            writer.add_array(f"t{i}", np.full(100, value + i, np.int32))
        if asset:
            writer.output.add_bytes(f"{writer.output.name}.assets/vocab.txt", b"v%d" % value)
        if state:
            writer.output.record_latest()
        return writer.commit()


def _assert_checkpoint(prefix: Path, value: int, shards: int) -> None:
    with open_checkpoint(prefix) as ckpt:
        ckpt.verify()
        assert ckpt.num_shards == shards
        for i in range(4):
            assert ckpt.read(f"t{i}").tolist() == [value + i] * 100


# -- the happy paths -------------------------------------------------------------------------------


def test_files_are_placed_in_commit_order(tmp_path: Path) -> None:
    result = _write(tmp_path / "out" / "m", shards=2)
    names = [p.relative_to(tmp_path / "out").as_posix() for p in result.files]
    assert names == [
        "m.data-00000-of-00002",
        "m.data-00001-of-00002",
        "m.assets/vocab.txt",
        "m.index",
        "checkpoint",
    ]
    assert _files(tmp_path / "out") == sorted(names)
    _assert_checkpoint(tmp_path / "out" / "m", 7, 2)
    with open_checkpoint(tmp_path / "out") as ckpt:  # the state file names it
        assert ckpt.prefix == tmp_path / "out" / "m"


@pytest.mark.parametrize("new_shards", [1, 3])
def test_force_replaces_old_and_removes_stale_shards(tmp_path: Path, new_shards: int) -> None:
    _write(tmp_path / "m", shards=1, value=1)
    (tmp_path / "other.txt").write_text("not ours")
    _write(tmp_path / "m", shards=new_shards, force=True, value=2)
    _assert_checkpoint(tmp_path / "m", 2, new_shards)
    assert _files(tmp_path) == sorted(
        [f"m.data-0000{i}-of-0000{new_shards}" for i in range(new_shards)]
        + ["m.assets/vocab.txt", "m.index", "checkpoint", "other.txt"]
    )
    assert (tmp_path / "m.assets" / "vocab.txt").read_bytes() == b"v2"


def test_without_force_an_existing_asset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.assets").mkdir()
    (tmp_path / "m.assets" / "vocab.txt").write_text("user's")
    with pytest.raises(OutputExistsError, match="asset exists; pass --force"):
        _write(tmp_path / "m")
    assert _files(tmp_path) == ["m.assets/vocab.txt"]


def test_a_checkpoint_that_appears_while_writing_is_not_replaced(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "m") as writer:
        writer.add_array("x", np.zeros(3))
        (tmp_path / "m.index").write_bytes(b"someone else's")
        with pytest.raises(OutputExistsError, match="appeared at this prefix while writing"):
            writer.commit()
    assert _files(tmp_path) == ["m.index"]


def test_the_index_is_never_placed_over_a_file_that_appeared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final check is the hard link of the index, not the earlier look (a TF process)."""
    real = os.link

    def link(src: Any, dst: Any) -> None:
        if str(dst).endswith("m.index"):
            Path(dst).write_bytes(b"written by TensorFlow meanwhile")
        real(src, dst)

    with BundleWriter(tmp_path / "m", num_shards=2) as writer:
        writer.add_array("x", np.zeros(3))
        monkeypatch.setattr(os, "link", link)
        with pytest.raises(OutputExistsError, match="appeared while writing"):
            writer.commit()
    assert _files(tmp_path) == ["m.index"]  # its data shards went back and were removed
    assert (tmp_path / "m.index").read_bytes() == b"written by TensorFlow meanwhile"


def test_a_running_writer_of_the_same_prefix_is_refused(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "m") as first:
        for force in (False, True):
            with pytest.raises(OutputExistsError) as caught:
                BundleWriter(tmp_path / "m", force=force)
            assert str(caught.value).startswith(f"{tmp_path / 'm'}: is being written by another")
        with BundleWriter(tmp_path / "other") as second:  # another prefix is fine
            second.add_array("y", np.ones(2))
            second.commit()
        first.add_array("x", np.zeros(3))
        first.commit()
    assert [p.live for p in pending_commits(tmp_path)] == []
    _ = _files(tmp_path)


def test_prefix_must_name_files(tmp_path: Path) -> None:
    for bad in ("", f"{tmp_path}/", str(tmp_path), "memory://x/"):
        with pytest.raises(UsageError):
            open_commit(bad)
    with open_commit(tmp_path / "m") as output, pytest.raises(UsageError):
        output.stage_path(f"{STAGING_PREFIX}x/y")
    with open_commit(tmp_path / "m") as output, pytest.raises(UsageError):
        output.stage_path("../escape")
    assert _files(tmp_path) == []


def test_staging_names() -> None:
    assert is_staging_name(f"{STAGING_PREFIX}abc")
    assert is_staging_name(f"{STAGING_PREFIX}abc/m.index")
    assert not is_staging_name("m.index")


# -- failures at every step ------------------------------------------------------------------------


def _labels(tmp_path: Path, hook: Any, **kwargs: Any) -> list[str]:
    """The step boundaries one commit passes (a dry run in another folder)."""
    seen: list[str] = []
    hook(seen.append)
    folder = tmp_path / "dry"
    if kwargs.get("force"):
        _write(folder / "m", shards=1, value=1)
    seen.clear()
    _write(folder / "m", **kwargs)
    hook(None)
    return seen


@pytest.mark.parametrize(("force", "shards"), [(False, 1), (False, 3), (True, 1), (True, 3)])
def test_a_failure_at_any_step_leaves_old_or_new(
    tmp_path: Path, hook: Any, force: bool, shards: int
) -> None:
    labels = _labels(tmp_path, hook, force=force, shards=shards, value=2)
    assert [label.split("#")[0] for label in labels][0] == "staging"
    assert {label.split("#")[0] for label in labels} <= set(STEPS)
    if force and shards == 1:
        assert "aside#1" in labels  # same names: old files move aside
    for label in labels:
        folder = tmp_path / label.replace("#", "_")
        if force:
            _write(folder / "m", shards=1, value=1)
        before = _digests(folder)

        def fail(reached: str, label: str = label) -> None:
            if reached == label:
                raise Injected(label)

        hook(fail)
        with pytest.raises(Injected):
            _write(folder / "m", force=force, shards=shards, value=2)
        hook(None)
        past_commit = labels.index(label) >= labels.index("place-index#1")
        if past_commit:
            _assert_checkpoint(folder / "m", 2, shards)
        elif force:
            assert _digests(folder) == before, label  # the old one, byte for byte
        else:
            assert not folder.exists() or _files(folder) == [], label
        recover_folder(folder) if folder.exists() else None
        if past_commit:  # rolled forward: the state file names the new checkpoint
            _assert_checkpoint(folder / "m", 2, shards)
            with open_checkpoint(folder) as ckpt:
                assert ckpt.prefix == folder / "m"
        assert not [n for n in _files(folder) if is_staging_name(n)] if folder.exists() else True


def test_a_failed_undo_leaves_the_journal_for_the_next_write(
    tmp_path: Path, hook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "m", value=1)
    before = _digests(tmp_path)
    real = os.rename
    broken = {"on": False}

    def fail(label: str) -> None:
        if label == "place-data#1":
            broken["on"] = True
            raise Injected(label)

    def rename(src: Any, dst: Any) -> None:
        if broken["on"]:
            raise OSError(5, "Input/output error")
        real(src, dst)

    hook(fail)
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(Injected):
        _write(tmp_path / "m", force=True, value=2)
    hook(None)
    monkeypatch.setattr(os, "rename", real)
    [found] = pending_commits(tmp_path)
    assert (found.phase, found.live) == ("replacing", False)
    assert "rolls it back" in found.outcome
    _write(tmp_path / "n", value=3, state=False)  # the next write rolls it back first
    assert {k: v for k, v in _digests(tmp_path).items() if k in before} == before
    _assert_checkpoint(tmp_path / "m", 1, 1)


def test_the_source_may_be_the_output(tmp_path: Path) -> None:
    """Old files are renamed, never rewritten: a writer reading them keeps reading them."""
    _write(tmp_path / "m", value=1)
    with open_checkpoint(tmp_path / "m") as old, BundleWriter(tmp_path / "m", force=True) as w:
        keys = old.keys()
        for key in keys:
            w.add_array(key, old.read(key) * 2)
        w.commit()
    with open_checkpoint(tmp_path / "m") as new:
        assert new.read("t0").tolist() == [2] * 100


# -- URLs ------------------------------------------------------------------------------------------


def _store_keys(url: str) -> list[str]:
    from ckptmap.storage import open_location

    return open_location(url).list() or []


def test_memory_url_commit_order_and_journal(hook: Any) -> None:
    seen: list[str] = []
    keys_at: dict[str, list[str]] = {}

    def record(label: str) -> None:
        seen.append(label)
        keys_at[label] = _store_keys("memory://commit-order/")

    hook(record)
    result = _write("memory://commit-order/m", shards=2)
    hook(None)
    assert seen == [
        "staging#1",
        "journal#1", "upload#1",  # the asset, staged complete: uploaded at once
        "journal#2", "upload#2", "upload#3",  # each shard as the writer finishes it
        "staged#1", "journal#3", "place-data#1", "place-data#2", "place-asset#1",
        "place-index#1", "clean#1", "place-state#1", "done#1",
    ]  # fmt: skip
    assert any(k.startswith(STAGING_PREFIX) for k in keys_at["journal#1"])
    assert "m.index" not in keys_at["place-asset#1"]
    assert _store_keys("memory://commit-order/") == sorted(
        ["m.data-00000-of-00002", "m.data-00001-of-00002", "m.assets/vocab.txt", "m.index",
         "checkpoint"]
    )  # fmt: skip
    assert str(result.index_path).endswith("m.index")
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"{STAGING_PREFIX}*/.owner"))


@pytest.mark.parametrize("force", [False, True])
def test_memory_url_failure_at_any_step(hook: Any, force: bool) -> None:
    base = f"memory://faults-{force}"
    seen: list[str] = []
    hook(seen.append)
    if force:
        _write(f"{base}-dry/m", shards=3, value=1, asset=False)
    seen.clear()
    _write(f"{base}-dry/m", shards=1, force=force, value=2)
    hook(None)
    for number, label in enumerate(seen):
        url = f"{base}-{number}/"
        if force:  # an old checkpoint of another shard count: no name clashes
            _write(url + "m", shards=3, value=1, asset=False)

        def fail(reached: str, label: str = label) -> None:
            if reached == label:
                raise Injected(label)

        hook(fail)
        with pytest.raises(Injected):
            _write(url + "m", shards=1, force=force, value=2)
        hook(None)
        keys = _store_keys(url)
        journals = [k for k in keys if k.startswith(STAGING_PREFIX)]
        if seen.index(label) >= seen.index("place-index#1"):
            with open_checkpoint(url + "m") as ckpt:
                assert ckpt.read("t0").tolist() == [2] * 100
            if label != "done#1":  # the journal object marks an unfinished commit
                assert [p.prefix for p in pending_commits(url)] == ["m"]
        else:
            assert journals == [], label  # a failure deletes what was uploaded
            if force:
                with open_checkpoint(url + "m") as ckpt:  # the old one is still whole
                    assert ckpt.num_shards == 3
                    assert ckpt.read("t0").tolist() == [1] * 100
            else:
                assert keys == [], label
        _write(url + "m", shards=2, force=True, value=3, asset=False)  # the next write cleans up
        assert not [k for k in _store_keys(url) if k.startswith(STAGING_PREFIX)]
        assert not [k for k in _store_keys(url) if "-of-00001" in k or "-of-00003" in k]


def test_url_force_with_the_same_names_deletes_the_old_index_first(hook: Any) -> None:
    """A store cannot rename: new data over old names must never sit under the old index."""
    _write("memory://same-names/m", shards=1, value=1)
    keys_at: dict[str, list[str]] = {}
    hook(lambda label: keys_at.setdefault(label, _store_keys("memory://same-names/")))
    _write("memory://same-names/m", shards=1, force=True, value=2)
    hook(None)
    assert "m.index" in keys_at["journal#1"]
    assert "m.index" not in keys_at["aside#1"]
    assert "m.index" not in keys_at["place-data#1"]
    with open_checkpoint("memory://same-names/m") as ckpt:
        assert ckpt.read("t0").tolist() == [2] * 100


def test_url_upload_failure_deletes_what_was_written(monkeypatch: pytest.MonkeyPatch) -> None:
    from ckptmap.storage import KvLocation

    real = KvLocation.write

    def write(self: KvLocation, name: str, data: bytes | memoryview) -> None:
        if name.endswith(".index"):
            raise OutputError(f"{self.where(name)}: cannot write (injected)")
        real(self, name, data)

    monkeypatch.setattr(KvLocation, "write", write)
    with pytest.raises(OutputError) as caught:
        _write("memory://upload-fails/m", shards=2)
    assert str(caught.value) == (
        "memory://upload-fails/m.index: cannot write (injected) (nothing was committed: "
        "the 3 file(s) written before were deleted again)"
    )  # two shards and the asset
    assert _store_keys("memory://upload-fails/") == []  # the state file was never written


# -- a whole folder (a zarr store) -----------------------------------------------------------------


def _store(output: Any, value: str) -> None:
    (output.stage_prefix / "zarr.json").write_text(value)
    (output.stage_prefix / "a" / "c").mkdir(parents=True)
    (output.stage_prefix / "a" / "c" / "0").write_text(value)


def _replace_store(target: Path, value: str) -> None:
    with open_commit(target, whole_folder=True, force=True) as output:
        _store(output, value)
        output.commit()


def test_a_whole_folder_is_renamed_into_place(tmp_path: Path, hook: Any) -> None:
    target = tmp_path / "out" / "store.zarr"
    with open_commit(target, whole_folder=True) as output:
        _store(output, "one")
        assert output.commit() == ("store.zarr",)
    assert _files(tmp_path / "out") == ["store.zarr/a/c/0", "store.zarr/zarr.json"]
    with pytest.raises(OutputExistsError, match="already exists \\(pass --force"):
        open_commit(target, whole_folder=True)
    seen: list[str] = []
    hook(seen.append)
    _replace_store(target, "two")
    hook(None)
    assert (target / "zarr.json").read_text() == "two"
    assert "aside#1" in seen
    for label in seen:

        def fail(reached: str, label: str = label) -> None:
            if reached == label:
                raise Injected(label)

        hook(fail)
        with pytest.raises(Injected):
            _replace_store(target, label)
        hook(None)
        recover_folder(tmp_path / "out")
        expected = label if seen.index(label) >= seen.index("place-asset#1") else "two"
        assert (target / "zarr.json").read_text() == expected, label
        assert _files(tmp_path / "out") == ["store.zarr/a/c/0", "store.zarr/zarr.json"]
        _replace_store(target, "two")
