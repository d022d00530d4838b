"""Writes to s3:// and gs:// on real local servers: uploads start as files complete.

``remap --out URL`` uploads each data shard as the writer finishes it (and an
asset as soon as it is staged), before the commit, the index only after every
one is in the store, the state file last (ckptmap/writers/_url_commit.py). The
order is checked with the commit's step hook and the local staging folder, not
with timing. A SIGKILL at every step leaves no index of the new checkpoint (or
the old checkpoint) until the index is written, and the next run cleans up.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.readers import open_checkpoint
from ckptmap.storage import KvLocation
from ckptmap.writers.commit import (
    FAULT_ENV,
    FAULT_LOG_ENV,
    STAGING_PREFIX,
    pending_commits,
    set_fault_hook,
)

OLD = FIXTURES / "ffm_v1_ps2"
GRAPH = FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
PREFIX = "model.ckpt-100"
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def remap_args(out: str) -> list[str]:
    return ["remap", "--old", str(OLD), "--new-graph", str(GRAPH), "--out", out, "--rule", RULE]


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def objects(url: str) -> dict[str, bytes]:
    location = KvLocation(url)
    return {name: location.read_all(name) for name in location.list() or []}


def _staged_names(tmp: Path) -> set[str]:
    """The final names in this run's staging folder under ``tmp`` (temp names end in -tmp-...)."""
    return {
        p.relative_to(folder).as_posix()
        for folder in tmp.glob(f"{STAGING_PREFIX}*")
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and ".ckptmap-tmp-" not in p.name
    }


def _assert_local_bytes(out: str, local: Path, *options: str) -> None:
    """The objects at ``out`` are the files a local remap with ``options`` writes."""
    assert run(*remap_args(f"{local}/"), *options).exit_code == 0
    uploaded = objects(out)
    assert uploaded.keys() == files(local).keys()
    for name, data in files(local).items():
        if name != "checkpoint":  # names the checkpoint of its own folder
            assert uploaded[name] == data, name


def _remap_watched(record: Callable[[str], None], out: str, *options: str) -> None:
    """Remap into ``out`` with ``record`` called at every commit step; it must succeed."""
    set_fault_hook(record)
    try:
        result = run(*remap_args(out), *options)
    finally:
        set_fault_hook(None)
    assert result.exit_code == 0, result.stderr


@pytest.fixture
def local_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR for this test (where URL outputs are staged)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_remap_uploads_each_shard_as_the_writer_finishes_it(
    bucket_url: str, tmp_path: Path, local_tmp: Path
) -> None:
    out = f"{bucket_url}/remapped/"
    seen: list[tuple[str, set[str], set[str]]] = []  # (step, staged final names, stored keys)

    def record(label: str) -> None:
        seen.append((label, _staged_names(local_tmp), set(KvLocation(out).list() or [])))

    _remap_watched(record, out, "--shards", "3")
    labels = [label for label, _, _ in seen]
    staged = labels.index("staged#1")
    shards = [f"{PREFIX}.data-{i:05d}-of-00003" for i in range(3)]
    # the first shard's upload starts while the last shard is not finished yet
    first = next(
        n
        for n, (label, names, _) in enumerate(seen)
        if shards[0] in names and label.startswith("upload#")
    )
    assert labels[first - 1].startswith("journal#"), labels  # which names the shards first
    assert shards[2] not in seen[first][1], labels
    assert first < staged
    uploads = [label for label in labels[:staged] if label.startswith("upload#")]
    assert len(uploads) >= 3  # every shard (and each asset) before the commit
    # nothing is visible at the prefix before the index, and the index only after the data
    for label, _, stored in seen[: labels.index("place-index#1")]:
        assert f"{PREFIX}.index" not in stored, label
    assert set(shards) <= seen[labels.index("place-index#1")][2]
    assert not _staged_names(local_tmp)  # the staging folder is gone
    _assert_local_bytes(out, tmp_path / "local", "--shards", "3")


