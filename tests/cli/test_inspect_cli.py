"""``ckptmap inspect`` and the library behind it (ckptmap/inspect.py, cli/inspect_cmd.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES, GOLDEN_JSONS, Golden, assert_same_values, flip_byte, load_golden

from ckptmap.cli import main
from ckptmap.errors import UsageError
from ckptmap.inspect import inspect_checkpoint
from ckptmap.readers import open_checkpoint

GOLDENS = [load_golden(p) for p in GOLDEN_JSONS]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["inspect", *args], catch_exceptions=False)


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(params=GOLDENS, ids=lambda g: g.id)
def golden(request: pytest.FixtureRequest) -> Golden:
    return request.param  # type: ignore[no-any-return]


# -- listing ---------------------------------------------------------------------------


def test_json_lists_the_golden_tensors(golden: Golden) -> None:
    report = run_json(str(golden.prefix))
    assert [(t["name"], t["dtype"], t["shape"]) for t in report["tensors"]] == [
        (t.name, t.dtype, list(t.shape)) for t in golden.tensors
    ]
    with open_checkpoint(golden.prefix) as ckpt:
        for t in golden.tensors:
            assert_same_values(ckpt.read(t.name), t.value)
        shards = [
            {"path": str(ckpt.shard_path(i)), "size": ckpt.shard_path(i).stat().st_size}
            for i in range(ckpt.num_shards)
        ]
    assert report["checkpoint"] == {
        "prefix": str(golden.prefix),
        "index": f"{golden.prefix}.index",
        "num_shards": len(shards),
        "shards": shards,
        "byte_order": "<",
        "format": "tf",
    }
    assert report["totals"] == {
        "tensors": len(golden.tensors),
        "bytes": sum(t["nbytes"] for t in report["tensors"]),
    }


def test_json_of_a_partitioned_and_sharded_checkpoint() -> None:
    report = run_json(str(FIXTURES / "ffm_v1_ps2"))
    tensors = {t["name"]: t for t in report["tensors"]}
    assert tensors["ffm/embeddings"] == {
        "name": "ffm/embeddings",
        "dtype": "float32",
        "shape": [200, 16],
        "nbytes": 200 * 16 * 4,
        "shard": None,
        "slices": [
            "200 16 50,50:0,16",
            "200 16 150,50:0,16",
            "200 16 0,50:0,16",
            "200 16 100,50:0,16",
        ],
    }
    assert tensors["global_step"]["slices"] == []
    assert report["checkpoint"]["num_shards"] == 2
    assert report["assets"] == [
        {
            "path": str(FIXTURES / "ffm_v1_ps2" / "model.ckpt-100.assets" / f"hash_filter_{i}"),
            "name": f"hash_filter_{i}",
            "size": 320,
            "kind": "hash_filter",
            "ps_index": i,
            "legacy": False,
        }
        for i in (0, 1)
    ]


def test_json_with_dtypes_of_every_kind() -> None:
    report = run_json(str(FIXTURES / "dtype_zoo" / "zoo.index"))
    dtypes = {t["name"]: t["dtype"] for t in report["tensors"]}
    assert dtypes["bfloat16"] == "bfloat16"
    assert dtypes["qint8"] == "qint8"
    assert dtypes["string"] == "string"
    assert dtypes["float16"] == "float16"
    assert dtypes["ünïcode/名前"] == "float32"


def test_step_and_filter() -> None:
    report = run_json(str(FIXTURES / "ffm_v1"), "--step", "50", "--filter", r"^ffm/bias_net/w")
    assert report["checkpoint"]["prefix"] == str(FIXTURES / "ffm_v1" / "model.ckpt-50")
    assert [t["name"] for t in report["tensors"]] == [
        "ffm/bias_net/w",
        "ffm/bias_net/w/Adam",
        "ffm/bias_net/w/Adam_1",
    ]
    assert report["totals"] == {"tensors": 3, "bytes": 3 * 800}
    assert report["assets"] == []


def test_table_output_names_every_tensor_in_full() -> None:
    result = run(str(FIXTURES / "dtype_zoo"))
    assert result.exit_code == 0
    assert result.stderr == ""
    with open_checkpoint(FIXTURES / "dtype_zoo") as ckpt:
        for key in ckpt:
            assert key in result.stdout
    assert "43 tensors" in result.stdout
    assert "3 on axis 0" in result.stdout  # sliced/rows


def test_table_output_lists_assets() -> None:
    result = run(str(FIXTURES / "ffm_v1"))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    prefix = FIXTURES / "ffm_v1" / "model.ckpt-100"
    assert lines[0] == f"Checkpoint {prefix} (1 data file, little-endian)"
    assets = [line.split() for line in lines[lines.index("Assets") + 1 :]]
    assert assets[:3] == [  # hash_filter_0 once: in .assets/ and legacy beside the prefix
        ["name", "kind", "ps", "size", "legacy"],
        ["hash_filter_0", "hash_filter", "0", "320", "bytes", "also"],
        ["hash_filter_1", "hash_filter", "1", "320", "bytes"],
    ]
    assert lines[-1].startswith("legacy 'also': the file is in .assets/ and beside the prefix")


# -- values and statistics -------------------------------------------------------------------


def test_tensor_prints_values_like_numpy() -> None:
    result = run(str(FIXTURES / "dtype_zoo"), "--tensor", "sliced/int64_rows")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "sliced/int64_rows  int64  [6, 2]",
        *np.array2string(np.arange(12).reshape(6, 2)).splitlines(),
    ]


def test_tensor_summarizes_large_values() -> None:
    result = run(str(FIXTURES / "ffm_v1"), "--tensor", "ffm/embeddings")
    assert result.exit_code == 0
    assert "..." in result.stdout
    assert len(result.stdout.splitlines()) < 20


def test_tensor_prints_strings() -> None:
    result = run(str(FIXTURES / "dtype_zoo"), "--tensor", "string")
    assert result.stdout.splitlines()[1] == r"[b'hello' b'w\xc3\xb6rld' b'' b'\x00\xff\x01']"


def test_unknown_tensor_is_an_error() -> None:
    result = run(str(FIXTURES / "ffm_v1"), "--tensor", "global-step")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {FIXTURES / 'ffm_v1' / 'model.ckpt-100.index'}: no tensor 'global-step' in this "
        "checkpoint (did you mean 'global_step'? list the keys with `ckptmap inspect`)\n"
    )


def test_stats_match_numpy() -> None:
    report = run_json(str(FIXTURES / "ffm_v1_ps2"), "--stats")
    golden = {
        t.name: t.value
        for t in load_golden(FIXTURES / "golden/ffm_v1_ps2/model.ckpt-100.json").tensors
    }
    for t in report["tensors"]:
        value = golden[t["name"]].astype(np.float64)
        stats = t["stats"]
        assert stats["min"] == pytest.approx(value.min())
        assert stats["max"] == pytest.approx(value.max())
        assert stats["mean"] == pytest.approx(value.mean(), abs=1e-12)
        assert stats["std"] == pytest.approx(value.std(), rel=1e-9, abs=1e-15)
        assert (stats["nan"], stats["inf"]) == (0, 0)


def test_stats_of_special_values() -> None:
    report = run_json(str(FIXTURES / "dtype_zoo"), "--stats")
    stats = {t["name"]: t["stats"] for t in report["tensors"]}
    assert stats["string"] is None
    assert stats["complex64"] is None
    assert stats["zero_size/float32"] == {
        "min": None, "max": None, "mean": None, "std": None, "nan": 0, "inf": 0,
    }  # fmt: skip
    assert stats["int64"]["min"] == -(2**63)  # exact, not rounded through float64
    assert stats["uint64"]["max"] == 2**64 - 1
    assert stats["scalar/bool"]["max"] == 1


def test_library_stats_in_chunks_count_nan_and_inf(monkeypatch: pytest.MonkeyPatch) -> None:
    from ckptmap import value_stats

    monkeypatch.setattr(value_stats, "STATS_CHUNK_ELEMENTS", 7)
    report = inspect_checkpoint(FIXTURES / "ffm_v1", stats=True, filter="^ffm/embeddings$")
    (info,) = report.tensors
    with open_checkpoint(FIXTURES / "ffm_v1") as ckpt:
        value = ckpt.read("ffm/embeddings").astype(np.float64)
    assert info.stats is not None
    assert info.stats.mean == pytest.approx(value.mean(), abs=1e-12)
    assert info.stats.std == pytest.approx(value.std(), rel=1e-9)


# -- verification --------------------------------------------------------------------------


def test_verify_passes_on_every_fixture(golden: Golden) -> None:
    result = run(str(golden.prefix), "--verify")
    assert result.exit_code == 0, result.stderr
    assert "CRC32C: every tensor matches its stored checksum." in result.stdout


def test_verify_names_the_damaged_tensor(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "ffm_v2_ps3", tmp_path / "m")
    with open_checkpoint(tmp_path / "m") as ckpt:
        spec, part = ckpt.slice_entries("ffm/embeddings/Adam")[1]
        shard = ckpt.shard_path(part.shard_id)
    flip_byte(shard, part.offset + 5)
    assert run(str(tmp_path / "m")).exit_code == 0  # listing reads no data
    result = run(str(tmp_path / "m"), "--verify")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"error: {shard}: tensor 'ffm/embeddings/Adam[{spec.format().split()[-1]}]': CRC32C"
        " mismatch: stored 0x"
    )
    assert result.stderr.count("\n") == 1


# -- options and help ---------------------------------------------------------------------


def test_step_with_an_index_path_is_a_usage_error() -> None:
    result = run(str(FIXTURES / "ffm_v1" / "model.ckpt-50.index"), "--step", "50")
    assert result.exit_code == 2
    assert "--step cannot be used with an .index path" in result.stderr


def test_tensor_with_json_is_a_usage_error() -> None:
    result = run(str(FIXTURES / "ffm_v1"), "--tensor", "global_step", "--json")
    assert result.exit_code == 2
    assert "--tensor prints values as text" in result.stderr


def test_bad_filter_is_a_usage_error() -> None:
    result = run(str(FIXTURES / "ffm_v1"), "--filter", "dense_(")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: filter 'dense_(' is not a valid regular expression "
        "(missing ), unterminated subpattern at position 6)\n"
    )


def test_missing_path() -> None:
    result = run(str(FIXTURES / "no_such_model"))
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: {FIXTURES / 'no_such_model'}: no such file, folder or checkpoint prefix "
        "(expected a model folder, a checkpoint prefix or its .index file, or a .safetensors or "
        ".npz file)\n"
    )


def test_help() -> None:
    result = CliRunner().invoke(main, ["inspect", "-h"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "  Examples:\n    ckptmap inspect fixtures/ffm_v1\n" in result.stdout
    for option in ("--step", "--json", "--stats", "--verify", "--tensor", "--filter"):
        assert option in result.stdout
    command = main.get_command(click.Context(main), "inspect")
    assert command is not None
    assert all(param.help for param in command.params if param.param_type_name == "option")


# -- the library --------------------------------------------------------------------------


def test_library_report() -> None:
    report = inspect_checkpoint(FIXTURES / "ffm_v1", tensor="global_step")
    assert [t.name for t in report.tensors] == ["global_step"]
    assert report.values is not None
    assert report.values.item() == 100
    assert report.to_json()["totals"] == {"tensors": 1, "bytes": 8}
    assert "stats" not in report.to_json()["tensors"][0]


def test_library_refuses_tensor_and_filter_together() -> None:
    with pytest.raises(UsageError, match="choose either a tensor or a filter, not both"):
        inspect_checkpoint(FIXTURES / "ffm_v1", tensor="global_step", filter="step")
