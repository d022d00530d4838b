"""Fault injection: real ``ckptmap remap`` processes SIGKILLed at every commit step.

Each scenario first runs ``remap`` once with ``CKPTMAP_FAULT_LOG`` to list the
step boundaries it passes, then runs it again once per boundary with
``CKPTMAP_FAULT_AT=<step>#<n>`` (the process SIGKILLs itself there), and
checks what is left:

* before recovery: the old checkpoint byte for byte, or the new one complete,
  or a journal in a stale staging folder that names every file outside it;
* the source is byte-identical;
* after the recovery every ckptmap write does first (``recover_folder``): no
  staging folder, and exactly the old checkpoint or exactly the new one
  (verified: CRCs and values).

Racing writers: two ``remap`` runs of one prefix. See docs/durability.md.
Each killed run is a fresh process (about a second); the scenarios with more
steps (three shards, a URL, ~200 MB) are marked slow (CI runs them).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.writers import BundleWriter
from ckptmap.writers.commit import (
    FAULT_ENV,
    FAULT_LOG_ENV,
    FAULT_PAUSE_ENV,
    FAULT_RELEASE_ENV,
    STEPS,
    is_staging_name,
    pending_commits,
    recover_folder,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
PREFIX = "model.ckpt-100"
JOBS = 2


def _visible(folder: Path) -> dict[str, str]:
    """Digests of every file outside staging folders, by name relative to ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not is_staging_name(name):
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _stagings(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if is_staging_name(p.name)] if folder.exists() else []