def test_shards_of_a_size_go_up_one_by_one_while_the_next_is_written(
    bucket_url: str, tmp_path: Path, local_tmp: Path
) -> None:
    """--shard-size: shard k is uploaded before shard k+1 is begun (so before it is full)."""
    out = f"{bucket_url}/in-turn/"
    seen: list[tuple[str, set[str], int]] = []  # (step, staged final names, data files begun)

    def record(label: str) -> None:
        begun = [
            p
            for p in local_tmp.glob(f"{STAGING_PREFIX}*/*")
            if ".data-" in p.name or ".ckptmap-tmp-" in p.name and "-data-" in p.name
        ]
        seen.append((label, _staged_names(local_tmp), len(begun)))

    _remap_watched(record, out, "--shard-size", "30KiB")
    shards = [f"{PREFIX}.data-{i:05d}-of-00003" for i in range(3)]
    uploads = [(names, begun) for label, names, begun in seen if label.startswith("upload#")]
    for k in (0, 1):  # the first upload step that sees shard k staged is shard k's own
        names, begun = next((names, begun) for names, begun in uploads if shards[k] in names)
        assert shards[k + 1] not in names, seen
        assert begun <= k + 1, seen  # shards k+1 and later not even opened yet
    _assert_local_bytes(out, tmp_path / "local", "--shard-size", "30KiB")
    assert sorted(p.name for p in (tmp_path / "local").glob("*.data-*")) == shards


