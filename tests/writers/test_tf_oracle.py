"""TensorFlow as the oracle: it must read and restore what the writer writes.

Every test here needs TensorFlow (``@pytest.mark.tf``, the ``tf`` fixture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, table_entries

from ckptmap.dtypes import BY_NAME, DType
from ckptmap.formats.crc import unmask_crc
from ckptmap.readers import open_checkpoint
from ckptmap.split import SliceSpec
from ckptmap.writers import BundleWriter, slice_entry_key, write_state_file
from ckptmap.writers._table import build_table

from .test_tf_bundle import assert_same_files, reencode

pytestmark = pytest.mark.tf

ZOO = FIXTURES / "dtype_zoo" / "zoo"
TF2 = FIXTURES / "tf2_module" / "ckpt-1"
_NO_TF_BYTE_SWAP = {"float8_e4m3fn", "float8_e5m2", "int4", "uint4"}


def _assert_tf_equal(ours: Any, theirs: Any) -> None:
    """Two values TF read: same dtype, shape and bytes (strings compared as bytes)."""
    if isinstance(theirs, bytes):  # a string scalar
        assert ours == theirs
        return
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    if ours.dtype == object:
        assert ours.tolist() == theirs.tolist()
    else:
        assert ours.tobytes() == theirs.tobytes()


# -- tf.train.load_checkpoint ----------------------------------------------------------------------


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_tf_reads_every_dtype_we_write(tf: Any, byte_order: str, tmp_path: Path) -> None:
    """The zoo rewritten from decoded values, in reverse order, over two shards."""
    prefix = tmp_path / "zoo"
    with (
        open_checkpoint(ZOO) as src,
        BundleWriter(prefix, num_shards=2, byte_order=byte_order) as writer,
    ):
        keys = src.keys()
        for key in reversed(keys):
            entry = src.entry(key)
            if not entry.slices:
                writer.add_array(key, src.read(key), dtype=entry.dtype)
                continue
            writer.add_sliced(key, dtype=entry.dtype, full_shape=entry.shape, slices=entry.slices)
            for spec, part in src.slice_entries(key):
                value = src.read_slice_entry(part)
                writer.add_array(slice_entry_key(key, spec), value, dtype=entry.dtype)
        writer.commit()
    ours, theirs = tf.train.load_checkpoint(str(prefix)), tf.train.load_checkpoint(str(ZOO))
    assert ours.get_variable_to_shape_map() == theirs.get_variable_to_shape_map()
    assert ours.get_variable_to_dtype_map() == theirs.get_variable_to_dtype_map()
    names = sorted(theirs.get_variable_to_shape_map())
    assert len(names) >= 40
    if byte_order == ">":  # TF 2.21 cannot byte-swap these on read ("Byte-swapping not supported")
        names = [n for n in names if n not in _NO_TF_BYTE_SWAP]
    for name in names:
        _assert_tf_equal(ours.get_tensor(name), theirs.get_tensor(name))


def test_multi_block_index_is_byte_identical(tf: Any, tmp_path: Path) -> None:
    """TF's own > 256 KiB index (two data blocks), rebuilt by the table builder and the writer."""
    folder = tmp_path / "tf"
    folder.mkdir()
    names = [f"var_{i:05d}/" + "k" * 20 for i in range(8001)]
    values = [tf.constant(np.float32(i)) for i in range(len(names))]
    tf.raw_ops.SaveV2(
        prefix=str(folder / "many"),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=values,
    )
    index = folder / "many.index"
    assert index.stat().st_size > 256 * 1024
    assert build_table(table_entries(index)) == index.read_bytes()
    result = reencode(folder / "many", tmp_path / "ours" / "many", "copy")
    assert_same_files(folder / "many", result)
    reader = tf.train.load_checkpoint(str(result.prefix))
    assert reader.get_tensor(names[-1]) == len(names) - 1


# -- TF1 Saver restore into graphs (tf-checkpoint-format.md §8.2) ----------------------------------

