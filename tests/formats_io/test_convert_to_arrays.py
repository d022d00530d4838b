"""``convert --to safetensors`` and ``--to npz``: read back by their own libraries, and back to TF.

The files ckptmap writes are read with the ``safetensors`` package (numpy API)
and ``np.load``, never with ckptmap's readers, and compared with the golden
values (TensorFlow's own reading of each fixture); the round trip goes back
to a TensorFlow checkpoint through ``remap`` from the written file, and the
``tf`` tests let TensorFlow's Saver restore it.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import ml_dtypes  # noqa: F401 -- registers bfloat16 with numpy, as safetensors.numpy needs
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import Golden, assert_same_values, flip_byte, to_big_endian
from readers.test_source_contract import GOLDENS

from ckptmap import remap
from ckptmap.cli import main
from ckptmap.convert import convert
from ckptmap.dtypes import dtype_from_name
from ckptmap.errors import CorruptCheckpointError, OutputExistsError, UnsupportedInputError
from ckptmap.formats.array_files import safetensors_code, stored_dtype
from ckptmap.readers.source import open_source
from ckptmap.readers.tf_bundle import open_checkpoint

ZOO = GOLDENS["dtype_zoo/zoo"]
PS2 = GOLDENS["ffm_v1_ps2/model.ckpt-100"]  # partitioned, two data shards
PS3 = GOLDENS["ffm_v2_ps3/model.ckpt-100"]  # partitioned, three data shards
# safetensors has codes for these, but safetensors.numpy cannot load them (numpy has no type).
_FLOAT8 = {"float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}


def _safetensors_can_hold(dtype: str) -> bool:
    return safetensors_code(dtype_from_name(dtype)) is not None


def _header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, parsed here from the format's definition."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header: dict[str, Any] = json.loads(raw[8 : 8 + size])
    header["__data_start__"] = 8 + size
    return header


def _assert_safetensors_equal(path: Path, tensors: list[Any]) -> None:
    """Each golden tensor, read from ``path`` by the safetensors package (float8: by hand)."""
    from safetensors import safe_open

    header = _header(path)
    with safe_open(str(path), framework="np") as file:
        assert set(file.keys()) == {t.name for t in tensors}
        for tensor in tensors:
            if tensor.dtype in _FLOAT8:
                entry = header[tensor.name]
                assert entry["dtype"] == _FLOAT8[tensor.dtype]
                begin, end = entry["data_offsets"]
                start = header["__data_start__"]
                raw = path.read_bytes()[start + begin : start + end]
                got = np.frombuffer(raw, tensor.value.dtype).reshape(tensor.shape)
            else:
                got = file.get_tensor(tensor.name)
            if tensor.dtype.startswith("q"):  # qint8 is stored as I8: the same bytes
                got = got.view(tensor.value.dtype)
            assert_same_values(got, tensor.value)


def _remap_back(old: Path, golden: Golden, out: Path, **options: Any) -> None:
    """remap from the array file into the fixture's own model (its graph, or its checkpoint)."""
    graph = golden.prefix.parent / "graph.pbtxt"
    new = graph if graph.exists() else golden.prefix
    remap(old, new, out, continue_training=True, **options)


# -- safetensors ---------------------------------------------------------------------------


@pytest.mark.parametrize("golden", [ZOO, PS2, PS3], ids=lambda g: g.id)
def test_safetensors_holds_tensorflows_values(tmp_path: Path, golden: Golden) -> None:
    out = tmp_path / "model.safetensors"
    result = convert(golden.prefix, out, to="safetensors", skip_unsupported=True)
    kept = [t for t in golden.tensors if _safetensors_can_hold(t.dtype)]
    assert set(result.skipped) == {t.name for t in golden.tensors} - {t.name for t in kept}
    assert result.files == ("model.safetensors",)
    assert result.arrays == len(kept)
    assert result.store_bytes == out.stat().st_size
    _assert_safetensors_equal(out, kept)
    metadata = _header(out)["__metadata__"]
    assert metadata["format"] == "pt"
    manifest = json.loads(metadata["ckptmap"])
    with open_checkpoint(golden.prefix) as ckpt:
        for t in kept:  # TF dtype and slice layout recorded for the way back
            assert manifest["tensors"][t.name]["dtype"] == t.dtype
            slices = [s.format() for s in ckpt.slices(t.name)]
            assert manifest["tensors"][t.name]["slices"] == slices