def test_a_url_output_is_cut_into_shards_by_default(
    s3_bucket: str, tmp_path: Path, local_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --shards or --shard-size a URL output takes URL_SHARD_BYTES; a local one, 1 shard."""
    execute = importlib.import_module("ckptmap.migration.execute")  # the module, not the function
    monkeypatch.setattr(execute, "URL_SHARD_BYTES", 30 << 10)
    out = f"s3://{s3_bucket}/default/"
    assert run(*remap_args(out)).exit_code == 0
    names = KvLocation(out).list() or []
    expected = [f"{PREFIX}.data-{i:05d}-of-00003" for i in range(3)]
    assert [n for n in names if ".data-" in n] == expected
    assert run(*remap_args(f"{tmp_path}/local/")).exit_code == 0
    assert [p.name for p in (tmp_path / "local").glob("*.data-*")] == [
        f"{PREFIX}.data-00000-of-00001"
    ]
    for count in (1, 2):  # a count given, even 1, wins
        url = f"s3://{s3_bucket}/counted-{count}/"
        assert run(*remap_args(url), "--shards", str(count)).exit_code == 0
        counted = KvLocation(url).list() or []
        assert len([n for n in counted if ".data-" in n]) == count


def test_an_upload_window_of_one_file_keeps_one_staged_copy(
    s3_bucket: str, local_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one upload, each staged copy is gone before the next upload starts."""
    from ckptmap.writers import _url_commit

    monkeypatch.setattr(_url_commit, "UPLOAD_IN_FLIGHT_FILES", 1)
    out = f"s3://{s3_bucket}/window/"
    at_upload: list[set[str]] = []

    def record(label: str) -> None:
        if label.startswith("upload#"):
            at_upload.append(_staged_names(local_tmp) - {f"{PREFIX}.index"})

    _remap_watched(record, out, "--shards", "3")
    assert len(at_upload) >= 3
    assert all(len(names) == 1 for names in at_upload), at_upload  # only the one going up
    with open_checkpoint(f"{out}{PREFIX}") as ckpt:
        ckpt.verify()


def test_convert_to_a_bucket_stages_nothing_locally(s3_bucket: str, local_tmp: Path) -> None:
    """A zarr store at a URL is written by tensorstore directly, marker first, manifest last."""
    store = f"s3://{s3_bucket}/direct.zarr"
    result = run("convert", "--old", str(OLD), "--to", "zarr3", "--out", store)
    assert result.exit_code == 0, result.stderr
    assert list(local_tmp.iterdir()) == []
    keys = KvLocation(f"{store}/").list() or []
    assert "zarr.json" in keys
    assert "ckptmap-incomplete" not in keys


# -- SIGKILL at every step of a remap into a bucket ------------------------------------------------


def _remap_process(out: str, env: dict[str, str], *extra: str) -> tuple[int, str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    command = [sys.executable, "-m", "ckptmap", *remap_args(out), *extra]
    proc = subprocess.run(
        command, capture_output=True, text=True, env=full, timeout=300, check=False
    )
    return proc.returncode, proc.stderr


def _visible(url: str) -> dict[str, bytes]:
    return {k: v for k, v in objects(url).items() if not k.startswith(STAGING_PREFIX)}


@pytest.mark.slow
@pytest.mark.parametrize(
    "shards", [("--shards", "3"), ("--shard-size", "30KiB")], ids=["together", "in-turn"]
)
@pytest.mark.parametrize("old", [False, True], ids=["empty", "over-an-old-checkpoint"])
def test_kill_a_remap_into_a_bucket_at_every_step(
    bucket_url: str, tmp_path: Path, local_tmp: Path, old: bool, shards: tuple[str, str]
) -> None:
    """Before the index: no new checkpoint (the old one whole); the next run cleans up.

    The old checkpoint has one shard and the new one three (filled together, or
    in turn and uploaded while the next is written), so no name clashes and
    ``--force`` keeps the old index until the new one replaces it.
    """
    env = {"TMPDIR": str(local_tmp)}
    base = bucket_url  # s3:// on moto, gs:// on the GCS emulator
    reference_dir = tmp_path / "reference"
    assert run(*remap_args(f"{reference_dir}/"), *shards).exit_code == 0
    reference = {k: v for k, v in files(reference_dir).items() if k != "checkpoint"}
    old_objects: dict[str, bytes] = {}
    if old:
        code, err = _remap_process(f"{base}/old/", {**env})
        assert code == 0, err
        old_objects = _visible(f"{base}/old/")
    force = ("--force",) if old else ()

    def prepare(out: str) -> None:
        location = KvLocation(out)
        for name, data in old_objects.items():
            location.write(name, data)

    log = tmp_path / "steps"
    prepare(f"{base}/labels/")
    code, err = _remap_process(f"{base}/labels/", {**env, FAULT_LOG_ENV: str(log)}, *shards, *force)
    assert code == 0, err
    labels = log.read_text().split()
    assert labels.index("upload#1") < labels.index("staged#1")  # shards go up before the commit

    def one(number_label: tuple[int, str]) -> None:
        number, label = number_label
        out = f"{base}/kill-{number}/"
        prepare(out)
        code, err = _remap_process(out, {**env, FAULT_ENV: label}, *shards, *force)
        assert code == -signal.SIGKILL, (label, err)
        visible = _visible(out)
        if number >= labels.index("place-index#1"):
            assert all(visible.get(k) == v for k, v in reference.items()), label
        elif old:
            assert all(visible.get(k) == v for k, v in old_objects.items()), label
            with open_checkpoint(f"{out}{PREFIX}") as ckpt:  # the old one, whole
                assert ckpt.num_shards == 1
        else:
            assert f"{PREFIX}.index" not in visible, label
        if labels.index("journal#1") <= number < labels.index("done#1"):
            assert [p.prefix for p in pending_commits(out)] == [PREFIX], label
        code, err = _remap_process(out, env, *shards, "--force")  # the next run cleans
        assert code == 0, (label, err)
        after = objects(out)
        assert not [k for k in after if k.startswith(STAGING_PREFIX)], label
        assert {k: v for k, v in after.items() if k != "checkpoint"} == reference, label

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, enumerate(labels)))
    assert not [p for p in local_tmp.iterdir() if p.name.startswith(STAGING_PREFIX)]
