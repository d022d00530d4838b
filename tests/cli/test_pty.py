"""Every command run for real: on a pseudo-terminal, with NO_COLOR, with TERM=dumb, and piped.

No mocks: each case starts ``python -m ckptmap`` with a pty (80 columns) or
pipes as its stdio, as a user's shell or a CI job would. On a terminal a run
must end with its documented exit code, no traceback and the cursor shown;
with ``NO_COLOR`` or ``TERM=dumb`` it writes no colour or style sequence;
piped, no escape sequence at all. The long remap must draw its progress.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ._terminal import (
    ESC,
    HIDE_CURSOR,
    SGR,
    SHOW_CURSOR,
    assert_terminal_left_clean,
    run_piped,
    run_pty,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
OLD = FIXTURES / "ffm_v1"
NEW_GRAPH = FIXTURES / "ffm_v2" / "graph.pbtxt"
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


@dataclass(frozen=True)
class Case:
    """One command line, its exit code, and a text its output must contain."""

    name: str
    args: tuple[str, ...]
    code: int
    says: str
    out: str = ""  # the args end with --out: the output, in the test's folder


CASES = [
    Case("inspect", ("inspect", str(OLD)), 0, "33 tensors"),
    Case("inspect-verify", ("inspect", str(OLD), "--verify"), 0, "CRC32C: every tensor"),
    Case(
        "check-pass",
        ("check", "--old", str(OLD), "--new-graph", str(NEW_GRAPH), "--rule", RULE),
        0,
        "OK",
    ),
    Case("check-fail", ("check", "--old", str(OLD), "--new-graph", str(NEW_GRAPH)), 1, "FAIL"),
    Case(
        "remap",
        (
            "remap",
            "--old",
            str(OLD),
            "--new-graph",
            str(NEW_GRAPH),
            "--rule",
            RULE,
            "--explain",
            "--out",
        ),
        0,
        "wrote ",
        out="new/",
    ),
    Case(
        "remap-fail",
        ("remap", "--old", str(OLD), "--new-graph", str(NEW_GRAPH), "--out"),
        1,
        "ffm/global_bias/w/Adam_1",
        out="new/",
    ),
    Case(
        "convert",
        ("convert", "--old", str(OLD), "--to", "zarr3", "--out"),
        0,
        "wrote ",
        out="ffm.zarr",
    ),
    Case(
        "alias",
        ("alias", "--old", str(OLD), "--new-graph", str(NEW_GRAPH), "--rule", RULE),
        0,
        '"aliases"',
    ),
    Case("config-show", ("config", "show"), 0, "convert options"),
    Case(
        "usage-error",
        ("inspect", str(OLD), "--tensor", "global_step", "--json"),
        2,
        "--tensor prints",
    ),
]
IDS = [case.name for case in CASES]

ON_A_TERMINAL = [pytest.param(case, id=case.name) for case in CASES]


def _args(case: Case, tmp_path: Path) -> list[str]:
    return [*case.args, f"{tmp_path}/{case.out}"] if case.out else list(case.args)


@pytest.mark.parametrize("case", ON_A_TERMINAL)
def test_on_a_terminal(case: Case, tmp_path: Path) -> None:
    run = run_pty(_args(case, tmp_path), cwd=tmp_path)
    assert run.code == case.code, run.text
    assert_terminal_left_clean(run.raw)
    assert case.says in run.text
    assert "…" not in run.text  # nothing cut


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize(
    ("env", "term"), [({"NO_COLOR": "1"}, "xterm-256color"), ({}, "dumb")], ids=["NO_COLOR", "dumb"]
)
def test_no_colour_or_style_when_asked(
    case: Case, env: dict[str, str], term: str, tmp_path: Path
) -> None:
    run = run_pty(_args(case, tmp_path), env=env, term=term, cwd=tmp_path)
    assert run.code == case.code, run.text
    assert_terminal_left_clean(run.raw)
    assert case.says in run.text
    assert SGR.findall(run.raw) == []
    if term == "dumb":  # a dumb terminal gets no escape sequence of any kind
        assert ESC not in run.raw


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_piped(case: Case, tmp_path: Path) -> None:
    run = run_piped(_args(case, tmp_path), cwd=tmp_path)
    assert run.code == case.code, run.stderr
    assert ESC not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert "…" not in run.stdout + run.stderr
    assert case.says in run.stdout + run.stderr


def test_empty_no_color_is_not_set(tmp_path: Path) -> None:
    """no-color.org: only a non-empty NO_COLOR disables colour."""
    run = run_pty(["inspect", str(OLD)], env={"NO_COLOR": ""}, cwd=tmp_path)
    assert run.code == 0
    assert SGR.search(run.raw)  # the table header is bold


# -- a remap long enough to show progress ------------------------------------------------

_TENSORS = 16
_ROWS, _COLS = 1024, 4096  # 16 MiB of float32 each: 256 MiB in all


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 256 MiB checkpoint written by ckptmap, and a JSON spec of a model with the same keys."""
    from ckptmap.writers.tf_bundle import BundleWriter

    folder = tmp_path_factory.mktemp("big")
    prefix = folder / "old" / "model.ckpt-7"
    names = [f"layer_{i:02d}/kernel" for i in range(_TENSORS)]
    with BundleWriter(prefix) as writer:
        for i, name in enumerate(names):
            writer.add_array(name, np.full((_ROWS, _COLS), i, dtype=np.float32))
        writer.add_array("global_step", np.array(7, dtype=np.int64))
        writer.commit()
    spec = {
        "version": 1,
        "variables": [
            {"name": "global_step", "dtype": "int64", "shape": []},
            *({"name": name, "dtype": "float32", "shape": [_ROWS, _COLS]} for name in names),
        ],
    }
    graph = folder / "new.json"
    graph.write_text(json.dumps(spec))
    return prefix, graph


