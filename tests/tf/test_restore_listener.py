"""The in-graph restore listener on real TensorFlow graphs and checkpoints.

The cases of Monolith's ``dense_reload_utils_test``: the old checkpoint holds a
1280x512 variable ``partition`` cut by ``variable_axis_size_partitioner``
(20 parts), ``small_var`` and ``global_step``, written by TensorFlow's Saver; the
new graph renames them (``partition2``, ``small_var2``) and cuts ``partition2``
differently. Every restored value is compared with what TensorFlow saved.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckptmap.errors import CorruptCheckpointError, UnresolvedError, UsageError
from ckptmap.readers.tf_bundle import open_checkpoint

pytestmark = pytest.mark.tf

SHAPE = (1280, 512)
OLD_STEP = 7
SEED = 1234
OLD_SMALL = np.arange(50, dtype=np.float32).reshape(10, 5) + 0.5


@dataclass(frozen=True)
class OldCheckpoint:
    folder: Path
    values: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def ctf(tf: Any) -> Any:
    import ckptmap.tf

    return ckptmap.tf


def _axis_size_partitioner(tf: Any, max_shard_bytes: int) -> Any:
    return tf.compat.v1.variable_axis_size_partitioner(
        max_shard_bytes=max_shard_bytes, max_shards=100
    )


def _build(
    tf: Any, big: str, small: str, partitioner: Any, seed: int | None = None
) -> tuple[Any, Any, Any]:
    """global_step, a partitioned 1280x512 variable and a 10x5 one, as in Monolith's test."""
    step = tf.compat.v1.train.get_or_create_global_step()
    partitioned = tf.compat.v1.get_variable(
        big,
        shape=SHAPE,
        dtype=tf.float32,
        partitioner=partitioner,
        initializer=tf.keras.initializers.GlorotNormal(seed=seed),
    )
    whole = tf.compat.v1.get_variable(
        small, shape=(10, 5), dtype=tf.float32, initializer=tf.keras.initializers.Ones()
    )
    return step, partitioned, whole


