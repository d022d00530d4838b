"""``ckptmap convert``: the command around the zarr3 writer.

Where the source comes from (any ``open_source`` input: a local or remote
checkpoint, a store), how the store is committed (a temporary folder renamed
into place; a marker key at a URL), and what the user sees on bad input.
What the arrays hold is ``tests/writers/test_zarr3.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import FIXTURES, assert_same_values

from ckptmap.cli import main
from ckptmap.cli._output import exit_code_for
from ckptmap.convert import convert
from ckptmap.errors import (
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    OutputError,
    OutputExistsError,
    UsageError,
)
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.readers.zarr_store import is_zarr_store, open_store, shared_context
from ckptmap.storage import open_location

ts = pytest.importorskip("tensorstore")


def _same_values(store_path: str | Path, prefix: str | Path) -> None:
    with open_store(store_path) as store, open_checkpoint(prefix) as ckpt:
        assert store.specs() == ckpt.specs()
        for key in ckpt:
            assert_same_values(store.read(key), ckpt.read(key))


def test_a_local_store_appears_whole(tmp_path: Path) -> None:
    out = tmp_path / "store.zarr"
    result = convert(FIXTURES / "dtype_zoo" / "zoo", out)
    with open_checkpoint(FIXTURES / "dtype_zoo" / "zoo") as ckpt:
        assert result.source == str(ckpt.prefix)
        assert result.arrays == len(ckpt.keys())
    assert result.out == str(out)
    assert (result.to, result.ocdbt) == ("zarr3", False)
    assert result.store_bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert is_zarr_store(out)
    assert list(tmp_path.iterdir()) == [out]  # no temporary folder left behind
    _same_values(out, FIXTURES / "dtype_zoo" / "zoo")


@pytest.mark.parametrize("ocdbt", [False, True], ids=["zarr3", "ocdbt"])
def test_memory_url_store(ocdbt: bool) -> None:
    url = f"memory://convert-test-{int(ocdbt)}/store"
    prefix = FIXTURES / "ffm_v2_ps3" / "model.ckpt-100"
    result = convert(prefix, url, ocdbt=ocdbt)
    assert result.store_bytes is None
    assert is_zarr_store(url)
    _same_values(url, prefix)
    kvstore = ts.KvStore.open(url + "/", context=shared_context()).result()
    if ocdbt:
        kvstore = ts.KvStore.open(
            {"driver": "ocdbt", "base": url + "/"}, context=shared_context()
        ).result()
    assert kvstore.read("ckptmap-incomplete").result().state == "missing"
    with pytest.raises(OutputExistsError, match="a store already exists here"):
        convert(prefix, url, ocdbt=ocdbt)
    convert(FIXTURES / "ffm_v1", url, ocdbt=ocdbt, force=True)
    with open_store(url) as replaced:
        assert "ffm/bias_net/w" in replaced


def test_a_checkpoint_at_a_url_converts() -> None:
    """A remote source is read through its location, block by block, CRCs checked."""
    folder = open_location("memory://convert-test-remote-source/")
    for path in (FIXTURES / "ffm_v1_ps2").iterdir():
        if path.is_file():
            folder.write(path.name, path.read_bytes())
    url = "memory://convert-test-remote-out/store"
    result = convert("memory://convert-test-remote-source/", url)
    assert result.source == "memory://convert-test-remote-source/model.ckpt-100"
    _same_values(url, FIXTURES / "ffm_v1_ps2")


def test_a_store_converts_again(tmp_path: Path) -> None:
    first = tmp_path / "first.zarr"
    convert(FIXTURES / "ffm_v1_ps2", first)
    second = tmp_path / "second.zarr"
    result = convert(first, second, ocdbt=True)
    assert result.source == str(first)
    _same_values(second, FIXTURES / "ffm_v1_ps2")
    with pytest.raises(UsageError, match="--step picks a checkpoint in a model folder"):
        convert(first, tmp_path / "third.zarr", step=100)
    assert not (tmp_path / "third.zarr").exists()


# -- the CLI, bad input and commit semantics --------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["convert", *args], catch_exceptions=False)


def test_cli_writes_a_store_and_reports_json(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    result = _cli("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr3", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["arrays"] == 33
    assert doc["to"] == "zarr3"
    assert doc["ocdbt"] is False
    assert doc["paths"]["ffm/embeddings"] == "ffm.embeddings"
    assert doc["store_bytes"] > doc["tensor_bytes"] > 0
    assert doc["source"] == str(FIXTURES / "ffm_v1" / "model.ckpt-100")
    assert open_store(out).keys() == open_checkpoint(FIXTURES / "ffm_v1").keys()


def test_cli_refuses_an_existing_output_without_force(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    args = ("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr3", "--out", str(out))
    assert _cli(*args).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    result = _cli(*args)
    assert result.exit_code == 4
    assert result.stderr == f"error: {out}: already exists (pass --force to replace it)\n"
    assert sorted(p.name for p in out.iterdir()) == before
    again = _cli(*args[:-1], str(out), "--force", "--step", "50")
    assert again.exit_code == 0, again.output
    assert (
        "model.ckpt-50"
        in json.loads((out / "zarr.json").read_text())["attributes"]["ckptmap"]["source"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1.zarr"]


def test_force_does_not_replace_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="is not a zarr store; refusing to replace it"):
        convert(FIXTURES / "ffm_v1", out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "x"
    result = _cli("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr4", "--out", str(out))
    assert result.exit_code == 2
    assert "'zarr4' is not one of 'zarr3', 'safetensors', 'npz'" in result.stderr
    assert not out.exists()
    with pytest.raises(UsageError, match="unknown store format 'n5'"):
        convert(FIXTURES / "ffm_v1", out, to="n5")


def test_unknown_url_scheme_is_an_output_error() -> None:
    result = _cli("--old", str(FIXTURES / "ffm_v1"), "--to", "zarr3", "--out", "nope://x/y")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: nope://x/y: not a storage location tensorstore")
    assert result.stderr.count("\n") == 1


def test_missing_input_checkpoint(tmp_path: Path) -> None:
    result = _cli("--old", str(tmp_path / "none"), "--to", "zarr3", "--out", str(tmp_path / "o"))
    assert result.exit_code == 3
    assert not (tmp_path / "o").exists()


def test_missing_array_in_a_store_is_an_input_error(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    convert(FIXTURES / "ffm_v1", out)
    shutil.rmtree(out / "ffm.embeddings")
    with open_store(out) as store:
        assert store.read("global_step") == 100
        with pytest.raises(MissingInputError) as info:
            store.read("ffm/embeddings")
    assert str(info.value) == (
        f"{out}/ffm.embeddings: the array of 'ffm/embeddings' is missing from the store "
        "(the store is incomplete or was modified; convert again)"
    )
    assert exit_code_for(info.value) == 3


def test_a_store_without_manifest_is_not_opened(tmp_path: Path) -> None:
    out = tmp_path / "v1.zarr"
    convert(FIXTURES / "ffm_v1", out)
    (out / "zarr.json").unlink()
    assert not is_zarr_store(out)
    with pytest.raises(MissingInputError, match="no zarr.json at its root"):
        open_store(out)


def test_an_interrupted_url_store_is_reported_incomplete() -> None:
    url = "memory://convert-test-partial/store"
    store = ts.KvStore.open(url + "/", context=shared_context()).result()
    store.write("ckptmap-incomplete", b"x").result()
    store.write("a/zarr.json", b"{}").result()
    with pytest.raises(InputError, match="the store is incomplete") as info:
        open_store(url)
    assert exit_code_for(info.value) == 3
    with pytest.raises(OutputExistsError, match="interrupted conversion"):
        convert(FIXTURES / "ffm_v1", url)
    convert(FIXTURES / "ffm_v1", url, force=True)
    assert store.read("a/zarr.json").result().state == "missing"
    assert open_store(url).read("global_step") == 100


def test_a_corrupt_checkpoint_leaves_nothing_behind(tmp_path: Path, fixture_copy: Any) -> None:
    folder = fixture_copy("ffm_v1")
    with open_checkpoint(folder) as ckpt:
        entry = ckpt.slice_entries("ffm/embeddings")[1][1]
    data = folder / "model.ckpt-100.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 7] ^= 0x40
    data.write_bytes(bytes(raw))
    out = tmp_path / "out" / "store.zarr"
    with pytest.raises(CorruptCheckpointError, match="CRC32C mismatch") as info:
        convert(folder, out)
    assert exit_code_for(info.value) == 3
    assert not (tmp_path / "out").exists()


def test_a_truncated_data_file_is_a_corrupt_input(tmp_path: Path, fixture_copy: Any) -> None:
    folder = fixture_copy("ffm_v1")
    data = folder / "model.ckpt-100.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-64])
    result = _cli("--old", str(folder), "--to", "zarr3", "--out", str(tmp_path / "o"))
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: {data}: tensor ")
    assert "runs past the end of the data file" in result.stderr
    assert not (tmp_path / "o").exists()
