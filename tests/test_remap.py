"""``ckptmap remap``, ``check`` and ``alias`` on the real v1 -> v2 fixtures (no TensorFlow).

The fixtures' ``ffm_v2/expected_alias.json`` is the ground truth written by the
generator: which v1 key feeds each v2 key. The v2 graph renames one scope in a
way only a rule can fix (``ffm/global_bias`` was ``ffm/bias_net``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.errors import UnresolvedError
from ckptmap.migration import check, execute, plan_remap
from ckptmap.readers import open_checkpoint
from ckptmap.readers.graph import read_model_spec

RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
EXPECTED = json.loads((FIXTURES / "ffm_v2" / "expected_alias.json").read_text())
V2_FORMS = ["graph.pbtxt", "model.ckpt-100.meta", "saved_model"]
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_restores_from(out_prefix: Path, old: str, new_model: Path) -> None:
    """Every key the new model restores is in the output, laid out as the model asks,
    and every stored piece equals its part of the old tensor it came from."""
    spec = read_model_spec(new_model)
    aliases = EXPECTED["aliases"]
    with open_checkpoint(out_prefix) as out, open_checkpoint(FIXTURES / old) as src:
        assert sorted(out.keys()) == sorted(spec.keys)
        for key, want in spec.keys.items():
            entry = out.entry(key)
            assert entry.dtype.enum == want.dtype.enum
            assert entry.shape == want.shape
            assert sorted(s.format() for s in entry.slices) == sorted(
                s.format() for s in want.slices
            )
            old_value = src.read(aliases[key], verify=True)
            np.testing.assert_array_equal(out.read(key, verify=True), old_value)
            for spec_, part in out.slice_entries(key):
                np.testing.assert_array_equal(
                    out.read_slice_entry(part, verify=True), old_value[spec_.index()]
                )


# -- the plan ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", V2_FORMS)
def test_plan_finds_the_ground_truth_sources(form: str) -> None:
    plan = plan_remap(FIXTURES / "ffm_v1", FIXTURES / "ffm_v2" / form, rules=[RULE])
    assert plan.complete
    assert {t.key: t.source for t in plan.tensors} == EXPECTED["aliases"]
    embeddings = next(t for t in plan.tensors if t.key == "ffm/embeddings")
    assert embeddings.action == "repartition"
    assert [p.method.value for p in embeddings.pieces] == ["ranges"] * 3
    assert sorted(plan.unused_old) == sorted(EXPECTED["unused_old_keys"])


def test_plan_without_the_rule_lists_the_renamed_scope_with_a_fix() -> None:
    report = check(FIXTURES / "ffm_v1", FIXTURES / "ffm_v2" / "graph.pbtxt")
    assert not report.ok
    data = report.to_json()
    unresolved = {u["new_key"]: u for u in data["unresolved"]}
    assert sorted(unresolved) == [
        "ffm/global_bias/w",
        "ffm/global_bias/w/Adam",
        "ffm/global_bias/w/Adam_1",
    ]
    best = unresolved["ffm/global_bias/w"]["candidates"][0]["old_key"]
    assert best == "ffm/bias_net/w"
    assert data["suggested_rules"] == [RULE]
    assert data["suggested_alias_map"]["ffm/global_bias/w/Adam"] == "ffm/bias_net/w/Adam"


# -- check -------------------------------------------------------------------------------


def test_check_passes_with_the_rule_and_writes_junit(tmp_path: Path) -> None:
    junit = tmp_path / "reports" / "ci" / "check.xml"  # folders that do not exist yet
    result = run(
        "check", "--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--rule", RULE, "--junit", junit,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("OK: 27 keys resolved")
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("tests") == "27"
    assert suite.get("failures") == "0"


def test_check_fails_with_exit_1_and_a_useful_report(tmp_path: Path) -> None:
    junit = tmp_path / "check.xml"
    result = run(
        "check", "--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--junit", junit,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "ffm/global_bias/w" in result.stdout
    assert f"Try: --rule '{RULE}'" in result.stdout
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("failures") == "3"
    failed = [c.get("name") for c in suite if c.find("failure") is not None]
    assert failed == ["ffm/global_bias/w", "ffm/global_bias/w/Adam", "ffm/global_bias/w/Adam_1"]


def _v2_spec_with_an_extra_variable(tmp_path: Path) -> Path:
    spec = read_model_spec(FIXTURES / "ffm_v2" / "graph.pbtxt")
    variables: list[dict[str, Any]] = []
    for key, t in spec.keys.items():
        var: dict[str, Any] = {"name": key, "dtype": t.dtype.name, "shape": list(t.shape)}
        if t.slices:
            var["partitions"] = {"slices": [s.format() for s in t.slices]}
        variables.append(var)
    variables.append({"name": "ffm/new_head/w", "dtype": "float32", "shape": [1, 7]})
    path = tmp_path / "v2_plus_one.json"
    path.write_text(json.dumps({"variables": variables}))
    return path


def test_check_json_names_a_new_variable_that_has_no_source(tmp_path: Path) -> None:
    spec = _v2_spec_with_an_extra_variable(tmp_path)
    result = run(
        "check", "--old", FIXTURES / "ffm_v1", "--new-graph", spec, "--rule", RULE, "--json"
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [u["new_key"] for u in data["unresolved"]] == ["ffm/new_head/w"]
    assert data["unresolved"][0]["candidates"] == []  # no old tensor is [1, 7]
    assert data["counts"]["resolved"] == 27


def test_check_reads_no_tensor_data(tmp_path: Path, fixture_copy: Any) -> None:
    old = fixture_copy("ffm_v1")
    for data in old.glob("*.data-*"):
        data.write_bytes(b"")  # check must not need them
    result = run(
        "check", "--old", old, "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt", "--rule", RULE
    )
    assert result.exit_code == 0, result.output


# -- remap -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ffm_v1", "ffm_v2/graph.pbtxt"),
        ("ffm_v1_ps2", "ffm_v2_ps3/model.ckpt-100.meta"),
        ("ffm_v1", "ffm_v2/saved_model"),
    ],
)
def test_remap_writes_what_the_new_model_restores(tmp_path: Path, old: str, new: str) -> None:
    out = tmp_path / "new_model"
    result = run(
        "remap",
        "--old",
        FIXTURES / old,
        "--new-graph",
        FIXTURES / new,
        "--out",
        f"{out}/",
        "--rule",
        RULE,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}/model.ckpt-100: 27 tensors")
    assert (out / "checkpoint").read_text() == (
        'model_checkpoint_path: "model.ckpt-100"\nall_model_checkpoint_paths: "model.ckpt-100"\n'
    )
    assert sorted(p.name for p in (out / "model.ckpt-100.assets").iterdir()) == [
        "hash_filter_0",
        "hash_filter_1",
    ]
    assert_restores_from(out / "model.ckpt-100", old, FIXTURES / new)


def test_remap_with_shards_and_a_prefix(tmp_path: Path) -> None:
    out = tmp_path / "x" / "migrated"
    result = run(
        "remap", "--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out", out, "--rule", RULE, "--shards", "3", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert sorted(p.name for p in out.parent.glob("migrated.data-*")) == [
        f"migrated.data-0000{i}-of-00003" for i in range(3)
    ]
    assert not (out.parent / "checkpoint").exists()  # a prefix, not a model folder
    assert_restores_from(out, "ffm_v1", FIXTURES / "ffm_v2" / "graph.pbtxt")


def test_remap_never_modifies_its_inputs(tmp_path: Path, fixture_copy: Any) -> None:
    old, new = fixture_copy("ffm_v1"), fixture_copy("ffm_v2")
    before = (digests(old), digests(new))
    for extra in ([], ["--link"]):
        out = tmp_path / f"out{len(extra)}"
        result = run(
            "remap",
            "--old",
            old,
            "--new-graph",
            new / "graph.pbtxt",
            "--out",
            f"{out}/",
            "--rule",
            RULE,
            *extra,
        )
        assert result.exit_code == 0, result.output
    assert (digests(old), digests(new)) == before


def test_link_reuses_old_shards(tmp_path: Path, fixture_copy: Any) -> None:
    old = fixture_copy("ffm_v1_ps2")
    out = tmp_path / "linked"
    result = run(
        "remap", "--old", old, "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out", f"{out}/", "--rule", RULE, "--link", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    old_inodes = {p.stat().st_ino for p in old.glob("model.ckpt-100.data-*")}
    new_inodes = {p.stat().st_ino for p in out.glob("model.ckpt-100.data-*")}
    assert old_inodes <= new_inodes  # both old shards are hard links now
    # only the re-partitioned embedding pieces that span two old parts were written
    assert 0 < data["output"]["bytes_written"] < data["summary"]["bytes"]
    assert_restores_from(out / "model.ckpt-100", "ffm_v1_ps2", FIXTURES / "ffm_v2" / "graph.pbtxt")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(
        "remap", "--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out", f"{out}/", "--rule", RULE, "--dry-run", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["complete"] is True
    assert list(tmp_path.iterdir()) == []


def test_remap_refuses_unresolved_keys_unless_allowed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "remap",
        "--old",
        FIXTURES / "ffm_v1",
        "--new-graph",
        FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out",
        f"{out}/",
    ]
    refused = run(*args)
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == (
        "error: 3 key(s) of the new model have no fitting source (ffm/global_bias/w, "
        "ffm/global_bias/w/Adam, ffm/global_bias/w/Adam_1); add --rule or --alias-map entries "
        "(see `ckptmap check`), fill them from a checkpoint of the new model with --fill-from, "
        "or pass --allow-missing"
    )
    assert not out.exists()
    allowed = run(*args, "--allow-missing")
    assert allowed.exit_code == 0, allowed.output
    with open_checkpoint(out) as ckpt:
        assert len(ckpt.keys()) == 24
        assert "ffm/global_bias/w" not in ckpt


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "remap",
        "--old",
        FIXTURES / "ffm_v1",
        "--new-graph",
        FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out",
        f"{out}/",
        "--rule",
        RULE,
    ]
    assert run(*args).exit_code == 0
    before = digests(out)
    again = run(*args)
    assert again.exit_code == 4
    assert again.stderr.startswith(f"error: {out}/model.ckpt-100: a checkpoint already exists")
    assert digests(out) == before
    assert run(*args, "--force").exit_code == 0


def test_output_equal_to_input_is_a_usage_error(fixture_copy: Any) -> None:
    old = fixture_copy("ffm_v1")
    before = digests(old)
    result = run(
        "remap",
        "--old",
        old,
        "--new-graph",
        FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out",
        old / "model.ckpt-100",
        "--rule",
        RULE,
    )
    assert result.exit_code == 2
    assert "the output prefix is the input checkpoint" in result.stderr
    assert digests(old) == before


def test_edited_alias_output_drives_a_remap(tmp_path: Path) -> None:
    new = FIXTURES / "ffm_v2" / "graph.pbtxt"
    printed = run("alias", "--old", FIXTURES / "ffm_v1", "--new-graph", new)
    assert printed.exit_code == 1  # three keys still need a source
    doc = json.loads(printed.stdout)
    for u in doc["unresolved"]:  # the reviewer fills them in
        doc["aliases"][u["new_key"]] = u["new_key"].replace("global_bias", "bias_net")
    alias_map = tmp_path / "aliases.json"
    alias_map.write_text(json.dumps(doc))
    out = tmp_path / "out"
    result = run(
        "remap",
        "--old",
        FIXTURES / "ffm_v1",
        "--new-graph",
        new,
        "--out",
        f"{out}/",
        "--alias-map",
        alias_map,
        "--no-auto",
    )
    assert result.exit_code == 0, result.output
    assert_restores_from(out / "model.ckpt-100", "ffm_v1", new)


def test_clear_nn_with_continue_training_keeps_exactly_global_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(
        "remap", "--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out", f"{out}/", "--clear-nn", "--continue-training", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open_checkpoint(out) as ckpt, open_checkpoint(FIXTURES / "ffm_v1") as src:
        assert ckpt.keys() == ["global_step"]
        assert ckpt.read("global_step") == src.read("global_step") == 100


def test_bad_alias_map_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run(
        "check",
        "--old",
        FIXTURES / "ffm_v1",
        "--new-graph",
        FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--alias-map",
        bad,
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {bad}: not JSON at line 1 column 2 (Expecting property name enclosed in double "
        'quotes); an alias map is a JSON object {"new name": "old key"}\n'
    )


def test_execute_refuses_an_incomplete_plan() -> None:
    plan = plan_remap(FIXTURES / "ffm_v1", FIXTURES / "ffm_v2" / "graph.pbtxt")
    with pytest.raises(UnresolvedError, match="3 key"):
        execute(plan, "/nonexistent/never-written")


# -- crash safety ------------------------------------------------------------------------

_SLOW_REMAP = """
import sys, time
from ckptmap.migration import plan_remap, execute