@dataclass(frozen=True)
class Scenario:
    """One remap command and the folders it runs in."""

    source: Path  # the old checkpoint folder (a copy)
    args: tuple[str, ...]  # remap arguments after --out
    old: Path | None  # a folder holding the checkpoint --force replaces, or None
    check_values: Callable[[Path], None]

    def run(self, out: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        full_env = {
            **os.environ,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        command = [sys.executable, "-m", "ckptmap", "remap", "--out", f"{out}{os.sep}"]
        return subprocess.Popen(
            [*command, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=ROOT,
        )

    def prepare(self, out: Path) -> None:
        if self.old is not None:
            shutil.copytree(self.old, out)
        else:
            out.mkdir(parents=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _reference(scenario: Scenario, folder: Path) -> dict[str, str]:
    """The new checkpoint's files (not the state file) as an unfaulted run writes them."""
    scenario.prepare(folder)
    code, err = _finish(scenario.run(folder))
    assert code == 0, err
    old = _visible(scenario.old) if scenario.old is not None else {}
    new = _visible(folder)
    return {k: v for k, v in new.items() if k != "checkpoint" and old.get(k) != v}


def _labels(scenario: Scenario, folder: Path) -> list[str]:
    scenario.prepare(folder)
    log = folder.parent / f"{folder.name}.steps"
    code, err = _finish(scenario.run(folder, {FAULT_LOG_ENV: str(log)}))
    assert code == 0, err
    labels = log.read_text().split()
    assert labels, "the run passed no commit step"
    assert {label.split("#")[0] for label in labels} <= set(STEPS)
    return labels


def _check_new(scenario: Scenario, out: Path) -> None:
    with open_checkpoint(out / PREFIX) as ckpt:
        ckpt.verify()
    scenario.check_values(out / PREFIX)
    with open_checkpoint(out) as ckpt:  # the state file names the new checkpoint
        assert ckpt.prefix.name == PREFIX


def _assert_after_kill(scenario: Scenario, out: Path, reference: dict[str, str], label: str) -> str:
    """The invariants right after a kill and after recovery; returns "old" or "new"."""
    old = _visible(scenario.old) if scenario.old is not None else {}
    visible = _visible(out)
    found = pending_commits(out)
    assert all(not p.live for p in found), label
    is_new = all(visible.get(k) == v for k, v in reference.items())
    if visible != old and not is_new:  # mid-commit: a journal must account for every file
        assert [p.phase for p in found] in (["replacing"], ["committed"]), (label, found)
        stray = set(visible) - set(old) - set(reference) - {"checkpoint"}
        assert not stray, (label, stray)
    recover_folder(out)
    assert not _stagings(out), label
    after = _visible(out)
    if after == old:
        return "old"
    for name, digest in reference.items():
        assert after.get(name) == digest, (label, name)
    old_checkpoint = {n for n in old if n == f"{PREFIX}.index" or n.startswith(f"{PREFIX}.data-")}
    for name in set(after) - set(reference) - {"checkpoint"}:  # others' files, untouched
        assert name not in old_checkpoint, (label, name)
        assert after[name] == old.get(name), (label, name)
    _check_new(scenario, out)
    return "new"


def _kill_at_every_step(scenario: Scenario, tmp: Path) -> list[tuple[str, str]]:
    reference = _reference(scenario, tmp / "reference")
    labels = _labels(scenario, tmp / "labels")
    source_before = _visible(scenario.source)

    def one(number_label: tuple[int, str]) -> tuple[str, str]:
        number, label = number_label
        out = tmp / f"kill-{number}"
        scenario.prepare(out)
        code, err = _finish(scenario.run(out, {FAULT_ENV: label}))
        assert code == -signal.SIGKILL, (label, code, err)
        return label, _assert_after_kill(scenario, out, reference, label)

    with ThreadPoolExecutor(JOBS) as pool:
        outcomes = list(pool.map(one, enumerate(labels)))
    assert _visible(scenario.source) == source_before
    index_at = labels.index("place-index#1")
    for number, (label, outcome) in enumerate(outcomes):
        expected = "new" if number >= index_at else "old"
        assert outcome == expected, (label, outcome)
    return outcomes


# -- scenarios ---------------------------------------------------------------------------------


def _ffm_values(source: Path) -> Callable[[Path], None]:
    def check(prefix: Path) -> None:
        with open_checkpoint(source / PREFIX) as old, open_checkpoint(prefix) as new:
            old_keys = set(old.keys())
            new_keys = new.keys()
            for key in new_keys:
                old_key = key.replace("ffm/bias_net/", "ffm/global_bias/")
                if old_key in old_keys and not new.entry(key).slices:
                    assert np.array_equal(new.read(key), old.read(old_key)), key

    return check


@pytest.fixture
def ffm(tmp_path: Path) -> Callable[[int, bool], Scenario]:
    source = tmp_path / "source"
    shutil.copytree(FIXTURES / "ffm_v1", source)
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "ffm_v2", old)  # another good checkpoint under the same name

    def make(shards: int, force: bool) -> Scenario:
        args = ["--old", str(source), "--new-graph", str(FIXTURES / "ffm_v2" / "graph.pbtxt")]
        args += ["--rule", RULE, "--shards", str(shards)] + (["--force"] if force else [])
        return Scenario(source, tuple(args), old if force else None, _ffm_values(source))

    return make


@pytest.mark.parametrize(
    ("shards", "force"),
    [
        (1, True),  # the same file names: old files move aside
        pytest.param(1, False, marks=pytest.mark.slow),
        pytest.param(3, False, marks=pytest.mark.slow),
        pytest.param(3, True, marks=pytest.mark.slow),  # another shard count: no clash
    ],
)
def test_kill_remap_at_every_step(
    ffm: Callable[[int, bool], Scenario], tmp_path: Path, shards: int, force: bool
) -> None:
    outcomes = _kill_at_every_step(ffm(shards, force), tmp_path / "runs")
    labels = [label for label, _ in outcomes]
    if force and shards == 1:
        assert "aside#1" in labels  # same file names: the old files moved aside


def test_the_next_remap_cleans_up(ffm: Callable[[int, bool], Scenario], tmp_path: Path) -> None:
    scenario = ffm(1, True)
    out = tmp_path / "out"
    scenario.prepare(out)
    code, _ = _finish(scenario.run(out, {FAULT_ENV: "place-data#1"}))
    assert code == -signal.SIGKILL
    [found] = pending_commits(out)
    assert found.phase == "replacing"
    assert "rolls it back" in found.outcome
    code, err = _finish(scenario.run(out))  # the next write rolls back, then writes
    assert code == 0, err
    assert not _stagings(out)
    _check_new(scenario, out)


def _ckptmap(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "ckptmap", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)


@pytest.mark.parametrize("target", ["folder", "prefix"])
def test_inspect_reports_an_interrupted_replace_and_the_next_write_undoes_it(
    ffm: Callable[[int, bool], Scenario], tmp_path: Path, target: str
) -> None:
    scenario = ffm(1, True)
    out = tmp_path / "out"
    scenario.prepare(out)
    assert scenario.old is not None
    old = _visible(scenario.old)
    code, _ = _finish(scenario.run(out, {FAULT_ENV: "aside#1"}))  # the old index moved aside
    assert code == -signal.SIGKILL
    [staging] = _stagings(out)
    result = _ckptmap("inspect", out if target == "folder" else out / PREFIX)
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {out}: a ckptmap replace of the checkpoint {PREFIX!r} was interrupted "
        f"(staging folder {staging}), so neither the old nor the new checkpoint is complete "
        "here; the next ckptmap write into this folder rolls it back (the old files come "
        "back): run the remap again\n"
    )
    assert _visible(out) != old  # what inspect would otherwise have listed is a half checkpoint
    # The next write, even one refused (no --force), first rolls the replace back.
    args = [a for a in scenario.args if a != "--force"]
    result = _ckptmap("remap", "--out", f"{out}{os.sep}", *args)
    assert result.returncode == 4
    assert "a checkpoint already exists at this prefix" in result.stderr
    assert not _stagings(out)
    assert _visible(out) == old  # the old checkpoint, byte for byte
    assert _ckptmap("inspect", out, "--verify").returncode == 0


def test_readers_ignore_staging_folders(
    ffm: Callable[[int, bool], Scenario], tmp_path: Path
) -> None:
    """A killed fresh write leaves a whole staged checkpoint; no reader takes it for one."""
    scenario = ffm(1, False)
    out = tmp_path / "out"
    scenario.prepare(out)
    code, _ = _finish(scenario.run(out, {FAULT_ENV: "locked#1"}))  # everything staged
    assert code == -signal.SIGKILL
    [staging] = _stagings(out)
    assert (staging / f"{PREFIX}.index").is_file()
    for command in (
        ["inspect", out],
        ["check", "--old", out, "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt"],
        ["convert", "--old", out, "--to", "zarr3", "--out", tmp_path / "store.zarr"],
    ):
        result = _ckptmap(*command)
        assert result.returncode == 3, result.stderr
        assert result.stderr == (
            f"error: {out}: no checkpoint in this folder (no 'checkpoint' state file and no "
            ".index file; pass a checkpoint prefix or another folder)\n"
        )
    assert not (tmp_path / "store.zarr").exists()


def test_kill_remap_at_random_moments(ffm: Callable[[int, bool], Scenario], tmp_path: Path) -> None:
    scenario = ffm(3, True)
    reference = _reference(scenario, tmp_path / "reference")
    start = time.monotonic()
    _finish(scenario.run(tmp_path / "timing"))  # one whole run
    duration = time.monotonic() - start
    rng = random.Random(13)
    source_before = _visible(scenario.source)

    def one(number: int) -> str:
        out = tmp_path / f"random-{number}"
        scenario.prepare(out)
        proc = scenario.run(out)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        _finish(proc)
        return _assert_after_kill(scenario, out, reference, f"random {number}")

    with ThreadPoolExecutor(JOBS) as pool:
        outcomes = list(pool.map(one, range(6)))
    assert set(outcomes) <= {"old", "new"}
    assert _visible(scenario.source) == source_before


# -- a larger checkpoint ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~200 MB checkpoint written with BundleWriter (two shards, a few large tensors)."""
    folder = tmp_path_factory.mktemp("big") / "source"
    with BundleWriter(folder / PREFIX, num_shards=2) as writer:
        for i in range(8):
            writer.add_array(f"big/w{i}", np.full(6_250_000, i, np.float32))  # 25 MB each
        writer.add_array("small/bias", np.arange(10, dtype=np.float32))
        writer.commit()
    return folder


def _big_scenario(source: Path, old: Path, force: bool) -> Scenario:
    def check(prefix: Path) -> None:
        with open_checkpoint(prefix) as ckpt:
            assert ckpt.read("small/bias").tolist() == list(range(10))
            assert float(ckpt.read("big/w3")[-1]) == 3.0

    args = ["--old", str(source), "--new-graph", f"{source / PREFIX}.index", "--shards", "1"]
    return Scenario(source, (*args, *(["--force"] if force else [])), old if force else None, check)


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True])
def test_kill_a_large_remap_at_every_step(big_source: Path, tmp_path: Path, force: bool) -> None:
    old = tmp_path / "old"
    with BundleWriter(old / PREFIX, num_shards=1) as writer:  # same names, other values
        writer.add_array("small/bias", np.zeros(10, np.float32))
        writer.output.record_latest()
        writer.commit()
    _kill_at_every_step(_big_scenario(big_source, old, force), tmp_path / "runs")