@pytest.fixture(scope="module")
def old(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> OldCheckpoint:
    """The old checkpoint, written by TensorFlow's Saver (relative paths, so copies work)."""
    folder = tmp_path_factory.mktemp("old")
    with tf.Graph().as_default():
        step, partition, small = _build(
            tf, "partition", "small_var", _axis_size_partitioner(tf, 1 << 17)
        )
        saver = tf.compat.v1.train.Saver([partition, small, step], save_relative_paths=True)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run([small.assign(OLD_SMALL), step.assign(OLD_STEP)])
            values = {
                "partition": sess.run(tf.convert_to_tensor(partition)),
                "small_var": sess.run(small),
                "global_step": sess.run(step),
            }
            saver.save(sess, str(folder / "test"), global_step=step)
    return OldCheckpoint(folder, values)


def _copy(old: OldCheckpoint, tmp_path: Path) -> Path:
    return Path(shutil.copytree(old.folder, tmp_path / "model"))


def _part_name(part: Any) -> str:
    return str(part.name).removesuffix(":0")


def _alias_map(partitioned: Any) -> dict[str, str]:
    """Monolith's test map: new graph variable name -> old key."""
    alias = {"small_var2": "small_var", "global_step": "global_step"}
    for part in partitioned._get_variable_list():
        alias[_part_name(part)] = "partition"
    return alias


NEW_PARTITIONS = [
    pytest.param(lambda tf: _axis_size_partitioner(tf, 1 << 18), 0, 10, id="axis0-10-parts"),
    pytest.param(
        lambda tf: tf.compat.v1.fixed_size_partitioner(7, axis=0), 0, 7, id="axis0-7-uneven"
    ),
    pytest.param(
        lambda tf: tf.compat.v1.fixed_size_partitioner(3, axis=1), 1, 3, id="axis1-3-parts"
    ),
]


# -- the new model, read from the live graph ---------------------------------------


def test_describe_graph_infers_the_key_of_a_partitioned_variable(
    tf: Any, ctf: Any, old: OldCheckpoint
) -> None:
    with tf.Graph().as_default():
        _, partition, small = _build(
            tf, "partition", "small_var", _axis_size_partitioner(tf, 1 << 17)
        )
        model = ctf.describe_graph()

    assert small.name == "small_var:0"
    assert list(model.keys) == ["global_step", "partition", "small_var"]
    parts = model.variables_of("partition")
    assert [v.name for v in parts] == sorted(_part_name(p) for p in partition._get_variable_list())
    assert len(parts) == 20
    spec = model.keys["partition"]
    assert spec.shape == SHAPE
    assert [(s.starts, s.shape) for s in spec.slices] == [
        ((64 * i, 0), (64, 512)) for i in range(20)
    ]
    # The slices are the ones TensorFlow's Saver stored for the same graph.
    with open_checkpoint(old.folder) as ckpt:
        stored = ckpt.specs()["partition"].slices
    assert sorted((s.starts, s.shape) for s in stored) == [(s.starts, s.shape) for s in spec.slices]
    step = model.variables["global_step"]
    assert (step.is_global_step, step.trainable, step.shape, step.dtype.name) == (
        True,
        False,
        (),
        "int64",
    )
    assert model.variables["small_var"].slice is None
    assert all(v.trainable and not v.is_global_step for v in parts)


# -- the values fed to each variable -------------------------------------------------


@pytest.mark.parametrize(("partitioner", "axis", "count"), NEW_PARTITIONS)
def test_read_variable_values_gives_each_part_its_shape_and_values(
    tf: Any, ctf: Any, old: OldCheckpoint, partitioner: Any, axis: int, count: int
) -> None:
    with tf.Graph().as_default():
        _, partition2, _ = _build(tf, "partition2", "small_var2", partitioner(tf))
        parts = partition2._get_variable_list()
        model = ctf.describe_graph()
        alias = _alias_map(partition2)
    with open_checkpoint(old.folder) as ckpt:
        values = ctf.read_variable_values(ckpt, model.variables, alias)

    assert list(values) == list(alias)
    assert len(parts) == count
    for part in parts:
        assert values[_part_name(part)].shape == tuple(part.shape.as_list())
    joined = np.concatenate([values[_part_name(p)] for p in parts], axis=axis)
    np.testing.assert_array_equal(joined, old.values["partition"])
    np.testing.assert_array_equal(values["small_var2"], OLD_SMALL)
    assert values["global_step"] == OLD_STEP


def test_read_variable_values_rejects_a_tensor_that_does_not_fit(
    tf: Any, ctf: Any, old: OldCheckpoint
) -> None:
    with tf.Graph().as_default():
        _build(tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18))
        model = ctf.describe_graph()
    with open_checkpoint(old.folder) as ckpt:
        with pytest.raises(UnresolvedError) as wrong_shape:
            ctf.read_variable_values(ckpt, model.variables, {"small_var2": "partition"})
        with pytest.raises(UnresolvedError) as unknown:
            ctf.read_variable_values(ckpt, model.variables, {"small_var": "small_var"})
    assert str(wrong_shape.value) == (
        "variable 'small_var2': old tensor 'partition' is float32 [1280, 512], but the "
        "variable needs float32 [10, 5] (map it to another key)"
    )
    assert str(unknown.value) == (
        "alias map names 'small_var', which is not a variable of the graph "
        "(use the names of the graph's variables, without ':0')"
    )


def test_read_variable_values_refuses_corrupt_bytes(
    tf: Any, ctf: Any, old: OldCheckpoint, tmp_path: Path
) -> None:
    """The values fed to the graph are checked as remap checks them (stored CRC32C)."""
    folder = tmp_path / "old"
    shutil.copytree(old.folder, folder)
    with open_checkpoint(folder) as ckpt:
        entry = ckpt.entry("small_var")
        shard = ckpt.shard_path(entry.shard_id)
    data = bytearray(shard.read_bytes())
    data[entry.offset] ^= 0x5A
    shard.write_bytes(bytes(data))
    with tf.Graph().as_default():
        _build(tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 17))
        model = ctf.describe_graph()
    with open_checkpoint(folder) as ckpt, pytest.raises(CorruptCheckpointError) as info:
        ctf.read_variable_values(ckpt, model.variables, {"small_var2": "small_var"})
    assert str(info.value).startswith(f"{shard}: tensor 'small_var': CRC32C mismatch")


