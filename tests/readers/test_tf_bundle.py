"""Reading TF-written checkpoints (ckptmap/readers/tf_bundle.py and its _bundle_* modules).

Every fixture checkpoint is compared with the golden files (TF's own reading,
fixtures/README.md); tests marked ``tf`` compare with TensorFlow live.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    FIXTURES,
    GOLDEN_JSONS,
    Golden,
    assert_same_values,
    load_golden,
    to_big_endian,
)

from ckptmap.errors import MissingInputError, TensorNotFoundError
from ckptmap.formats.slice_key import encode_slice_key
from ckptmap.readers import Checkpoint, open_checkpoint
from ckptmap.split import box_of
from ckptmap.storage import KvLocation, measure_io

GOLDENS = [load_golden(p) for p in GOLDEN_JSONS]


@pytest.fixture(params=GOLDENS, ids=lambda g: g.id)
def golden(request: pytest.FixtureRequest) -> Golden:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def ckpt(golden: Golden):  # type: ignore[no-untyped-def]
    with open_checkpoint(golden.prefix) as opened:
        yield opened


def test_fixtures_cover_every_checkpoint() -> None:
    prefixes = {p.with_suffix("") for p in FIXTURES.rglob("*.index") if "golden" not in p.parts}
    assert {g.prefix for g in GOLDENS} == prefixes
    assert len(GOLDENS) >= 9


# -- listing and values, against the golden files ------------------------------


def test_lists_golden_names_dtypes_and_shapes(ckpt: Checkpoint, golden: Golden) -> None:
    assert ckpt.keys() == [t.name for t in golden.tensors]
    for t in golden.tensors:
        entry = ckpt.entry(t.name)
        assert (entry.key, entry.dtype.name, entry.shape) == (t.name, t.dtype, t.shape)


def test_reads_golden_values(ckpt: Checkpoint, golden: Golden) -> None:
    for t in golden.tensors:
        assert_same_values(ckpt.read(t.name, verify=True), t.value)


def test_verify_checks_every_tensor(ckpt: Checkpoint, golden: Golden) -> None:
    assert ckpt.verify() == [t.name for t in golden.tensors]


def test_specs_fold_slices_into_their_tensor(ckpt: Checkpoint) -> None:
    specs = ckpt.specs()
    assert list(specs) == ckpt.keys()
    for key, spec in specs.items():
        entry = ckpt.entry(key)
        assert (spec.key, spec.dtype, spec.shape, spec.slices) == (
            key,
            entry.dtype,
            entry.shape,
            entry.slices,
        )


def test_slices_tile_their_tensor(ckpt: Checkpoint) -> None:
    for key in ckpt:
        full = ckpt.read(key)
        parts = ckpt.slice_entries(key)
        assert len(parts) == len(ckpt.entry(key).slices)
        for spec, part in parts:
            assert part.shape == spec.shape
            assert 0 <= part.shard_id < ckpt.num_shards
            assert part.key.encode("utf-8", "surrogateescape") == encode_slice_key(
                key.encode("utf-8", "surrogateescape"), spec.extents
            )
            assert_same_values(ckpt.read_slice_entry(part, verify=True), full[spec.index()])


def test_numeric_reads_are_read_only_views_of_the_shard(ckpt: Checkpoint) -> None:
    for key in ckpt:
        entry = ckpt.entry(key)
        if entry.slices or entry.dtype.is_string or entry.size == 0:
            continue
        value = ckpt.read(key)
        assert not value.flags.writeable
        stored = np.frombuffer(ckpt.raw_bytes(entry), dtype=np.uint8)
        assert np.shares_memory(value, stored)


# -- specific fixtures -------------------------------------------------------------


def test_partitioned_embeddings_of_the_ffm_model() -> None:
    with open_checkpoint(FIXTURES / "ffm_v1") as ckpt:
        entry = ckpt.entry("ffm/embeddings")
        assert entry.shape == (200, 16)
        assert [s.format() for s in entry.slices] == [
            f"200 16 {row},50:0,16" for row in (0, 50, 100, 150)
        ]
        assert ckpt.slice_entries("global_step") == []
    with open_checkpoint(FIXTURES / "ffm_v2_ps3") as ckpt:
        assert ckpt.num_shards == 3
        parts = ckpt.slice_entries("ffm/embeddings")
        # stored in shard-merge order, not sorted (tf-checkpoint-format.md §6.2)
        assert [(str(spec), part.shard_id) for spec, part in parts] == [
            ("200 16 134,66:0,16", 0),
            ("200 16 0,67:0,16", 1),
            ("200 16 67,67:0,16", 2),
        ]


def test_slices_keep_their_stored_spelling() -> None:
    with open_checkpoint(FIXTURES / "dtype_zoo" / "zoo") as ckpt:
        entry = ckpt.entry("sliced/int64_rows")
        assert [s.format() for s in entry.slices] == ["6 2 0,2:-", "6 2 2,4:-"]
        assert ckpt.read("sliced/int64_rows").tolist() == [[2 * r, 2 * r + 1] for r in range(6)]


def test_keys_are_sorted_as_unsigned_bytes() -> None:
    with open_checkpoint(FIXTURES / "dtype_zoo" / "zoo") as ckpt:
        keys = ckpt.keys()
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8", "surrogateescape"))
    assert keys.index("case/KERNEL") < keys.index("case/Kernel") < keys.index("case/kernel")
    assert keys[-1] == "ünïcode/名前"


def test_strings_are_bytes_objects() -> None:
    with open_checkpoint(FIXTURES / "dtype_zoo" / "zoo") as ckpt:
        assert ckpt.read("string").tolist() == [b"hello", "wörld".encode(), b"", b"\x00\xff\x01"]
        assert ckpt.read("string_zero_size").shape == (0, 2)
        assert ckpt.read("string_empty_scalar").item() == b""


def test_unknown_key_suggests_a_close_one() -> None:
    with open_checkpoint(FIXTURES / "ffm_v1") as ckpt, pytest.raises(TensorNotFoundError) as info:
        ckpt.read("ffm/embedding")
    index = FIXTURES / "ffm_v1" / "model.ckpt-100.index"
    assert str(info.value) == (
        f"{index}: no tensor 'ffm/embedding' in this checkpoint (did you mean "
        "'ffm/embeddings'? list the keys with `ckptmap inspect`)"
    )
    assert isinstance(info.value, KeyError)
    assert info.value.key == "ffm/embedding"


def test_listing_opens_no_data_file(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "ffm_v1_ps2", tmp_path / "m")
    shard = tmp_path / "m" / "model.ckpt-100.data-00001-of-00002"
    shard.unlink()
    with open_checkpoint(tmp_path / "m") as ckpt:
        assert len(ckpt.specs()) == 33
        key = next(k for k in ckpt if ckpt.entry(k).shard_id == 1)
        with pytest.raises(MissingInputError) as info:
            ckpt.read(key)
    assert str(info.value) == (
        f"{shard}: data file of this checkpoint is missing (copy every "
        "model.ckpt-100.data-* file together with the .index)"
    )


def test_arrays_stay_valid_after_close() -> None:
    with open_checkpoint(FIXTURES / "ffm_v1") as ckpt:
        value = ckpt.read("ffm/bias_net/w")
        expected = value.copy()
    np.testing.assert_array_equal(value, expected)


def test_big_endian_bundle_reads_like_the_original(tmp_path: Path, golden: Golden) -> None:
    copy = tmp_path / "big"
    to_big_endian(golden.prefix, copy)
    with open_checkpoint(copy) as ckpt:
        assert ckpt.byte_order == ">"
        for t in golden.tensors:
            assert_same_values(ckpt.read(t.name, verify=True), t.value)
        assert ckpt.verify() == [t.name for t in golden.tensors]


# -- TensorFlow as the oracle -------------------------------------------------------------


@pytest.mark.tf
def test_agrees_with_tensorflow(tf, golden: Golden) -> None:  # type: ignore[no-untyped-def]
    reader = tf.train.load_checkpoint(str(golden.prefix))
    listed = tf.train.list_variables(str(golden.prefix))
    dtypes = reader.get_variable_to_dtype_map()
    with open_checkpoint(golden.prefix) as ckpt:
        assert [(k, list(ckpt.entry(k).shape)) for k in ckpt] == [
            (name, shape) for name, shape in listed
        ]
        for key in ckpt:
            entry = ckpt.entry(key)
            assert entry.dtype.enum == dtypes[key].as_datatype_enum
            expected = reader.get_tensor(key)
            if entry.dtype.is_string:
                expected = np.asarray(expected, dtype=object).reshape(entry.shape)
            else:
                expected = np.asarray(expected).astype(entry.dtype.numpy)
            assert_same_values(ckpt.read(key), expected)


@pytest.mark.tf
def test_tensorflow_reads_the_big_endian_copy(tf, tmp_path: Path, golden: Golden) -> None:  # type: ignore[no-untyped-def]
    """Validates the test helper that makes big-endian bundles (TF is the judge)."""
    copy = tmp_path / "big"
    to_big_endian(golden.prefix, copy)
    reader = tf.train.load_checkpoint(str(copy))
    for t in golden.tensors:
        if t.value.dtype.itemsize == 1 and t.dtype not in (
            "int8",
            "uint8",
            "bool",
            "qint8",
            "quint8",
        ):
            continue  # TF refuses to "byte-swap" float8/int4 tensors, though one byte needs none
        value = reader.get_tensor(t.name)
        if t.dtype == "string":
            value = np.asarray(value, dtype=object).reshape(t.shape)
        assert_same_values(np.asarray(value).astype(t.value.dtype), t.value)


@pytest.mark.tf
def test_a_checkpoint_with_an_empty_data_file(tf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = tmp_path / "empty"
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=["a", "b"],
        shape_and_slices=["", ""],
        tensors=[tf.zeros([0, 3]), tf.zeros([4, 0], tf.int32)],
    )
    assert (tmp_path / "empty.data-00000-of-00001").stat().st_size == 0
    with open_checkpoint(prefix) as ckpt:
        assert ckpt.read("a", verify=True).shape == (0, 3)
        assert ckpt.read("b", verify=True).shape == (4, 0)
        assert ckpt.verify() == ["a", "b"]


# -- parts of partitioned tensors ---------------------------------------------------


def test_read_box_reads_only_the_slices_it_touches() -> None:
    url = "memory://readers-tf-bundle/ffm_v1_ps2/"
    store = KvLocation(url)
    folder = FIXTURES / "ffm_v1_ps2"
    for path in sorted(folder.glob("model.ckpt-100*")):
        if path.is_file():
            store.write(path.name, path.read_bytes())
    with open_checkpoint(url + "model.ckpt-100") as ckpt:
        key = next(k for k in ckpt if len(ckpt.slices(k)) > 1)
        parts = ckpt.slice_entries(key)
        whole = ckpt.read(key)
        spec, part = parts[-1]
        with measure_io() as io:
            value = ckpt.read_box(key, box_of(spec, whole.shape))
        assert io.bytes_read == part.size
        np.testing.assert_array_equal(value, whole[spec.index()])


def test_tensor_keys_are_the_index_keys_that_are_not_slices() -> None:
    """Every fixture index: the listed keys are the non-empty, non-slice keys, in index order."""
    from ckptmap.formats.slice_key import is_slice_key
    from ckptmap.readers._bundle_index import BundleIndex
    from ckptmap.readers._table import read_table

    indexes = sorted(p for p in FIXTURES.rglob("*.index") if "golden" not in p.parts)
    tables = [read_table(p) for p in indexes]
    assert sum(any(map(is_slice_key, t.keys)) for t in tables) >= 3  # partitioned fixtures
    for path, table in zip(indexes, tables, strict=True):
        expected = [
            k.decode("utf-8", "surrogateescape") for k in table.keys if k and not is_slice_key(k)
        ]
        assert BundleIndex(table, str(path)).keys == expected, path