@pytest.mark.slow
def test_long_remap_draws_progress_on_a_terminal(
    big_model: tuple[Path, Path], tmp_path: Path
) -> None:
    prefix, graph = big_model
    args = ["remap", "--old", str(prefix), "--new-graph", str(graph), "--out", f"{tmp_path}/out/"]
    run = run_pty(args, cwd=tmp_path)
    assert run.code == 0, run.text
    assert_terminal_left_clean(run.raw)
    assert HIDE_CURSOR in run.raw  # a live display ran
    assert SHOW_CURSOR in run.raw
    text = run.text
    assert re.search(r"\d+(\.\d+)?/256(\.0)? MiB", text), text  # bytes done/total
    assert re.search(r"\d+(\.\d+)? [KMG]iB/s", text), text  # rate
    assert re.search(r"\d+:\d\d:\d\d", text), text  # time left
    assert "wrote " in text


@pytest.mark.slow
def test_long_remap_piped_prints_plain_lines_only(
    big_model: tuple[Path, Path], tmp_path: Path
) -> None:
    prefix, graph = big_model
    args = ["remap", "--old", str(prefix), "--new-graph", str(graph), "--out", f"{tmp_path}/out/"]
    # The commit protocol's test hook holds the run for 5.5 s once its output is open,
    # before the first tensor is written: longer than the period of the progress lines.
    run = run_piped(args, env={"CKPTMAP_FAULT_PAUSE": "staging:5.5"}, cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert ESC not in run.stdout + run.stderr
    assert "\r" not in run.stderr
    progress = [line for line in run.stderr.splitlines() if line.startswith("remap: ")]
    assert 1 <= len(progress) <= 2, run.stderr  # at most one line per 5 s
    assert progress[0] == "remap: 0 bytes of 256.0 MiB (0%)"  # still held
    for line in progress[1:]:
        assert re.fullmatch(r"remap: .+ of 256\.0 MiB \(\d+%\)(, .+/s, about .+ left)?", line)
    assert "wrote " in run.stdout


@pytest.mark.slow
def test_quiet_and_json_print_no_progress(big_model: tuple[Path, Path], tmp_path: Path) -> None:
    prefix, graph = big_model
    args = ["remap", "--old", str(prefix), "--new-graph", str(graph)]
    pause = {"CKPTMAP_FAULT_PAUSE": "staging:5.5"}
    quiet = run_piped([*args, "--out", f"{tmp_path}/q/", "--quiet"], env=pause, cwd=tmp_path)
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "", "")
    as_json = run_pty([*args, "--out", f"{tmp_path}/j/", "--json"], cwd=tmp_path)
    assert as_json.code == 0
    assert ESC not in as_json.raw  # no live display either
    assert json.loads(as_json.text)["summary"]["tensors"] == _TENSORS + 1


def test_remap_help_says_where_progress_goes() -> None:
    """The plain-line-every-5-s choice is stated in remap --help, as in docs/terminal.md."""
    run = run_piped(["remap", "--help"])
    assert run.code == 0
    text = " ".join(run.stdout.split())
    assert "Progress goes to stderr" in text
    assert "a plain line every 5 seconds" in text
    assert "none with --quiet or --json" in text
