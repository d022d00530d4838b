"""Where a TF2 object-based checkpoint keeps its object graph (tf-checkpoint-format.md §10.2).

``tf.train.Checkpoint`` stores a serialized ``TrackableObjectGraph`` as a
string scalar under :data:`OBJECT_GRAPH_KEY`; a name-based (TF1 ``Saver``)
checkpoint has no such key. Its presence alone says which kind a checkpoint
is, so a listing can ask before it loads the reader of the graph
(:mod:`ckptmap.readers.object_graph`).
"""

from __future__ import annotations

__all__ = ["OBJECT_GRAPH_KEY"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