plan = plan_remap(sys.argv[1], sys.argv[2], rules=[sys.argv[4]])
count = 0
def progress(n):
    global count
    count += 1
    if count == 10:
        print("writing", flush=True)
        time.sleep(120)
execute(plan, sys.argv[3], progress=progress)
"""


def test_sigkill_mid_remap_leaves_nothing_visible(tmp_path: Path, fixture_copy: Any) -> None:
    old = fixture_copy("ffm_v1")
    before = digests(old)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SLOW_REMAP), str(old),
         str(FIXTURES / "ffm_v2" / "graph.pbtxt"), f"{out}/", RULE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    leftovers = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not any(name.endswith(".index") or ".data-0" in name for name in leftovers), leftovers
    assert not (out / "checkpoint").exists()
    assert digests(old) == before
    shutil.rmtree(tmp_path)


def test_a_parameter_server_count_change_is_noted(tmp_path: Path) -> None:
    plan = plan_remap(
        FIXTURES / "ffm_v1_ps2", FIXTURES / "ffm_v2_ps3" / "graph.pbtxt", rules=[RULE]
    )
    assert plan.notes == (
        "the old checkpoint has hash filters for 2 parameter servers but the new model saves "
        "from 3 device(s); the filters are copied as they are, so re-shard them for the new "
        "layout if its hash tables moved",
    )
    new = FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"
    result = run(
        "remap", "--old", FIXTURES / "ffm_v1_ps2", "--new-graph", new, "--out", f"{tmp_path}/",
        "--rule", RULE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("note: the old checkpoint has hash filters for 2 parameter")
    same = _v2_spec_with_an_extra_variable(tmp_path)  # a JSON spec says nothing about devices
    assert plan_remap(FIXTURES / "ffm_v1_ps2", same, rules=[RULE]).notes == ()


def test_candidate_cutoff_drops_dissimilar_candidates() -> None:
    new = FIXTURES / "ffm_v2" / "graph.pbtxt"
    loose = check(FIXTURES / "ffm_v1", new, candidate_cutoff=0.0).to_json()["unresolved"]
    strict = check(FIXTURES / "ffm_v1", new, candidate_cutoff=0.6).to_json()["unresolved"]
    scores = [c["score"] for c in loose[0]["candidates"]]
    assert min(scores) < 0.6 <= max(scores)
    assert all(c["score"] >= 0.6 for c in strict[0]["candidates"])
    assert len(strict[0]["candidates"]) < len(loose[0]["candidates"])
    cli = run(
        "check", "--old", FIXTURES / "ffm_v1", "--new-graph", new, "--json",
        "--candidate-cutoff", "0.6",
    )  # fmt: skip
    assert json.loads(cli.stdout)["unresolved"] == strict


def test_check_with_allow_missing_accepts_keys_without_a_source() -> None:
    args = [
        "check",
        "--old",
        FIXTURES / "ffm_v1",
        "--new-graph",
        FIXTURES / "ffm_v2" / "graph.pbtxt",
    ]
    assert run(*args).exit_code == 1
    assert run(*args, "--allow-missing").exit_code == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--shards", "2", "--shard-size", "1MiB"), "give either --shards or --shard-size"),
        (("--shards", "1", "--shard-size", "1MiB"), "give either --shards or --shard-size"),
        (("--link", "--shard-size", "1MiB"), "--link reuses the old data files"),
        (("--shard-size", "0"), "'0' is not a size"),
        (("--shard-size", "lots"), "'lots' is not a size"),
    ],
)
def test_shard_options_that_do_not_go_together(
    tmp_path: Path, options: tuple[str, ...], message: str
) -> None:
    """Refused in one line before any planning or writing (exit 2, nothing written)."""
    result = run(
        "remap", "--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt",
        "--out", f"{tmp_path}/out/", "--rule", RULE, *options,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""  # no plan table: refused before planning
    assert not (tmp_path / "out").exists()
