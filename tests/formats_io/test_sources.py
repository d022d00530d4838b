"""safetensors files and npz archives as sources: the Source contract, and open_source dispatch.

The files are written by their own producers (safetensors.numpy.save_file,
numpy.savez) from TensorFlow's reading of the fixtures, with the ckptmap
manifest carrying TF dtypes and slice layouts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, Golden, assert_same_values
from readers.test_source_contract import GOLDENS, SourceContract

from ckptmap.errors import MissingInputError, UsageError
from ckptmap.readers.source import open_source
from formats_io._arrays import npz_part, safetensors_part, write_npz, write_safetensors

CONVERTED = ["ffm_v1_ps2/model.ckpt-100", "dtype_zoo/zoo"]


class TestSafetensorsFile(SourceContract):
    FORMAT = "safetensors"
    COPIES_BYTES = False
    HAS_CHECKSUMS = False

    @pytest.fixture(params=CONVERTED)
    def golden_id(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def golden(self, golden_id: str) -> Golden:
        return safetensors_part(GOLDENS[golden_id])

    @pytest.fixture
    def location(self, golden: Golden, tmp_path: Path) -> str:
        return str(write_safetensors(golden, tmp_path / "model.safetensors"))

    def test_it_names_its_original_checkpoint(self, source: object, golden: Golden) -> None:
        assert source.name == golden.prefix.name


class TestNpzArchive(SourceContract):
    FORMAT = "npz"
    COPIES_BYTES = False
    HAS_CHECKSUMS = False

    @pytest.fixture(params=[(g, c) for g in CONVERTED for c in (False, True)], ids=str)
    def case(self, request: pytest.FixtureRequest) -> tuple[str, bool]:
        return request.param  # type: ignore[no-any-return]

    @pytest.fixture
    def golden_id(self, case: tuple[str, bool]) -> str:
        return case[0]

    @pytest.fixture
    def golden(self, golden_id: str) -> Golden:
        return npz_part(GOLDENS[golden_id])

    @pytest.fixture
    def location(self, golden: Golden, case: tuple[str, bool], tmp_path: Path) -> str:
        return str(write_npz(golden, tmp_path / "model.npz", compressed=case[1]))


def test_the_zoo_keeps_every_numeric_tensorflow_dtype(tmp_path: Path) -> None:
    golden = npz_part(GOLDENS["dtype_zoo/zoo"])
    with open_source(write_npz(golden, tmp_path / "zoo.npz")) as source:
        dtypes = {spec.dtype.name for spec in source.specs().values()}
    assert {"bfloat16", "float8_e4m3fn", "qint8", "complex64", "bool"} <= dtypes


def test_a_model_folder_finds_its_safetensors_file(tmp_path: Path) -> None:
    golden = safetensors_part(GOLDENS["ffm_v1/model.ckpt-100"])
    write_safetensors(golden, tmp_path / "model.safetensors")
    with open_source(tmp_path) as source:
        assert source.format == "safetensors"
        assert source.where == str(tmp_path / "model.safetensors")
        for t in golden.tensors:
            assert_same_values(source.read(t.name), t.value)


def test_a_model_folder_finds_its_npz_archive(tmp_path: Path) -> None:
    golden = npz_part(GOLDENS["ffm_v1/model.ckpt-100"])
    write_npz(golden, tmp_path / "model.npz")  # what convert --to npz writes into a folder
    with open_source(tmp_path) as source:
        assert source.format == "npz"
        assert source.where == str(tmp_path / "model.npz")
        for t in golden.tensors:
            assert_same_values(source.read(t.name), t.value)
    (tmp_path / "model.npz").rename(tmp_path / "weights.npz")  # the one archive, any name
    with open_source(tmp_path) as source:
        assert source.where == str(tmp_path / "weights.npz")
    write_npz(golden, tmp_path / "other.npz")  # two archives: which one is not guessed
    with pytest.raises(MissingInputError):
        open_source(tmp_path)


def test_a_sharded_model_reads_through_its_index(tmp_path: Path) -> None:
    import json

    from safetensors.numpy import save_file

    first = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    second = {"b/c": np.array([1, -2], np.int64), "d": np.array(True)}
    save_file(first, tmp_path / "model-00001-of-00002.safetensors")
    save_file(second, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors"}
    weight_map |= {k: "model-00002-of-00002.safetensors" for k in second}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 41}, "weight_map": weight_map}))
    with open_source(tmp_path) as source:
        assert source.keys() == ["a", "b/c", "d"]
        assert source.where == str(index)
        assert source.name == "model"
        for key, value in (first | second).items():
            np.testing.assert_array_equal(source.read(key), value)


def test_step_with_an_array_file_is_a_usage_error(tmp_path: Path) -> None:
    path = write_npz(npz_part(GOLDENS["ffm_v1/model.ckpt-100"]), tmp_path / "m.npz")
    with pytest.raises(UsageError, match="--step picks a checkpoint in a model folder"):
        open_source(path, step=1)


def test_a_folder_without_any_checkpoint_is_still_missing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(MissingInputError):
        open_source(tmp_path)


def test_fixture_folders_still_open_as_tensorflow() -> None:
    with open_source(FIXTURES / "ffm_v1") as source:
        assert source.format == "tf"


def _mapped(path: Path) -> bool:
    """Whether this process has ``path`` memory-mapped (Linux: /proc/self/maps)."""
    return str(path.resolve()) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_blocks_of_rows_are_read_without_mapping_the_file(tmp_path: Path, kind: str) -> None:
    """Convert and diff read a tensor block by block: only those bytes, never the whole file."""
    from safetensors.numpy import save_file

    values = np.arange(64 * 1024, dtype=np.float32).reshape(64, 1024)
    path = tmp_path / f"model.{kind}"
    if kind == "npz":
        np.savez(path, w=values)
    else:
        save_file({"w": values}, str(path))
    with open_source(path) as source:
        for start in range(0, 64, 8):
            box = ((start, start + 8), (3, 1000))
            np.testing.assert_array_equal(
                source.read_box("w", box), values[start : start + 8, 3:1000]
            )
        assert not _mapped(path)
        np.testing.assert_array_equal(
            source.read("w"), values
        )  # a whole tensor is a view of the map
        assert _mapped(path)


def test_a_file_cut_short_after_opening_is_named_when_its_rows_are_read(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from ckptmap.errors import CorruptCheckpointError

    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones((16, 256), np.float32)}, str(path))
    with open_source(path) as source:
        with open(path, "r+b") as file:
            file.truncate(path.stat().st_size - 1024)
        with pytest.raises(CorruptCheckpointError, match="truncated after it was opened"):
            source.read_box("w", ((12, 16), (0, 256)))


def test_inspect_names_the_array_file_it_lists(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ckptmap.cli import main

    golden = GOLDENS["ffm_v1/model.ckpt-100"]
    (tmp_path / "one").mkdir()
    (tmp_path / "zip").mkdir()
    write_safetensors(safetensors_part(golden), tmp_path / "one" / "model.safetensors")
    write_npz(npz_part(golden), tmp_path / "zip" / "model.npz")
    runner = CliRunner()
    shards = runner.invoke(
        main,
        ["convert", "--old", str(golden.prefix), "--to", "safetensors", "--max-shard-size", "2KB",
         "--out", str(tmp_path / "shards")],
    )  # fmt: skip
    assert shards.exit_code == 0, shards.output
    expected = {
        "one": f"safetensors file {tmp_path / 'one' / 'model.safetensors'}",
        "zip": f"npz archive {tmp_path / 'zip' / 'model.npz'}",
        "shards": "safetensors shards listed in "
        f"{tmp_path / 'shards' / 'model.safetensors.index.json'}",
    }
    for folder, header in expected.items():
        result = runner.invoke(main, ["inspect", str(tmp_path / folder)])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == header
        assert sum(t.name in result.output for t in golden.tensors) == len(golden.tensors)


def _bytes_read() -> int:
    """The bytes this process has read through read(2) and the like (Linux: /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("kind", ["safetensors", "shards", "npz"])
def test_inspect_and_check_read_only_the_headers(tmp_path: Path, kind: str) -> None:
    """32 MB of tensors: a listing and a check read the headers; values are not read or mapped."""
    import json

    from safetensors.numpy import save_file

    from ckptmap import check
    from ckptmap.inspect import inspect_checkpoint

    arrays = {f"layer_{i}/kernel": np.full((1024, 2048), i, np.float32) for i in range(4)}
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "npz":
        np.savez(folder / "model.npz", **arrays)  # type: ignore[arg-type]
    elif kind == "safetensors":
        save_file(arrays, str(folder / "model.safetensors"))
    else:
        weight_map = {}
        for i, (key, value) in enumerate(arrays.items()):
            name = f"model-{i + 1:05d}-of-00004.safetensors"
            save_file({key: value}, str(folder / name))
            weight_map[key] = name
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    spec = tmp_path / "new.json"
    variables = [{"name": k, "dtype": "float32", "shape": [1024, 2048]} for k in arrays]
    spec.write_text(json.dumps({"version": 1, "variables": variables}))
    for _ in range(2):  # the first round imports what the commands need
        before = _bytes_read()
        report = inspect_checkpoint(folder)
        assert check(folder, spec).ok
        read = _bytes_read() - before
    assert [t.name for t in report.tensors] == sorted(arrays)
    assert read < 256 * 1024, read  # headers, the spec, the index JSON: a few KB
    assert not any(_mapped(path) for path in folder.iterdir())