ROWS = np.arange(40, dtype=np.float32).reshape(10, 4) / 8
COLS = np.arange(48, dtype=np.float64).reshape(6, 8) * -1.5
HALF = (np.arange(12, dtype=np.float16).reshape(6, 2) + 0.5).astype(np.float16)
W = np.array([3.0, -1.0, 0.25], np.float32)
F32, F64, F16 = BY_NAME["float32"], BY_NAME["float64"], BY_NAME["float16"]


def _build_graph(tf: Any, partitioned: bool) -> dict[str, Any]:
    """Variables emb [10,4] (3 row parts), cols [6,8] (4 column parts), half [6,2] (2 row
    parts; float16 can only be restored from exactly matching slices), w [3]."""
    v1 = tf.compat.v1
    zeros = v1.zeros_initializer()
    out: dict[str, Any] = {}
    if partitioned:
        emb = v1.get_variable(
            "emb", [10, 4], tf.float32, zeros, partitioner=v1.fixed_size_partitioner(3)
        )
        cols = v1.get_variable(
            "cols", [6, 8], tf.float64, zeros, partitioner=v1.fixed_size_partitioner(4, axis=1)
        )
        half = v1.get_variable(
            "half", [6, 2], tf.float16, zeros, partitioner=v1.fixed_size_partitioner(2)
        )
        out["emb"] = tf.concat(list(emb), axis=0)
        out["cols"] = tf.concat(list(cols), axis=1)
        out["half"] = tf.concat(list(half), axis=0)
    else:
        out["emb"] = tf.identity(v1.get_variable("emb", [10, 4], tf.float32, zeros))
        out["cols"] = tf.identity(v1.get_variable("cols", [6, 8], tf.float64, zeros))
    out["w"] = tf.identity(v1.get_variable("w", [3], tf.float32, zeros))
    return out


def _restore(tf: Any, prefix: Path, partitioned: bool) -> dict[str, np.ndarray]:
    graph = tf.Graph()
    with graph.as_default():
        values = _build_graph(tf, partitioned)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(prefix))
            return sess.run(values)


def _requested_slices(tf: Any) -> dict[str, list[SliceSpec]]:
    """The (name, shape_and_slice) pairs the partitioned graph's Saver restores."""
    graph = tf.Graph()
    with graph.as_default():
        _build_graph(tf, partitioned=True)
        tf.compat.v1.train.Saver()
        restore = graph.get_operation_by_name("save/RestoreV2")
        with tf.compat.v1.Session(graph=graph) as sess:
            names, specs = sess.run([restore.inputs[1], restore.inputs[2]])
    requested: dict[str, list[SliceSpec]] = {}
    for name, spec in zip(names, specs, strict=True):
        if spec:
            requested.setdefault(name.decode(), []).append(SliceSpec.parse(spec.decode()))
    return requested


def _add_sliced(
    writer: BundleWriter, key: str, dtype: DType, value: np.ndarray, specs: list[SliceSpec]
) -> None:
    writer.add_sliced(key, dtype=dtype, full_shape=value.shape, slices=specs)
    for i, spec in enumerate(specs):
        shard = i % writer.num_shards
        writer.add_array(slice_entry_key(key, spec), value[spec.index()], dtype=dtype, shard=shard)


def _check(values: dict[str, np.ndarray], *, with_half: bool = True) -> None:
    np.testing.assert_array_equal(values["emb"], ROWS)
    np.testing.assert_array_equal(values["cols"], COLS)
    np.testing.assert_array_equal(values["w"], W)
    if with_half:
        np.testing.assert_array_equal(values["half"], HALF)


def test_saver_restores_full_tensors_into_partitioned_variables(tf: Any, tmp_path: Path) -> None:
    requested = _requested_slices(tf)
    assert [s.format() for s in requested["emb"]] == [
        "10 4 0,4:0,4",
        "10 4 4,3:0,4",
        "10 4 7,3:0,4",
    ]
    with BundleWriter(tmp_path / "full") as writer:
        writer.add_array("emb", ROWS)
        writer.add_array("cols", COLS)
        writer.add_array("w", W)
        _add_sliced(writer, "half", F16, HALF, requested["half"])  # float16: exact slices
        result = writer.commit()
    _check(_restore(tf, result.prefix, partitioned=True))


