"""add_batch_norm_into_update_ops on a batch-norm graph built with tf.compat.v1."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.tf

DECAY = 0.99


def _batch_norm(tf: Any, x: Any) -> tuple[Any, Any, Any]:
    """A training-mode batch norm whose moving averages update the way TF1's layer did.

    The update of each moving statistic is an ``assign_sub`` of
    ``(moving - batch) * (1 - decay)`` in a name scope ``AssignMovingAvg``.
    """
    with tf.compat.v1.variable_scope("bn"):
        mean = tf.compat.v1.get_variable(
            "moving_mean",
            (4,),
            initializer=tf.compat.v1.zeros_initializer(),
            trainable=False,
            use_resource=True,
        )
        variance = tf.compat.v1.get_variable(
            "moving_variance",
            (4,),
            initializer=tf.compat.v1.ones_initializer(),
            trainable=False,
            use_resource=True,
        )
        batch_mean, batch_variance = tf.nn.moments(x, axes=[0])
        for moving, batch in ((mean, batch_mean), (variance, batch_variance)):
            with tf.compat.v1.name_scope("AssignMovingAvg"):
                tf.compat.v1.assign_sub(moving, (moving - batch) * (1 - DECAY))
        y = tf.nn.batch_normalization(x, batch_mean, batch_variance, None, None, 1e-3)
    return mean, variance, y


def test_moving_average_updates_land_in_update_ops(tf: Any) -> None:
    from ckptmap.tf import add_batch_norm_into_update_ops

    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, (None, 4))
        mean, variance, _ = _batch_norm(tf, x)
        # TensorFlow's own moving-average helper names its update the same way.
        shadowed = tf.compat.v1.get_variable("w", (4,), use_resource=True)
        tf.compat.v1.train.ExponentialMovingAverage(DECAY).apply([shadowed])
        # Not moving averages: a plain assign_sub, and a Keras 3 layer's updates.
        counter = tf.compat.v1.get_variable("counter", (), use_resource=True)
        tf.compat.v1.assign_sub(counter, 1.0)
        tf.keras.layers.BatchNormalization()(x, training=True)
        assert graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS) == []

        added = add_batch_norm_into_update_ops()

        update_ops = graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        assert [op.name for op in update_ops] == [
            "bn/AssignMovingAvg/AssignSubVariableOp",
            "bn/AssignMovingAvg_1/AssignSubVariableOp",
            "ExponentialMovingAverage/AssignMovingAvg/AssignSubVariableOp",
        ]
        assert added == update_ops
        assert add_batch_norm_into_update_ops() == []  # a second call adds nothing
        assert len(graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)) == 3

        batch = np.arange(12, dtype=np.float32).reshape(3, 4)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(update_ops, feed_dict={x: batch})
            np.testing.assert_allclose(sess.run(mean), (1 - DECAY) * batch.mean(axis=0), rtol=1e-5)
            expected_variance = DECAY + (1 - DECAY) * batch.var(axis=0)
            np.testing.assert_allclose(sess.run(variance), expected_variance, rtol=1e-5)


def test_another_graph_can_be_named(tf: Any) -> None:
    from ckptmap.tf import add_batch_norm_into_update_ops

    graph = tf.Graph()
    with graph.as_default():
        _batch_norm(tf, tf.compat.v1.placeholder(tf.float32, (None, 4)))
    with tf.Graph().as_default() as other:
        added = add_batch_norm_into_update_ops(graph)
        assert other.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS) == []
    assert len(added) == 2
    assert graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS) == added