# -- the alias-map listener ------------------------------------------------------------


def _assert_restored(
    tf: Any, sess: Any, step: Any, partition2: Any, small2: Any, old: OldCheckpoint
) -> None:
    np.testing.assert_array_equal(
        sess.run(tf.convert_to_tensor(partition2)), old.values["partition"]
    )
    for part in partition2._get_variable_list():
        info = part._save_slice_info
        box = tuple(slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape, strict=True))
        np.testing.assert_array_equal(sess.run(part), old.values["partition"][box])
    np.testing.assert_array_equal(sess.run(small2), OLD_SMALL)
    assert sess.run(step) == OLD_STEP


@pytest.mark.parametrize(("partitioner", "axis", "count"), NEW_PARTITIONS)
def test_alias_map_listener_restores_renamed_and_repartitioned_variables(
    tf: Any, ctf: Any, old: OldCheckpoint, partitioner: Any, axis: int, count: int
) -> None:
    with tf.Graph().as_default() as graph:
        step, partition2, small2 = _build(tf, "partition2", "small_var2", partitioner(tf))
        alias = _alias_map(partition2)
        listener = ctf.CustomRestoreListener(alias_map=alias, model_dir=old.folder)
        listener.begin()

        [request] = graph.get_collection(ctf.CUSTOM_RESTORE_OP)
        assert not request.clear_nn
        assert dict(request.alias_map) == alias
        assert set(request.placeholders) == set(alias)
        assert request.checkpoint == old.folder / f"test-{OLD_STEP}"
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            assert not np.array_equal(sess.run(small2), OLD_SMALL)
            assert ctf.restore(sess) is ctf.RestoreAction.ALIAS
            _assert_restored(tf, sess, step, partition2, small2, old)
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []


def test_alias_restore_through_a_hook_in_a_monitored_session(
    tf: Any, ctf: Any, old: OldCheckpoint
) -> None:
    with tf.Graph().as_default():
        step, partition2, small2 = _build(
            tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18)
        )
        listener = ctf.CustomRestoreListener(alias_map=_alias_map(partition2), model_dir=old.folder)
        hook = ctf.CustomRestoreHook(listener)
        full = tf.convert_to_tensor(partition2)  # before the session finalizes the graph
        with tf.compat.v1.train.MonitoredTrainingSession(
            hooks=[hook], log_step_count_steps=None
        ) as sess:
            assert hook.action is ctf.RestoreAction.ALIAS
            np.testing.assert_array_equal(sess.run(full), old.values["partition"])
            np.testing.assert_array_equal(sess.run(small2), OLD_SMALL)
            assert sess.run(step) == OLD_STEP


def test_custom_restore_saver_restores_the_old_folder_in_a_monitored_session(
    tf: Any, ctf: Any, old: OldCheckpoint, tmp_path: Path
) -> None:
    """Monolith's layout: the job's own model folder holds the old checkpoint."""
    model_dir = _copy(old, tmp_path)
    with tf.Graph().as_default():
        step, partition2, small2 = _build(
            tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18)
        )
        hook = ctf.CustomRestoreHook(
            ctf.CustomRestoreListener(alias_map=_alias_map(partition2), model_dir=model_dir)
        )
        scaffold = tf.compat.v1.train.Scaffold(saver=ctf.CustomRestoreSaver())
        full = tf.convert_to_tensor(partition2)  # before the session finalizes the graph
        with tf.compat.v1.train.MonitoredTrainingSession(
            checkpoint_dir=str(model_dir),
            scaffold=scaffold,
            hooks=[hook],
            save_checkpoint_secs=None,
            save_summaries_steps=None,
            log_step_count_steps=None,
        ) as sess:
            assert hook.action is ctf.RestoreAction.NONE  # the saver consumed the request
            np.testing.assert_array_equal(sess.run(full), old.values["partition"])
            np.testing.assert_array_equal(sess.run(small2), OLD_SMALL)
            assert sess.run(step) == OLD_STEP