def test_saver_restores_exactly_matching_slices(tf: Any, tmp_path: Path) -> None:
    requested = _requested_slices(tf)
    with BundleWriter(tmp_path / "exact", num_shards=2) as writer:
        _add_sliced(writer, "emb", F32, ROWS, requested["emb"])
        _add_sliced(writer, "cols", F64, COLS, requested["cols"])
        _add_sliced(writer, "half", F16, HALF, requested["half"])
        writer.add_array("w", W)
        result = writer.commit()
    _check(_restore(tf, result.prefix, partitioned=True))


def test_saver_restores_other_slicings_into_partitioned_and_whole_variables(
    tf: Any, tmp_path: Path
) -> None:
    requested = _requested_slices(tf)
    emb_specs = [SliceSpec.parse("10 4 6,4:-"), SliceSpec.parse("10 4 0,6:-")]  # 2 parts, not 3
    cols_specs = [SliceSpec.parse(f"6 8 0,6:{start},{n}") for start, n in ((0, 5), (5, 3))]
    with BundleWriter(tmp_path / "sliced", num_shards=2) as writer:
        _add_sliced(writer, "emb", F32, ROWS, emb_specs)
        _add_sliced(writer, "cols", F64, COLS, cols_specs)
        _add_sliced(writer, "half", F16, HALF, requested["half"])
        writer.add_array("w", W)
        result = writer.commit()
    _check(_restore(tf, result.prefix, partitioned=True))
    _check(_restore(tf, result.prefix, partitioned=False), with_half=False)


# -- TF2 object-based checkpoints ------------------------------------------------------------------


def test_tf2_checkpoint_rewritten_unchanged_still_restores(tf: Any, tmp_path: Path) -> None:
    result = reencode(TF2, tmp_path / "ckpt-1", "copy")
    source = tf.train.load_checkpoint(str(TF2))

    class Net(tf.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(name="net")
            self.kernel = tf.Variable(np.zeros((3, 2), np.float32))
            self.bias = tf.Variable(np.zeros(2, np.float32))
            self.step = tf.Variable(np.int64(0))

    net = Net()
    status = tf.train.Checkpoint(model=net).restore(str(result.prefix))
    status.expect_partial()
    status.assert_existing_objects_matched()
    for name in ("kernel", "bias", "step"):
        expected = source.get_tensor(f"model/{name}/.ATTRIBUTES/VARIABLE_VALUE")
        np.testing.assert_array_equal(getattr(net, name).numpy(), expected)


def test_tf2_restore_after_copying_without_verification(tf: Any, tmp_path: Path) -> None:
    """add_copy with a trusted CRC (no read pass) gives the same restorable checkpoint."""
    prefix = tmp_path / "ckpt-1"
    with open_checkpoint(TF2) as src, BundleWriter(prefix) as writer:
        keys = src.keys()
        entries = sorted((src.entry(k) for k in keys), key=lambda e: (e.offset, e.size))
        for e in entries:
            writer.add_copy(
                e.key,
                src.shard_path(e.shard_id),
                e.offset,
                e.size,
                dtype=e.dtype,
                shape=e.shape,
                expected_crc32c=unmask_crc(e.crc32c),
                verify=False,
            )
        writer.commit()
    kernel = tf.Variable(np.zeros((3, 2), np.float32))
    module = tf.Module()
    module.kernel = kernel
    tf.train.Checkpoint(model=module).restore(str(prefix)).expect_partial()
    expected = tf.train.load_checkpoint(str(TF2)).get_tensor(
        "model/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    )
    np.testing.assert_array_equal(kernel.numpy(), expected)


# -- the state file --------------------------------------------------------------------------------


def test_state_file_matches_tf_and_tf_finds_the_checkpoint(tf: Any, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder in (ours, theirs):
        folder.mkdir()
    reencode(TF2, ours / "ckpt-ü", "copy")
    write_state_file(ours, ours / "ckpt-ü")
    tf.compat.v1.train.update_checkpoint_state(str(theirs), "ckpt-ü")
    assert (ours / "checkpoint").read_bytes() == (theirs / "checkpoint").read_bytes()
    assert tf.train.latest_checkpoint(str(ours)) == str(ours / "ckpt-ü")
