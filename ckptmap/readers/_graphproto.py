"""Protobuf graphs as a node source: ``GraphDef`` nodes and ``MetaGraphDef`` collections.

Binary graphs (``.pb``, ``.meta``, ``saved_model.pb``) and text graphs read with
protobuf's ``text_format`` (``fast=False``) become a :class:`ProtoNodes`, which
the graph logic of :mod:`ckptmap.readers._graphdef` reads exactly as it reads
the fast text scanner; :func:`meta_facts` collects what a MetaGraphDef adds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ckptmap.errors import CkptmapError, GraphError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers._graphdef import (
    GraphNode,
    MetaFacts,
    SliceInfo,
    tensor_node,
)
from ckptmap.split import SliceSpec

_DT_STRING = 7
# MetaGraphDef collections that hold serialized VariableDefs (tf.GraphKeys).
_VARIABLE_COLLECTIONS = (
    "variables",
    "trainable_variables",
    "global_step",
    "local_variables",
    "model_variables",
    "moving_average_variables",
    "metric_variables",
)


class ProtoNodes:
    """A :class:`NodeSource` over a parsed ``GraphDef`` message."""

    def __init__(self, graph_def: ckptmap_tf_pb2.GraphDef, where: str) -> None:
        self.where = where
        self._by_name: dict[str, ckptmap_tf_pb2.NodeDef] = {}
        self._ops: dict[str, str] = {}
        for node in graph_def.node:
            name = node.name
            if name in self._ops:
                raise GraphError(f"{where}: two nodes are named {name!r} (the graph is invalid)")
            self._by_name[name] = node
            self._ops[name] = node.op

    def ops(self) -> Mapping[str, str]:
        return self._ops

    def node(self, name: str) -> GraphNode:
        return node_from_proto(self._by_name[name], self.where)

    def inputs(self, name: str) -> tuple[str, ...]:
        return tuple(self._by_name[name].input)


def node_from_proto(node: ckptmap_tf_pb2.NodeDef, where: str) -> GraphNode:
    """The :class:`GraphNode` facts of a ``NodeDef`` message."""
    attr = node.attr
    dtype = attr["dtype"].type if "dtype" in attr else 0
    shape = None
    if "shape" in attr and attr["shape"].WhichOneof("value") == "shape":
        shape = shape_from_proto(attr["shape"].shape)
    dtypes = tuple(attr["dtypes"].list.type) if "dtypes" in attr else ()
    strings = None
    string_shape = None
    if node.op == "Const" and "value" in attr and attr["value"].WhichOneof("value") == "tensor":
        tensor = attr["value"].tensor
        if tensor.dtype == _DT_STRING:
            string_shape = shape_from_proto(tensor.tensor_shape)
            strings = tuple(tensor.string_val)
    return GraphNode(
        name=node.name,
        op=node.op,
        inputs=tuple(node.input),
        dtype=dtype,
        shape=shape,
        dtypes=dtypes,
        strings=strings,
        string_shape=string_shape,
    )


def shape_from_proto(shape: ckptmap_tf_pb2.TensorShapeProto) -> tuple[int, ...] | None:
    """A ``TensorShapeProto`` as a tuple (``-1`` for unknown dims), ``None`` for unknown rank."""
    if shape.unknown_rank:
        return None
    return tuple(int(d.size) for d in shape.dim)


def meta_facts(meta: ckptmap_tf_pb2.MetaGraphDef, where: str) -> MetaFacts:
    """Collect the saver name and variable collections of a ``MetaGraphDef``.

    Raises:
        GraphError: if a variable collection holds something that is not a VariableDef.
    """
    collections = meta.collection_def
    names: dict[str, frozenset[str]] = {}
    slice_info: dict[str, SliceInfo] = {}
    for key in _VARIABLE_COLLECTIONS:
        if key not in collections:
            continue
        members: set[str] = set()
        for var_def in _variable_defs(collections[key], f"{where}: collection {key!r}"):
            name = tensor_node(var_def.variable_name)
            members.add(name)
            info = var_def.save_slice_info_def
            if info.full_name:
                slice_info[name] = _slice_info(info, f"{where}: variable {name!r}")
        names[key] = frozenset(members)
    has_any = bool(names)
    return MetaFacts(
        restore_op_name=meta.saver_def.restore_op_name,
        slice_info=slice_info,
        global_variables=names.get("variables"),
        trainable=names.get("trainable_variables", frozenset()) if has_any else None,
        global_step=names.get("global_step", frozenset()),
    )


def _variable_defs(
    collection: ckptmap_tf_pb2.CollectionDef, where: str
) -> Iterable[ckptmap_tf_pb2.VariableDef]:
    kind = collection.WhichOneof("kind")
    if kind == "node_list":  # a plain list of tensor names
        for name in collection.node_list.value:
            yield ckptmap_tf_pb2.VariableDef(variable_name=name)
    elif kind == "bytes_list":
        for raw in collection.bytes_list.value:
            var_def = ckptmap_tf_pb2.VariableDef()
            try:
                var_def.ParseFromString(raw)
            except Exception as err:  # protobuf's DecodeError
                raise GraphError(
                    f"{where}: an entry is not a VariableDef ({err}); the MetaGraphDef is corrupt"
                ) from err
            yield var_def


def _slice_info(info: ckptmap_tf_pb2.SaveSliceInfoDef, where: str) -> SliceInfo:
    full = tuple(int(d) for d in info.full_shape)
    offsets = tuple(int(o) for o in info.var_offset)
    sizes = tuple(int(s) for s in info.var_shape)
    if not (len(full) == len(offsets) == len(sizes)):
        raise GraphError(f"{where}: SaveSliceInfoDef ranks differ; the MetaGraphDef is corrupt")
    try:
        spec = SliceSpec(full, tuple(zip(offsets, sizes, strict=True)))
    except CkptmapError as err:
        raise GraphError(f"{where}: bad SaveSliceInfoDef: {err}") from err
    return SliceInfo(info.full_name, spec)