def test_restart_on_a_checkpoint_of_the_new_model_restores_plainly(
    tf: Any, ctf: Any, old: OldCheckpoint, tmp_path: Path
) -> None:
    """After an alias restore the job saves new names; a restart with the same map restores them."""
    new_dir = tmp_path / "new"
    with tf.Graph().as_default():
        step, partition2, small2 = _build(
            tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18)
        )
        alias = _alias_map(partition2)
        listener = ctf.CustomRestoreListener(alias_map=alias, model_dir=old.folder)
        listener.begin()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            listener.before_restore(sess)
            assert listener.after_restore(sess) is ctf.RestoreAction.ALIAS
            saver.save(sess, str(new_dir / "model"), global_step=step)

    with tf.Graph().as_default() as graph:
        step, partition2, small2 = _build(
            tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18)
        )
        ctf.CustomRestoreListener(alias_map=alias, model_dir=new_dir).begin()
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []
        with tf.compat.v1.Session() as sess:
            assert (
                ctf.restore(sess, new_dir, saver=tf.compat.v1.train.Saver())
                is ctf.RestoreAction.SAVER
            )
            _assert_restored(tf, sess, step, partition2, small2, old)


def test_a_graph_that_restores_plainly_needs_no_custom_restore(
    tf: Any, ctf: Any, old: OldCheckpoint
) -> None:
    """Same keys, other partitioning: TensorFlow's own restore re-slices it."""
    with tf.Graph().as_default() as graph:
        step, partition, small = _build(
            tf, "partition", "small_var", _axis_size_partitioner(tf, 1 << 18)
        )
        ctf.CustomRestoreListener(model_dir=old.folder).begin()
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []
        with tf.compat.v1.Session() as sess:
            assert ctf.restore(sess) is ctf.RestoreAction.NONE
            saver = tf.compat.v1.train.Saver()
            assert ctf.restore(sess, old.folder, saver=saver) is ctf.RestoreAction.SAVER
            _assert_restored(tf, sess, step, partition, small, old)


@pytest.mark.parametrize(
    ("extra", "problems"),
    [
        pytest.param({}, "brand_new: no source", id="no-source"),
        pytest.param(
            {"small_var2": "partition"},
            "small_var2 <- partition: shape [1280, 512] in the checkpoint, [10, 5] in the model "
            "(alias map entry 'small_var2')",
            id="wrong-shape",
        ),
    ],
)
def test_variables_that_cannot_be_restored_are_reported_at_begin(
    tf: Any, ctf: Any, old: OldCheckpoint, extra: dict[str, str], problems: str
) -> None:
    with tf.Graph().as_default() as graph:
        _, partition2, _ = _build(
            tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18)
        )
        if not extra:
            tf.compat.v1.get_variable("brand_new", shape=(3,), dtype=tf.float32)
        alias = {**_alias_map(partition2), **extra}
        listener = ctf.CustomRestoreListener(alias_map=alias, model_dir=old.folder)
        with pytest.raises(UnresolvedError) as err:
            listener.begin()
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []
    assert str(err.value) == (
        f"{old.folder / f'test-{OLD_STEP}'}: cannot restore 1 key(s) of the graph from this "
        f"checkpoint ({problems}); pass them in alias_map or add rules"
    )


# -- clear NN ------------------------------------------------------------------------------


