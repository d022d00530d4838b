"""Per-graph metadata: one dict kept in a graph collection, created on first use.

A port of Monolith's ``graph_meta.get_meta``. The dict lives in the graph
itself, so metadata dies with its graph and a new graph starts empty. The
collection is ours (:data:`GRAPH_META_COLLECTION`), not Monolith's
``monolith_graph_meta``, so the two never read each other's entries.

The dict is a Python object: ``export_meta_graph`` cannot serialise it and
TensorFlow logs a warning about the collection when it exports a graph that
holds one; nothing else is affected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import tensorflow as tf

GRAPH_META_COLLECTION = "ckptmap_graph_meta"

T = TypeVar("T")


def get_meta(key: str, factory: Callable[[], T], graph: Any = None) -> T:
    """Return the metadata stored under ``key`` in ``graph``, creating it on first use.

    Args:
        key: the name of the entry.
        factory: called with no arguments, once per graph, to create the entry.
        graph: the ``tf.Graph``; the default graph when ``None``.

    Returns:
        The same object for every call with the same key and graph.

    Example:
        >>> with tf.Graph().as_default():  # doctest: +SKIP
        ...     counters = get_meta("counters", dict)
        ...     assert get_meta("counters", dict) is counters
    """
    if graph is None:
        graph = tf.compat.v1.get_default_graph()
    # get_collection_ref hands out the list itself and works on a finalized graph.
    holder = graph.get_collection_ref(GRAPH_META_COLLECTION)
    if not holder:
        holder.append({})
    meta: dict[str, Any] = holder[0]
    if key not in meta:
        meta[key] = factory()
    return cast(T, meta[key])
