"""Graph helpers for TensorFlow 1-style training graphs.

A port of Monolith's ``graph_utils``. Batch normalisation written against
resource variables updates its moving mean and variance with ops named
``.../AssignMovingAvg/...`` of type ``AssignSubVariableOp``; a train op built
with ``tf.control_dependencies(UPDATE_OPS)`` only runs them when they are in
that collection.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

MOVING_AVERAGE_MARK = "AssignMovingAvg"
UPDATE_OP_TYPE = "AssignSubVariableOp"


def add_batch_norm_into_update_ops(graph: Any = None) -> list[Any]:
    """Add every batch-norm moving-average update of ``graph`` to ``UPDATE_OPS``.

    An op qualifies when its name contains ``AssignMovingAvg`` and its type is
    ``AssignSubVariableOp``, as in Monolith. Ops already in the collection are
    not added twice, so calling this again is harmless.

    Args:
        graph: the ``tf.Graph``; the default graph when ``None``.

    Returns:
        The ops this call added, in graph order.
    """
    if graph is None:
        graph = tf.compat.v1.get_default_graph()
    key = tf.compat.v1.GraphKeys.UPDATE_OPS
    present = {id(op) for op in graph.get_collection(key)}
    added = [
        op
        for op in graph.get_operations()
        if MOVING_AVERAGE_MARK in op.name and op.type == UPDATE_OP_TYPE and id(op) not in present
    ]
    for op in added:
        graph.add_to_collection(key, op)
    return added
