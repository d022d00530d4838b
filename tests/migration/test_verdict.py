"""One verdict: check, remap --dry-run, remap and the JUnit report always agree.

Table-driven over {complete, unresolved, shape-mismatched} x {--allow-missing
off, on}, through the real CLI on the TF-written fixtures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
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
    assert last == "OK (partial): 3 keys have no source and will not be in the output"
    assert "tf.compat.v1.train.init_from_checkpoint" in result.stderr
    assert "plain Saver refuses" in result.stderr


def test_partial_remap_writes_what_it_has_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("remap", "--old", OLD, "--new-graph", GRAPH, "--allow-missing", "--out", f"{out}/")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"wrote {out}/model.ckpt-100: 24 tensors")
    assert lines[-1] == "OK (partial): 3 keys have no source and will not be in the output"
    assert "init_from_checkpoint" in result.stderr


TEMPLATE = FIXTURES / "ffm_v2"  # a checkpoint of the new model (TF-written)
FILLED = ("ffm/global_bias/w", "ffm/global_bias/w/Adam", "ffm/global_bias/w/Adam_1")

# (case, allow_missing, fill) -> (verdict, exit code, first word, keys written, keys filled)
# fill: none; "template" (a checkpoint of the new model); "lacking" (a checkpoint
# without the missing keys: the old one).
FILL_EXPECTED = {
    ("complete", False, "none"): (Verdict.OK, 0, "OK:", 27, 0),
    ("complete", True, "none"): (Verdict.OK, 0, "OK:", 27, 0),
    ("complete", False, "template"): (Verdict.OK, 0, "OK:", 27, 0),
    ("complete", True, "template"): (Verdict.OK, 0, "OK:", 27, 0),
    ("unresolved", False, "none"): (Verdict.UNRESOLVED, 1, "FAIL:", None, 0),
    ("unresolved", True, "none"): (Verdict.PARTIAL, 0, "OK (partial):", 24, 0),
    ("unresolved", False, "template"): (Verdict.OK, 0, "OK:", 27, 3),
    ("unresolved", True, "template"): (Verdict.OK, 0, "OK:", 27, 3),
    ("unresolved", False, "lacking"): (Verdict.UNRESOLVED, 1, "FAIL:", None, 0),
    ("unresolved", True, "lacking"): (Verdict.PARTIAL, 0, "OK (partial):", 24, 0),
    ("mismatched", False, "template"): (Verdict.MISMATCHED, 1, "FAIL:", None, 0),
    ("mismatched", True, "template"): (Verdict.MISMATCHED, 1, "FAIL:", None, 0),
}


@pytest.mark.parametrize(("case", "allow_missing", "fill"), sorted(FILL_EXPECTED))
def test_verdict_by_allow_missing_and_fill_from(
    case: str, allow_missing: bool, fill: str, tmp_path: Path
) -> None:
    from ckptmap.readers import open_checkpoint

    verdict, code, word, written, filled = FILL_EXPECTED[case, allow_missing, fill]
    args = ["--old", OLD, *_case(case, tmp_path)]
    args += ["--allow-missing"] if allow_missing else []
    args += {"none": [], "template": ["--fill-from", TEMPLATE], "lacking": ["--fill-from", OLD]}[
        fill
    ]

    text = run("check", *args)
    assert text.exit_code == code, text.output
    assert text.stdout.strip().splitlines()[-1].startswith(word + " ")
    assert "Traceback" not in text.output
    junit = tmp_path / "check.xml"
    data = json.loads(run("check", *args, "--json", "--junit", junit).stdout)
    assert (data["verdict"], data["counts"]["filled"]) == (verdict.value, filled)
    assert sorted(f["key"] for f in data["filled"]) == sorted(FILLED[:filled])
    assert all(f["reason"] == "filled" for f in data["filled"])
    assert not {f["key"] for f in data["filled"]} & {u["new_key"] for u in data["unresolved"]}
    cases = {c.get("name"): c for c in ElementTree.parse(junit).getroot()}
    for key in FILLED[:filled]:
        assert cases[key].find("system-out").text.startswith(f"filled from {TEMPLATE}")

    out = tmp_path / "out"
    result = run("remap", *args, "--out", f"{out}/", "--json")
    assert result.exit_code == code, result.output
    if written is None:
        assert not out.exists() or not any(out.iterdir())
        return
    remapped = json.loads(result.stdout)
    assert [t["key"] for t in remapped["filled"]] == list(FILLED[:filled])
    with open_checkpoint(out) as ckpt, open_checkpoint(TEMPLATE) as template:
        assert len(ckpt.keys()) == written
        for key in FILLED[:filled]:  # the template's values, byte for byte
            np.testing.assert_array_equal(ckpt.read(key), template.read(key))


def test_a_fill_from_key_of_another_shape_is_one_line_naming_it(tmp_path: Path) -> None:
    """The new model's ffm/global_bias/w is [100, 1]; the template's is [200, 1]."""
    spec = _mismatched_spec(tmp_path)
    out = tmp_path / "out"
    for command in ("check", "remap"):
        extra = ["--out", f"{out}/"] if command == "remap" else []
        result = run(command, "--old", OLD, "--new-graph", spec, "--fill-from", TEMPLATE, *extra)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert "'ffm/global_bias/w'" in line
        assert "float32 [200, 1] but the new model restores float32 [100, 1]" in line
        assert str(TEMPLATE / "model.ckpt-100.index") in line
    assert not out.exists()


def test_fill_from_in_the_library() -> None:
    from ckptmap.migration import check

    report = check(OLD, GRAPH, fill_from=TEMPLATE)
    assert report.ok
    assert report.complete
    assert report.plan.filled_keys == frozenset(FILLED)
    assert report.to_json()["counts"]["unresolved"] == 0
    assert report.why("ffm/global_bias/w") == (
        f"no source in the old checkpoint; filled from {TEMPLATE / 'model.ckpt-100'}"
    )


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


def test_explain_prints_the_reason_sentence_of_every_key() -> None:
    args = ["--old", OLD, "--new-graph", GRAPH, "--rule", RULE]
    data = json.loads(run("check", *args, "--json").stdout)
    text = run("check", *args, "--explain").stdout
    flat = " ".join(text.split())  # a folded cell may wrap
    for item in data["resolved"]:
        assert item["why"], item
        assert " ".join(item["why"].split()) in flat, item
    whys = {item["key"]: item["why"] for item in data["resolved"]}
    assert whys["global_step"] == "the old checkpoint has the same key"
    assert whys["ffm/global_bias/w"] == (
        "the user's rule ^ffm/global_bias/(.*)$=ffm/bias_net/{} gives 'ffm/bias_net/w'"
    )
    assert whys["ffm/tower/dense/kernel"].startswith("the same dense layer, renumbered: layer ")


def test_alias_lists_filled_keys_apart_from_unresolved() -> None:
    result = run("alias", "--old", OLD, "--new-graph", GRAPH, "--fill-from", TEMPLATE)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted(doc["filled"]) == sorted(FILLED)
    assert doc["unresolved"] == []
    assert doc["fill_from"] == str(TEMPLATE / "model.ckpt-100")
    assert not set(FILLED) & set(doc["aliases"])
