"""``ckptmap diff``: identical, renamed, changed values with their drift, dtype changes, keys.

Checkpoints are the TF-written fixtures, their conversions, and array files
written here with numpy and the safetensors package from the golden values
(one value changed, a key renamed, a dtype widened...), so every difference
the test expects was put there on purpose.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import FIXTURES
from readers.test_source_contract import GOLDENS

from ckptmap import remap
from ckptmap.cli import main
from ckptmap.convert import convert
from ckptmap.diff import diff_checkpoints

PS2 = GOLDENS["ffm_v1_ps2/model.ckpt-100"]
V1 = FIXTURES / "ffm_v1"
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
EMB = "ffm/embeddings"


def _values() -> dict[str, np.ndarray]:
    """The golden values of ffm_v1_ps2 (TensorFlow's own reading), as plain arrays."""
    return {t.name: np.array(t.value) for t in PS2.tensors}


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _cli(*args: object) -> Any:
    return CliRunner().invoke(main, ["diff", *map(str, args)])


def test_a_checkpoint_and_its_conversions_are_identical(tmp_path: Path) -> None:
    st = tmp_path / "model.safetensors"
    convert(PS2.prefix, st, to="safetensors")
    npz = _npz(tmp_path / "plain.npz", _values())  # numpy's own archive, no manifest
    for other in (st, npz, PS2.prefix):
        report = diff_checkpoints(PS2.prefix, other, values=True)
        assert report.identical, other
        assert report.exit_code == 0
        assert len(report.compared) == len(PS2.tensors)
        assert all(c.drift is not None and c.drift.max_abs == 0 for c in report.compared)
    # the plain npz stores every key whole: a layout change, not a difference
    partitioned = {c.b for c in diff_checkpoints(PS2.prefix, npz).compared if c.repartitioned}
    assert EMB in partitioned
    result = _cli(PS2.prefix, st)
    assert result.exit_code == 0
    assert "IDENTICAL" in result.stdout
    assert f"{len(PS2.tensors)} of {len(PS2.tensors)} compared keys equal" in result.stdout


def test_one_changed_value_is_named_with_its_drift(tmp_path: Path) -> None:
    arrays = _values()
    before = arrays[EMB].copy()
    arrays[EMB] = before.copy()
    arrays[EMB][7, 3] += 0.5
    changed = _npz(tmp_path / "changed.npz", arrays)
    report = diff_checkpoints(PS2.prefix, changed, values=True, chunk_bytes=48)
    assert not report.identical
    ((item,),) = [report.different]
    assert item.b == EMB
    assert item.drift is not None
    assert item.drift.max_abs == pytest.approx(0.5, abs=1e-6)
    expected = np.linalg.norm(arrays[EMB] - before) / np.linalg.norm(before)
    assert item.drift.rel_l2 == pytest.approx(float(expected), rel=1e-6)
    assert report.counts()["equal"] == len(PS2.tensors) - 1
    result = _cli(PS2.prefix, changed, "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["identical"] is False
    assert [k["b"] for k in body["keys"] if not k["equal"]] == [EMB]
    assert body["keys"][0]["drift"] is None  # measured only with --values


def test_nan_and_inf_are_counted_on_each_side(tmp_path: Path) -> None:
    arrays = _values()
    arrays[EMB] = arrays[EMB].copy()
    arrays[EMB][0, :3] = np.nan
    arrays[EMB][1, 0] = np.inf
    report = diff_checkpoints(PS2.prefix, _npz(tmp_path / "bad.npz", arrays), values=True)
    (item,) = report.different
    assert item.drift is not None
    assert (item.drift.nan_a, item.drift.nan_b, item.drift.inf_a, item.drift.inf_b) == (0, 3, 0, 1)
    assert item.drift.max_abs == 0  # the finite elements agree
    assert math.isfinite(item.drift.rel_l2 or 0)


def test_a_renamed_key_with_the_same_bytes_is_found(tmp_path: Path) -> None:
    arrays = _values()
    arrays["ffm/global_bias/w"] = arrays.pop("ffm/bias_net/w")
    report = diff_checkpoints(PS2.prefix, _npz(tmp_path / "renamed.npz", arrays))
    assert [(r.a, r.b) for r in report.renamed] == [("ffm/bias_net/w", "ffm/global_bias/w")]
    assert report.only_a == ()
    assert report.only_b == ()
    assert report.exit_code == 1
    result = _cli(PS2.prefix, tmp_path / "renamed.npz")
    assert "Same bytes, other name" in result.stdout
    assert "1 renamed" in result.stdout


def test_dtype_changes_and_added_and_removed_keys(tmp_path: Path) -> None:
    arrays = _values()
    arrays["global_step"] = arrays["global_step"].astype(np.int32)
    arrays["ffm/bias_net/w"] = arrays["ffm/bias_net/w"].astype(np.float64)
    del arrays["beta1_power"]
    arrays["extra/new"] = np.zeros(3, np.float32)
    report = diff_checkpoints(PS2.prefix, _npz(tmp_path / "other.npz", arrays))
    changed = {(c.b, c.a_dtype, c.b_dtype) for c in report.changed}
    assert changed == {("global_step", "int64", "int32"), ("ffm/bias_net/w", "float32", "float64")}
    assert report.only_a == ("beta1_power",)
    assert report.only_b == ("extra/new",)
    assert not report.renamed  # zeros(3) has no twin in A
    body = json.loads(_cli(PS2.prefix, tmp_path / "other.npz", "--json").stdout)
    assert body["only_a"] == ["beta1_power"]
    assert body["counts"]["changed"] == 2


def test_diff_with_the_alias_map_of_a_remap_reports_every_key_equal(tmp_path: Path) -> None:
    new_graph = FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"  # renamed layers, 4 -> 3 partitions
    aliases = CliRunner().invoke(
        main, ["alias", "--old", str(V1), "--new-graph", str(new_graph), "--rule", RULE]
    )
    assert aliases.exit_code == 0, aliases.output
    alias_map = tmp_path / "aliases.json"
    alias_map.write_text(aliases.stdout)
    out = tmp_path / "new" / "model.ckpt-100"
    remap(V1, new_graph, out, rules=[RULE])
    result = _cli(V1, out, "--alias-map", alias_map, "--values")
    assert result.exit_code == 0, result.output
    assert "IDENTICAL" in result.stdout
    report = diff_checkpoints(V1, out, alias_map=alias_map, values=True)
    assert report.different == ()
    assert report.changed == ()
    assert report.only_b == ()
    assert {c.how for c in report.compared} == {"alias map"}
    assert sum(c.repartitioned for c in report.compared) == 3
    assert report.only_a  # the old layer the new model dropped: listed, no difference
    # without the map the renamed layers are keys of one side (or renamed), not equal pairs
    assert not diff_checkpoints(V1, out).identical
    assert diff_checkpoints(V1, out, rules=[RULE, "^ffm/tower/(.*)$=ffm/tower/tower/{}"]).changed


def test_diff_follows_a_transposed_alias_map_entry(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    weight = np.arange(15, dtype=np.float32).reshape(3, 5)
    st = tmp_path / "torch.safetensors"
    save_file({"fc.weight": weight}, str(st))
    tf_like = _npz(tmp_path / "tf.npz", {"dense/kernel": weight.T.copy()})
    entries = {"dense/kernel": {"from": "fc.weight", "transpose": [1, 0]}}
    report = diff_checkpoints(st, tf_like, alias_map=entries, values=True)
    assert report.identical
    assert report.compared[0].transpose == (1, 0)
    assert not diff_checkpoints(st, tf_like, alias_map={"dense/kernel": "fc.weight"}).identical


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    result = _cli(PS2.prefix, tmp_path / "missing.safetensors")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    bad_map = tmp_path / "map.json"
    bad_map.write_text(json.dumps({"nope": "beta1_power"}))
    result = _cli(PS2.prefix, PS2.prefix, "--alias-map", bad_map)
    assert result.exit_code == 2
    assert "checkpoint b has no key 'nope'" in result.stderr


def test_a_zarr3_store_and_a_safetensors_file_compare_as_sources(tmp_path: Path) -> None:
    pytest.importorskip("tensorstore")
    store = tmp_path / "model.zarr"
    convert(PS2.prefix, store)
    st = tmp_path / "model.safetensors"
    convert(store, st, to="safetensors")  # zarr3 -> safetensors: every tensor assembled
    report = diff_checkpoints(store, st, values=True)
    assert (report.a_format, report.b_format) == ("zarr3", "safetensors")
    assert report.identical
    arrays = _values()
    arrays[EMB] = arrays[EMB] * 2
    report = diff_checkpoints(store, _npz(tmp_path / "x.npz", arrays))
    assert [c.b for c in report.different] == [EMB]


def test_a_shape_change_is_listed_not_compared(tmp_path: Path) -> None:
    arrays = _values()
    arrays["ffm/bias_net/w"] = arrays["ffm/bias_net/w"].reshape(-1)  # [200, 1] -> [200]
    result = _cli(PS2.prefix, _npz(tmp_path / "flat.npz", arrays), "--values", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["changed"] == [
        {"a": "ffm/bias_net/w", "b": "ffm/bias_net/w", "a_dtype": "float32",
         "b_dtype": "float32", "a_shape": [200, 1], "b_shape": [200], "how": "same name"}
    ]  # fmt: skip
    assert "ffm/bias_net/w" not in {k["b"] for k in body["keys"]}
    assert body["counts"]["different"] == 0


def test_rules_on_the_command_line_pair_renamed_keys(tmp_path: Path) -> None:
    arrays = {
        k.replace("ffm/bias_net/", "ffm/global_bias/"): v for k, v in _values().items()
    }  # B migrated from A: a renamed scope
    renamed = _npz(tmp_path / "renamed.npz", arrays)
    result = _cli(PS2.prefix, renamed, "--rule", RULE, "--values", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["mapped"]
    assert body["identical"]
    hows = {k["b"]: k["how"] for k in body["keys"]}
    assert hows["ffm/global_bias/w"] == f"rule {RULE.split('=')[0]}"
    assert {h for b, h in hows.items() if "global_bias" not in b} == {"same name"}
    assert _cli(PS2.prefix, renamed).exit_code == 1  # without the rule: keys only in A / B


def test_the_json_report_has_the_documented_fields(tmp_path: Path) -> None:
    """Every field docs/json-schema.md shows for `diff --json` is in a real report, no other."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "json-schema.md").read_text()
    section = doc.split("## `ckptmap diff --json`", 1)[1].split("\n## ", 1)[0]
    example = json.loads(re.search(r"```json\n(.*?)\n```", section, re.DOTALL).group(1))
    arrays = _values()
    arrays[EMB] = arrays[EMB] + 0.5
    arrays["global_step"] = arrays["global_step"].astype(np.int32)
    arrays["ffm/global_bias/w"] = arrays.pop("ffm/bias_net/w")
    body = json.loads(
        _cli(PS2.prefix, _npz(tmp_path / "x.npz", arrays), "--values", "--json").stdout
    )
    assert body.keys() == example.keys()
    assert body["counts"].keys() == example["counts"].keys()
    for field in ("keys", "changed", "renamed"):
        assert body[field], field
        assert body[field][0].keys() == example[field][0].keys(), field
    drift = next(k["drift"] for k in body["keys"] if k["b"] == EMB)
    assert drift.keys() == example["keys"][0]["drift"].keys()
    assert drift["max_abs"] == pytest.approx(0.5)


def test_a_transposed_pair_is_compared_block_by_block(tmp_path: Path) -> None:
    """Blocks of the transposed view of A against B's stream: the same verdict and drift."""
    from safetensors.numpy import save_file

    weight = np.arange(7 * 300, dtype=np.float32).reshape(7, 300)
    st = tmp_path / "torch.safetensors"
    save_file({"fc.weight": weight}, str(st))
    kernel = weight.T.copy()
    kernel[123, 4] += 0.25
    tf_like = _npz(tmp_path / "tf.npz", {"dense/kernel": kernel})
    entries = {"dense/kernel": {"from": "fc.weight", "transpose": [1, 0]}}
    reports = [
        diff_checkpoints(st, tf_like, alias_map=entries, values=True, chunk_bytes=size)
        for size in (48, 1000, 1 << 20)
    ]
    for report in reports:
        (pair,) = report.compared
        assert not pair.equal
        first = reports[0].compared[0].drift
        assert pair.drift.max_abs == first.max_abs == pytest.approx(0.25)
        assert pair.drift.rel_l2 == pytest.approx(first.rel_l2, rel=1e-12)
