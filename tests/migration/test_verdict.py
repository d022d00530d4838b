"""One verdict: check, remap --dry-run, remap and the JUnit report always agree.

Table-driven over {complete, unresolved, shape-mismatched} x {--allow-missing
off, on}, through the real CLI on the TF-written fixtures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.migration import PlanInputs, Verdict, plan_remap
from ckptmap.readers.graph import read_model_spec

RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
OLD = FIXTURES / "ffm_v1"
GRAPH = FIXTURES / "ffm_v2" / "graph.pbtxt"


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _mismatched_spec(tmp_path: Path) -> Path:
    """The v2 model as a JSON spec, with one variable's shape changed."""
    spec = read_model_spec(GRAPH)
    variables = []
    for key, t in spec.keys.items():
        shape = [100, 1] if key == "ffm/global_bias/w" else list(t.shape)
        var: dict[str, object] = {"name": key, "dtype": t.dtype.name, "shape": shape}
        if t.slices:
            var["partitions"] = {"slices": [s.format() for s in t.slices]}
        variables.append(var)
    path = tmp_path / "v2_mismatched.json"
    path.write_text(json.dumps({"variables": variables}))
    return path


def _case(name: str, tmp_path: Path) -> list[str | os.PathLike[str]]:
    if name == "complete":
        return ["--new-graph", GRAPH, "--rule", RULE]
    if name == "unresolved":
        return ["--new-graph", GRAPH]
    return ["--new-graph", _mismatched_spec(tmp_path), "--rule", RULE]


EXPECTED = {  # (case, allow_missing) -> (verdict, exit code)
    ("complete", False): (Verdict.OK, 0),
    ("complete", True): (Verdict.OK, 0),
    ("unresolved", False): (Verdict.UNRESOLVED, 1),
    ("unresolved", True): (Verdict.PARTIAL, 0),
    ("mismatched", False): (Verdict.MISMATCHED, 1),
    ("mismatched", True): (Verdict.MISMATCHED, 1),
}


@pytest.mark.parametrize(("case", "allow_missing"), sorted(EXPECTED))
def test_every_command_gives_the_same_verdict(
    case: str, allow_missing: bool, tmp_path: Path
) -> None:
    verdict, code = EXPECTED[case, allow_missing]
    args = ["--old", OLD, *_case(case, tmp_path)] + (["--allow-missing"] if allow_missing else [])

    junit = tmp_path / "report.xml"
    checked = run("check", *args, "--json", "--junit", junit)
    assert checked.exit_code == code, checked.output
    data = json.loads(checked.stdout)
    assert data["verdict"] == verdict.value
    assert data["ok"] is (code == 0)
    suite = ElementTree.parse(junit).getroot()
    assert (int(suite.get("failures", "-1")) == 0) is (code == 0)

    dry = run("remap", *args, "--out", tmp_path / "dry" / "m", "--dry-run", "--json")
    assert dry.exit_code == code, dry.output
    assert json.loads(dry.stdout)["verdict"] == verdict.value
    assert not (tmp_path / "dry").exists()

    out = tmp_path / "out"
    written = run("remap", *args, "--out", f"{out}/", "--junit", tmp_path / "remap.xml")
    assert written.exit_code == code, written.output
    remap_suite = ElementTree.parse(tmp_path / "remap.xml").getroot()
    assert remap_suite.get("failures") == suite.get("failures")
    index = out / "model.ckpt-100.index"
    assert index.exists() is (code == 0)
    if code != 0:
        assert not out.exists() or not any(out.iterdir())

    new, rules = _case(case, tmp_path)[1], _case(case, tmp_path)[3:]
    plan = plan_remap(OLD, new, rules=rules, allow_missing=allow_missing)
    assert plan.verdict is verdict


def test_partial_check_says_what_will_be_left_out() -> None:
    result = run("check", "--old", OLD, "--new-graph", GRAPH, "--allow-missing")
    assert result.exit_code == 0
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("OK (partial): ")
    assert last.endswith("3 key(s) have no source and will not be in the output")


def test_plan_inputs_defaults_are_the_cli_defaults() -> None:
    import dataclasses

    from ckptmap.cli.options.commands import CheckOptions

    cli = {f.name: f.default for f in dataclasses.fields(CheckOptions)}
    for f in dataclasses.fields(PlanInputs):
        if f.default is dataclasses.MISSING:
            continue
        assert f.name in cli, f.name
        expected = None if f.name == "saver" else f.default
        got = cli[f.name] if f.name != "saver" else (cli[f.name] or None)
        assert got == expected or (f.name == "rules" and tuple(got) == tuple(expected)), f.name


def test_candidate_cutoff_outside_0_1_is_a_usage_error() -> None:
    from ckptmap.errors import UsageError

    with pytest.raises(UsageError, match="outside 0..1"):
        PlanInputs(old=OLD, new_graph=GRAPH, candidate_cutoff=2)
    result = run("check", "--old", OLD, "--new-graph", GRAPH, "--candidate-cutoff", "2")
    assert result.exit_code == 2
    assert "outside 0..1" in result.stderr