@pytest.mark.parametrize("continue_training", [False, True], ids=["fresh", "continue-training"])
def test_clear_nn_listener_reinitialises_once(
    tf: Any, ctf: Any, old: OldCheckpoint, tmp_path: Path, continue_training: bool
) -> None:
    model_dir = _copy(old, tmp_path)
    flag = model_dir / ctf.CLEAR_NN_FLAG_FILE

    # First start: the NN variables are initialised again instead of restored.
    with tf.Graph().as_default() as graph:
        step, partition, small = _build(
            tf, "partition", "small_var", _axis_size_partitioner(tf, 1 << 17), seed=SEED
        )
        full = tf.convert_to_tensor(partition)
        with tf.compat.v1.Session() as sess:  # what the (seeded) initializer gives
            sess.run(tf.compat.v1.global_variables_initializer())
            initial = sess.run(full)
        listener = ctf.CustomRestoreListener(
            clear_nn=True, continue_training=continue_training, model_dir=model_dir
        )
        listener.begin()
        [request] = graph.get_collection(ctf.CUSTOM_RESTORE_OP)
        assert request.clear_nn
        assert request.global_step_key == ("global_step" if continue_training else None)
        with tf.compat.v1.Session() as sess:
            saver = tf.compat.v1.train.Saver()
            assert ctf.restore(sess, saver=saver) is ctf.RestoreAction.CLEAR_NN
            np.testing.assert_array_equal(sess.run(small), np.ones((10, 5), np.float32))
            cleared = sess.run(full)
            np.testing.assert_array_equal(cleared, initial)
            assert not np.array_equal(cleared, old.values["partition"])
            assert sess.run(step) == (OLD_STEP if continue_training else 0)
    assert flag.read_text() == "clean nn done!"

    # Second start: the flag says the NN was cleared; restore the checkpoint as it is.
    with tf.Graph().as_default() as graph:
        step, partition, small = _build(
            tf, "partition", "small_var", _axis_size_partitioner(tf, 1 << 17)
        )
        ctf.CustomRestoreListener(
            clear_nn=True, continue_training=continue_training, model_dir=model_dir
        ).begin()
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []
        with tf.compat.v1.Session() as sess:
            saver = tf.compat.v1.train.Saver()
            assert ctf.restore(sess, model_dir, saver=saver) is ctf.RestoreAction.SAVER
            _assert_restored(tf, sess, step, partition, small, old)


def test_clear_nn_flag_written_after_begin_is_honoured_at_restore(
    tf: Any, ctf: Any, old: OldCheckpoint, tmp_path: Path
) -> None:
    model_dir = _copy(old, tmp_path)
    with tf.Graph().as_default() as graph:
        step, partition, small = _build(
            tf, "partition", "small_var", _axis_size_partitioner(tf, 1 << 17)
        )
        ctf.CustomRestoreListener(clear_nn=True, model_dir=model_dir).begin()
        (model_dir / ctf.CLEAR_NN_FLAG_FILE).write_text("cleared by another worker")
        with tf.compat.v1.Session() as sess:
            saver = tf.compat.v1.train.Saver()
            assert ctf.restore(sess, saver=saver) is ctf.RestoreAction.SAVER
            _assert_restored(tf, sess, step, partition, small, old)
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []


def test_clear_nn_through_a_hook_after_the_session_restored(
    tf: Any, ctf: Any, old: OldCheckpoint, tmp_path: Path
) -> None:
    model_dir = _copy(old, tmp_path)
    with tf.Graph().as_default():
        step, partition, small = _build(
            tf, "partition", "small_var", _axis_size_partitioner(tf, 1 << 17)
        )
        hook = ctf.CustomRestoreHook(
            ctf.CustomRestoreListener(clear_nn=True, continue_training=True, model_dir=model_dir)
        )
        with tf.compat.v1.train.MonitoredTrainingSession(
            checkpoint_dir=str(model_dir),
            hooks=[hook],
            save_checkpoint_secs=None,
            save_summaries_steps=None,
            log_step_count_steps=None,
        ) as sess:
            assert hook.action is ctf.RestoreAction.CLEAR_NN
            np.testing.assert_array_equal(sess.run(small), np.ones((10, 5), np.float32))
            assert sess.run(step) == OLD_STEP
    assert (model_dir / ctf.CLEAR_NN_FLAG_FILE).is_file()