def test_the_dtype_zoo_maps_every_dtype_exactly(tmp_path: Path) -> None:
    out = tmp_path / "zoo.safetensors"
    convert(ZOO.prefix, out, to="safetensors", skip_unsupported=True)
    header = _header(out)
    codes = {t.name: header[t.name]["dtype"] for t in ZOO.tensors if t.name in header}
    expected = {
        "bfloat16": "BF16",
        "bool": "BOOL",
        "float16": "F16",
        "float32": "F32",
        "float64": "F64",
        "int8": "I8",
        "int16": "I16",
        "int32": "I32",
        "int64": "I64",
        "qint8": "I8",
        "quint16": "U16",
        "float8_e4m3fn": "F8_E4M3",
        "float8_e5m2": "F8_E5M2",
    }
    assert {k: codes[k] for k in expected} == expected
    with open_source(out) as back:  # the manifest gives TensorFlow's dtypes back
        assert back.specs()["qint8"].dtype.name == "qint8"


def test_complex_and_string_tensors_are_refused_by_name(tmp_path: Path) -> None:
    out = tmp_path / "zoo"
    with pytest.raises(UnsupportedInputError) as caught:
        convert(ZOO.prefix, out, to="safetensors")
    message = str(caught.value)
    assert "'complex64' (complex64)" in message
    assert "'string' (string)" in message
    assert "--skip-unsupported" in message
    assert not out.exists()  # nothing written, not even the folder
    result = CliRunner().invoke(
        main, ["convert", "--old", str(ZOO.prefix), "--to", "safetensors", "--out", str(out)]
    )
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert "complex128" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_little_endian_checkpoint_is_byte_copied(tmp_path: Path) -> None:
    """TensorFlow's own little-endian bytes, partitions along rows merged, go out as they are."""
    for golden in (PS2, PS3):
        out = tmp_path / f"{golden.prefix.parent.name}.safetensors"
        result = convert(golden.prefix, out, to="safetensors")
        assert (result.byte_copied, result.assembled) == (len(golden.tensors), 0)
        _assert_safetensors_equal(out, golden.tensors)
    # a tensor cut along its columns interleaves its parts: assembled, not copied
    result = convert(
        ZOO.prefix, tmp_path / "zoo.safetensors", to="safetensors", skip_unsupported=True
    )
    assert result.assembled == 1


def test_a_big_endian_checkpoint_is_swapped(tmp_path: Path) -> None:
    big = tmp_path / "big" / "model.ckpt-100"
    big.parent.mkdir()
    to_big_endian(PS2.prefix, big)
    with open_checkpoint(big) as ckpt:
        assert ckpt.byte_order == ">"
    out = tmp_path / "out.safetensors"
    result = convert(big, out, to="safetensors")
    assert result.byte_copied == len(PS2.tensors)
    _assert_safetensors_equal(out, PS2.tensors)