@pytest.mark.slow
def test_kill_a_large_remap_at_random_moments(big_source: Path, tmp_path: Path) -> None:
    scenario = _big_scenario(big_source, tmp_path / "none", False)
    reference = _reference(scenario, tmp_path / "reference")
    start = time.monotonic()
    _finish(scenario.run(tmp_path / "timed-run"))
    duration = time.monotonic() - start
    rng = random.Random(7)
    for number in range(10):
        out = tmp_path / f"random-{number}"
        out.mkdir()
        proc = scenario.run(out)
        time.sleep(rng.uniform(0.1, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        _finish(proc)
        _assert_after_kill(scenario, out, reference, f"random {number}")


# -- racing writers ---------------------------------------------------------------------------


def _wait_for(path: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.02)
    pytest.fail(f"{text!r} never appeared in {path}")


@pytest.mark.parametrize("force", [False, True])
def test_a_second_writer_of_a_running_prefix_exits_4(
    ffm: Callable[[int, bool], Scenario], tmp_path: Path, force: bool
) -> None:
    scenario = ffm(1, force)
    out = tmp_path / "out"
    scenario.prepare(out)
    log = tmp_path / "first.steps"
    release = tmp_path / "release"
    # The first run holds the prefix until the second has finished, however slow the
    # machine (a fixed pause let a loaded machine finish the first run too early).
    paused = {
        FAULT_LOG_ENV: str(log),
        FAULT_PAUSE_ENV: "staged:60",
        FAULT_RELEASE_ENV: str(release),
    }
    first = scenario.run(out, paused)
    _wait_for(log, "staged#1")
    code, err = _finish(scenario.run(out))
    release.touch()
    assert code == 4
    assert err.count("\n") == 1
    assert f"{out / PREFIX}: is being written by another ckptmap process" in err
    code, err = _finish(first)
    assert code == 0, err
    assert not _stagings(out)
    _check_new(scenario, out)


def test_racing_writers_without_force_have_one_winner(
    ffm: Callable[[int, bool], Scenario], tmp_path: Path
) -> None:
    scenario = ffm(1, False)
    for attempt in range(3):
        out = tmp_path / f"race-{attempt}"
        scenario.prepare(out)
        procs = [scenario.run(out), scenario.run(out)]
        results = [_finish(p) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 4], results
        [loser] = [err for code, err in results if code == 4]
        assert loser.count("\n") == 1
        assert (
            "is being written by another ckptmap process" in loser
            or "a checkpoint already exists at this prefix" in loser
        ), loser
        assert not _stagings(out)
        _check_new(scenario, out)


def test_sequential_force_writers_both_succeed(
    ffm: Callable[[int, bool], Scenario], tmp_path: Path
) -> None:
    scenario = ffm(1, True)
    out = tmp_path / "out"
    scenario.prepare(out)
    for _ in range(2):
        code, err = _finish(scenario.run(out))
        assert code == 0, err
    assert not _stagings(out)
    _check_new(scenario, out)


# -- a URL output ------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_a_remap_to_a_file_url_at_every_step(
    ffm: Callable[[int, bool], Scenario], tmp_path: Path
) -> None:
    """Uploads have no rename: a kill leaves data without an index and a journal object."""
    local = ffm(1, False)
    reference = _reference(local, tmp_path / "reference")

    def url_run(out: Path, env: dict[str, str], *, force: bool = False) -> tuple[int, str]:
        full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        command = [sys.executable, "-m", "ckptmap", "remap", "--out", f"file://{out}/"]
        command += [*local.args, *(["--force"] if force else [])]
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full
        )
        return _finish(proc)

    log = tmp_path / "steps"
    (tmp_path / "labels").mkdir()
    code, err = url_run(tmp_path / "labels", {FAULT_LOG_ENV: str(log)})
    assert code == 0, err
    labels = log.read_text().split()
    assert "journal#1" in labels

    def one(number_label: tuple[int, str]) -> None:
        number, label = number_label
        out = tmp_path / f"kill-{number}"
        out.mkdir()
        code, err = url_run(out, {FAULT_ENV: label})
        assert code == -signal.SIGKILL, (label, err)
        visible = _visible(out)
        if number >= labels.index("place-index#1"):
            assert all(visible.get(k) == v for k, v in reference.items()), label
        else:
            assert f"{PREFIX}.index" not in visible, label
        if labels.index("journal#1") <= number < labels.index("done#1"):
            assert [p.prefix for p in pending_commits(f"file://{out}/")] == [PREFIX], label
        code, err = url_run(out, {}, force=True)  # the next write of the prefix cleans up
        assert code == 0, (label, err)
        assert not _stagings(out), label
        after = _visible(out)
        assert {k: v for k, v in after.items() if k != "checkpoint"} == reference, label

    with ThreadPoolExecutor(JOBS) as pool:
        list(pool.map(one, enumerate(labels)))