def test_clear_nn_with_an_alias_map_is_a_usage_error(ctf: Any) -> None:
    with pytest.raises(UsageError) as err:
        ctf.CustomRestoreListener(alias_map={"a": "b"}, clear_nn=True)
    assert str(err.value) == (
        "CustomRestoreListener: clear_nn re-initialises every variable, so an alias_map "
        "has nothing to restore (pass one or the other)"
    )


# -- when the listener stands aside ------------------------------------------------------


def test_nothing_happens_while_exporting(tf: Any, ctf: Any, old: OldCheckpoint) -> None:
    with tf.Graph().as_default() as graph:
        _, partition2, _ = _build(
            tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18)
        )
        listener = ctf.CustomRestoreListener(alias_map=_alias_map(partition2), model_dir=old.folder)
        assert not ctf.is_exporting()
        with ctf.exporting():
            assert ctf.is_exporting()
            listener.begin()
        assert not ctf.is_exporting()
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []
        assert listener.checkpoint is None


@pytest.mark.parametrize("where", ["empty-folder", "no-model-dir"])
def test_nothing_happens_without_a_checkpoint(
    tf: Any, ctf: Any, tmp_path: Path, where: str
) -> None:
    model_dir = tmp_path if where == "empty-folder" else None
    with tf.Graph().as_default() as graph:
        _build(tf, "partition2", "small_var2", _axis_size_partitioner(tf, 1 << 18))
        for clear_nn in (False, True):
            ctf.CustomRestoreListener(clear_nn=clear_nn, model_dir=model_dir).begin()
        assert graph.get_collection(ctf.CUSTOM_RESTORE_OP) == []
        with tf.compat.v1.Session() as sess:
            assert ctf.restore(sess) is ctf.RestoreAction.NONE


# -- automatic alias generation ---------------------------------------------------------


def test_auto_generated_alias_map_restores_a_deduplicated_scope(
    tf: Any, ctf: Any, tmp_path: Path
) -> None:
    """Monolith's scope de-duplication: old ``model/model/w`` feeds new ``model/w``."""
    old_w = np.arange(24, dtype=np.float32).reshape(6, 4)
    with tf.Graph().as_default():
        step = tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.variable_scope("model"), tf.compat.v1.variable_scope("model"):
            w = tf.compat.v1.get_variable("w", initializer=old_w)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(step.assign(3))
            tf.compat.v1.train.Saver().save(sess, str(tmp_path / "model.ckpt"), global_step=step)
    assert w.name == "model/model/w:0"

    with tf.Graph().as_default() as graph:
        step = tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.variable_scope("model"):
            w = tf.compat.v1.get_variable(
                "w", shape=(6, 4), partitioner=tf.compat.v1.fixed_size_partitioner(2, axis=1)
            )
        listener = ctf.CustomRestoreListener(model_dir=tmp_path)
        listener.begin()
        [request] = graph.get_collection(ctf.CUSTOM_RESTORE_OP)
        expected = {
            "global_step": "global_step",
            "model/w/part_0": "model/model/w",
            "model/w/part_1": "model/model/w",
        }
        assert dict(request.alias_map) == expected
        assert listener.alias_map == expected
        with tf.compat.v1.Session() as sess:
            assert ctf.restore(sess) is ctf.RestoreAction.ALIAS
            np.testing.assert_array_equal(sess.run(tf.convert_to_tensor(w)), old_w)
            assert sess.run(step) == 3

    with tf.Graph().as_default() as graph:
        with tf.compat.v1.variable_scope("model"):
            tf.compat.v1.get_variable("w", shape=(6, 4))
        listener = ctf.CustomRestoreListener(model_dir=tmp_path, enable_alias_map_auto_gen=False)
        with pytest.raises(UnresolvedError) as err:
            listener.begin()
    assert "model/w: no source, best candidate 'model/model/w'" in str(err.value)