def test_a_damaged_data_file_is_never_converted(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(PS2.prefix.parent, ckpt)
    data = ckpt / "model.ckpt-100.data-00000-of-00002"
    flip_byte(data, data.stat().st_size // 2)
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError, match="CRC32C mismatch"):
        convert(ckpt, out, to="safetensors")
    assert not out.exists()


def test_sharded_output_has_a_valid_index(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    limit = 20_000
    result = convert(PS2.prefix, out, to="safetensors", max_shard_size=limit)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    count = len(shards)
    assert count > 2
    assert shards == [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    assert list(result.files) == [*shards, "model.safetensors.index.json"]
    assert set(index["weight_map"]) == {t.name for t in PS2.tensors}
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(t.value.nbytes for t in PS2.tensors)
    for shard in shards:
        names = [k for k, v in index["weight_map"].items() if v == shard]
        golden = [t for t in PS2.tensors if t.name in names]
        size = sum(t.value.nbytes for t in golden)
        assert size <= limit or len(golden) == 1
        _assert_safetensors_equal(out / shard, golden)
    with open_source(out) as back, open_checkpoint(PS2.prefix) as original:
        assert back.specs() == original.specs()  # partitions recorded, dtypes kept


def test_force_replaces_another_shard_count_whole(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    convert(PS2.prefix, out, to="safetensors", max_shard_size=20_000)
    with pytest.raises(OutputExistsError, match="pass --force"):
        convert(PS2.prefix, out, to="safetensors")
    convert(PS3.prefix, out, to="safetensors", force=True)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    _assert_safetensors_equal(out / "model.safetensors", PS3.tensors)


def test_round_trip_back_to_a_tf_checkpoint(tmp_path: Path) -> None:
    st = tmp_path / "model.safetensors"
    convert(PS2.prefix, st, to="safetensors")
    out = tmp_path / "back" / "model.ckpt-100"
    _remap_back(st, PS2, out)
    with open_checkpoint(out) as written, open_checkpoint(PS2.prefix) as original:
        assert written.keys() == original.keys()
        for key in original:  # the same partitions (in the order the new Saver writes them)
            assert set(written.slices(key)) == set(original.slices(key)), key
            assert written.entry(key).dtype == original.entry(key).dtype
            assert_same_values(written.read(key), original.read(key))


# -- npz -----------------------------------------------------------------------------------


@pytest.mark.parametrize("golden", [ZOO, PS2], ids=lambda g: g.id)
def test_npz_is_read_by_np_load(tmp_path: Path, golden: Golden) -> None:
    out = tmp_path / "model.npz"
    result = convert(golden.prefix, out, to="npz", skip_unsupported=True)
    kept = [t for t in golden.tensors if t.dtype != "string"]
    assert set(result.skipped) == {t.name for t in golden.tensors if t.dtype == "string"}
    with np.load(out, allow_pickle=False) as archive:
        assert set(archive.files) == {t.name for t in kept} | {"ckptmap.json"}
        for tensor in kept:
            stored = stored_dtype(dtype_from_name(tensor.dtype)).numpy
            got = archive[tensor.name]
            assert got.dtype == stored
            assert_same_values(got.view(tensor.value.dtype), tensor.value)


def test_npz_round_trip_back_to_a_tf_checkpoint(tmp_path: Path) -> None:
    npz = tmp_path / "model.npz"
    convert(ZOO.prefix, npz, to="npz", skip_unsupported=True)
    out = tmp_path / "back" / "zoo"
    _remap_back(npz, ZOO, out, allow_missing=True)
    with open_checkpoint(out) as written, open_checkpoint(ZOO.prefix) as original:
        kept = [k for k in original if not original.entry(k).dtype.is_string]
        assert written.keys() == kept
        for key in kept:
            assert written.entry(key).dtype == original.entry(key).dtype  # bfloat16, qint8
            assert set(written.slices(key)) == set(original.slices(key)), key
            assert_same_values(written.read(key), original.read(key))


def test_array_sources_convert_to_each_other(tmp_path: Path) -> None:
    """safetensors -> npz -> safetensors: no TF bundle in between, every tensor assembled."""
    first = tmp_path / "a.safetensors"
    convert(PS2.prefix, first, to="safetensors")
    npz = tmp_path / "b.npz"
    result = convert(first, npz, to="npz")
    assert (result.byte_copied, result.assembled) == (0, len(PS2.tensors))
    again = tmp_path / "c.safetensors"
    convert(npz, again, to="safetensors")
    _assert_safetensors_equal(again, PS2.tensors)


def test_cli_reports_files_and_skipped_keys(tmp_path: Path) -> None:
    out = tmp_path / "zoo.npz"
    result = CliRunner().invoke(
        main,
        ["convert", "--old", str(ZOO.prefix), "--to", "npz", "--out", str(out)]
        + ["--skip-unsupported", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["files"] == ["zoo.npz"]
    assert report["to"] == "npz"
    assert "string_scalar" in report["skipped"]
    assert report["byte_copied"] + report["assembled"] == report["arrays"]


# -- TensorFlow restores the way back -------------------------------------------------------


@pytest.mark.tf
@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_tensorflow_restores_the_round_trip(tmp_path: Path, tf: Any, kind: str) -> None:
    array_file = tmp_path / f"model.{kind}"
    convert(PS2.prefix, array_file, to=kind, max_shard_size=30_000)
    out = tmp_path / "back" / "model.ckpt-100"
    _remap_back(tmp_path if kind == "safetensors" else array_file, PS2, out)
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(
            str(PS2.prefix.parent / "model.ckpt-100.meta"), clear_devices=True
        )
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(out))
            values = dict(zip([v.name for v in variables], sess.run(variables), strict=True))
    reader = tf.train.load_checkpoint(str(PS2.prefix))
    for var in variables:
        info = var._save_slice_info  # noqa: SLF001 -- TF's own record of the part
        key = info.full_name if info is not None else var.op.name
        expected = reader.get_tensor(key)
        if info is not None:
            index = tuple(
                slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape, strict=True)
            )
            expected = expected[index]
        np.testing.assert_array_equal(values[var.name], expected, err_msg=var.name)


@pytest.mark.tf
def test_tensorflow_reads_the_zoo_back_from_safetensors(tmp_path: Path, tf: Any) -> None:
    st = tmp_path / "zoo.safetensors"
    convert(ZOO.prefix, st, to="safetensors", skip_unsupported=True)
    out = tmp_path / "back" / "zoo"
    _remap_back(st, ZOO, out, allow_missing=True)
    reader = tf.train.load_checkpoint(str(out))
    kept = [t for t in ZOO.tensors if _safetensors_can_hold(t.dtype)]
    assert set(reader.get_variable_to_dtype_map()) == {t.name for t in kept}
    for tensor in kept:
        assert reader.get_variable_to_dtype_map()[tensor.name].name == tensor.dtype
        assert_same_values(np.asarray(reader.get_tensor(tensor.name)), tensor.value)
