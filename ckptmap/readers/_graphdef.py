"""From the nodes of a TensorFlow graph to a :class:`~ckptmap.spec.ModelSpec`.

This module holds the graph logic shared by every graph form (GraphDef text or
binary, MetaGraphDef, SavedModel): which Saver to use, the keys its ``RestoreV2``
ops ask for (tf-checkpoint-format.md §9.4, §9.5), and which graph variable each
key is restored into. It sees a graph only through a :class:`NodeSource`, so the
fast text scanner (``_pbtxt``) and protobuf messages (``_graphproto``) feed the
same code and give the same answer.

The rules, in order of authority:

* The keys, their dtypes and their slices are what the chosen Saver's
  ``RestoreV2`` nodes restore: their ``tensor_names`` and ``shape_and_slices``
  ``Const`` inputs and their ``dtypes`` attr.
* A restored tensor is linked to a graph variable by following the graph:
  ``RestoreV2:k`` -> (``Identity``)* -> ``Assign``/``AssignVariableOp`` whose
  first input is the variable. Outputs without such an edge fall back to names:
  a whole key to the variable of the same name, the slices of a key ``X`` to the
  variables ``X/part_<i>`` in order along the split axis.
* A whole key's shape is its variable's ``shape`` attr; a sliced key's full
  shape is in its spec strings.
* Without any ``RestoreV2`` node the keys are derived from the variables the way
  a default ``tf.compat.v1.train.Saver`` would name them (``X/part_<i>`` grouped
  under ``X``, ``X/part_<i>/Adam`` under ``X/Adam``), with the slices of the
  MetaGraphDef's ``SaveSliceInfoDef`` when there is one, else offsets summed
  along the axis where the parts differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from ckptmap.dtypes import DType, dtype_from_enum
from ckptmap.errors import CkptmapError, GraphError, UnsupportedInputError
from ckptmap.readers._limits import check_shape
from ckptmap.spec import GraphVariable, ModelSpec, TensorSpec
from ckptmap.split import PartitionError, SliceSpec, SliceSpecError, check_tiling

VARIABLE_OPS = frozenset({"VariableV2", "VarHandleOp", "Variable"})  # §9.2
RESTORE_OP = "RestoreV2"  # §9.4
IDENTITY_OP = "Identity"
ASSIGN_OPS = frozenset({"Assign", "AssignVariableOp"})
TABLE_IMPORT_OPS = frozenset({"LookupTableImportV2", "LookupTableImport"})
EDGE_OPS = ASSIGN_OPS | {IDENTITY_OP}
DEFAULT_SAVER = "save"  # the name scope tf.compat.v1.train.Saver() takes first
GLOBAL_STEP = "global_step"
_UPDATE_SCOPE = "update_"  # optimizers update variable v under the name scope update_<v>
# A part of a partitioned variable X: X/part_<i>; an optimizer slot of that part
# is X/part_<i>/<slot> and is saved as a slice of X/<slot> (slot_creator.py).
_PART = re.compile(r"^(.+)/part_(\d+)(/.+)?$")
_MAX_CHAIN = 64  # Identity hops followed from a RestoreV2 output before giving up


@dataclass(frozen=True, slots=True)
class GraphNode:
    """The facts about one ``NodeDef`` that the graph logic reads.

    Attributes:
        name: the node's name.
        op: its op type.
        inputs: its inputs as written (``x``, ``x:1``, ``^x``).
        dtype: the ``dtype`` attr (a ``DataType`` enum), 0 when absent.
        shape: the ``shape`` attr; ``None`` when absent or of unknown rank;
            unknown dimensions are ``-1``.
        dtypes: the ``dtypes`` attr (a list of ``DataType`` enums).
        strings: for a ``Const`` holding a string tensor, its ``string_val``
            list as written (TensorFlow repeats the last value up to the element
            count, see :func:`expand_values`); ``None`` for anything else.
        string_shape: that tensor's ``tensor_shape``; ``None`` for unknown rank.
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    dtype: int = 0
    shape: tuple[int, ...] | None = None
    dtypes: tuple[int, ...] = ()
    strings: tuple[bytes, ...] | None = None
    string_shape: tuple[int, ...] | None = None


class NodeSource(Protocol):
    """A graph whose nodes can be listed cheaply and read one at a time."""

    where: str

    def ops(self) -> Mapping[str, str]:
        """Every node's op type, by node name."""
        ...

    def node(self, name: str) -> GraphNode:
        """The full facts of node ``name``."""
        ...

    def inputs(self, name: str) -> tuple[str, ...]:
        """The inputs of node ``name`` (may be cheaper than :meth:`node`)."""
        ...


@dataclass(frozen=True, slots=True)
class SliceInfo:
    """A variable's ``SaveSliceInfoDef``: the key and slice it is saved as."""

    full_name: str
    slice: SliceSpec


@dataclass(frozen=True)
class MetaFacts:
    """What a MetaGraphDef adds to its GraphDef.

    Attributes:
        restore_op_name: ``SaverDef.restore_op_name`` (``save/restore_all``), or "".
        slice_info: ``SaveSliceInfoDef`` of partitioned variables, by variable name.
        global_variables: names in the ``variables`` collection; ``None`` without it.
        trainable: names in the ``trainable_variables`` collection; ``None`` when
            the MetaGraphDef has no variable collections at all.
        global_step: names in the ``global_step`` collection.
    """

    restore_op_name: str = ""
    slice_info: dict[str, SliceInfo] = field(default_factory=dict)
    global_variables: frozenset[str] | None = None
    trainable: frozenset[str] | None = None
    global_step: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


def string_count(values: tuple[bytes, ...], dims: tuple[int, ...] | None, where: str) -> int:
    """The element count of a string ``TensorProto`` with ``values`` and shape ``dims``.

    Raises:
        GraphError: if the shape is unknown or malformed, or the list is longer
            than the tensor.
    """
    if dims is None or any(d < 0 for d in dims):
        raise GraphError(f"{where}: the string tensor has no fully defined shape")
    check_shape(dims, where)
    count = 1
    for d in dims:
        count *= d
    if len(values) > count:
        raise GraphError(
            f"{where}: the string tensor has {len(values)} values for {count} elements"
        )
    return count


def expand_values(values: tuple[bytes, ...], count: int) -> tuple[bytes, ...]:
    """Expand a ``TensorProto`` value list to the tensor's element count.

    TensorFlow repeats the last value when the list is shorter than the tensor
    (tf-checkpoint-format.md §9.1); an empty list means empty strings. Callers
    bound ``count`` first (a shape of ``[2**40]`` is refused, not expanded).
    """
    if len(values) < count:
        values = values + (values[-1] if values else b"",) * (count - len(values))
    return values


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def tensor_node(tensor: str) -> str:
    """The node of a tensor or input name: ``x:1`` -> ``x``, ``^x`` -> ``x``."""
    name = tensor[1:] if tensor.startswith("^") else tensor
    head, sep, tail = name.rpartition(":")
    return head if sep and tail.isdigit() else name


def _output_name(tensor: str) -> str:
    """The canonical ``node:k`` spelling of a data input."""
    head, sep, tail = tensor.rpartition(":")
    return tensor if sep and tail.isdigit() else f"{tensor}:0"


def saver_scope(op_name: str) -> str:
    """The name scope of a Saver op: ``save/RestoreV2_1`` -> ``save``; "" at the root."""
    return op_name.rpartition("/")[0]


def _show_scope(scope: str) -> str:
    return repr(scope) if scope else '"" (the root scope)'


# ---------------------------------------------------------------------------
# The model spec
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Restored:
    """One output of a RestoreV2 node: a key, its spec string and dtype."""

    key: str
    spec: str
    dtype: int
    output: str  # "save/RestoreV2:3"


def build_model_spec(
    source: NodeSource,
    *,
    meta: MetaFacts | None = None,
    saver: str | None = None,
    require_saver: bool = False,
) -> ModelSpec:
    """Read the keys and variables of a graph.

    Args:
        source: the graph's nodes.
        meta: what its MetaGraphDef adds (saver name, collections), if any.
            Without a ``trainable_variables`` collection, the variables an
            optimizer updates (name scopes ``update_<variable>``) are the
            trainable ones; in a graph without optimizer, every variable but
            the global step.
        saver: the name scope of the Saver to use (``save``, ``save_1``, ...);
            by default the MetaGraphDef's Saver, else ``save``, else the only one.
        require_saver: raise instead of deriving keys from variables when the
            graph has no ``RestoreV2`` node (SavedModels).

    Raises:
        GraphError: if the graph has no saver and no variables, several savers and
            none chosen, or a Saver whose nodes are inconsistent.
        UnsupportedInputError: if a restored dtype has no stored form, or a
            saver is required and there is none.
    """
    ops = source.ops()
    variables = sorted(name for name, op in ops.items() if op in VARIABLE_OPS)
    restores = [name for name, op in ops.items() if op == RESTORE_OP]
    meta = meta or MetaFacts()
    if meta.trainable is None:
        trained = _trained_variables(source, set(variables))
        if trained:
            meta = replace(meta, trainable=trained)
    if not restores:
        if saver is not None:
            raise GraphError(
                f"{source.where}: no Saver named {saver!r}: the graph has no RestoreV2 op "
                "(drop the saver option to derive the keys from the variables)"
            )
        if require_saver:
            raise UnsupportedInputError(
                f"{source.where}: no RestoreV2 op in the graph, so this is not a TF1 "
                "name-based model (a TF2 object-based SavedModel keeps its keys in "
                "variables/variables: pass that checkpoint prefix as the new model instead)"
            )
        if not variables:
            raise GraphError(
                f"{source.where}: the graph has no variables and no Saver "
                "(is this the model's training graph?)"
            )
        return _spec_from_variables(source, variables, meta)
    scope = _choose_saver(source.where, restores, saver, meta)
    chosen = sorted((r for r in restores if saver_scope(r) == scope), key=_natural)
    return _spec_from_saver(source, scope, chosen, variables, meta)


def _trained_variables(source: NodeSource, variables: set[str]) -> frozenset[str]:
    """The variables an optimizer updates, found by its ``update_<variable>`` name scopes.

    A bare GraphDef has no ``trainable_variables`` collection. TF1 and Keras-2
    optimizers build the update of each variable they train under the name scope
    ``update_<variable name>`` (``Adam/update_dense/kernel/ApplyAdam``), which
    tells trainable variables apart from slots, accumulators and counters.
    """
    trained = set()
    for name in source.ops():
        start = name.find(_UPDATE_SCOPE)
        while start >= 0:
            if start == 0 or name[start - 1] == "/":
                rest = name[start + len(_UPDATE_SCOPE) :].split("/")
                for end in range(len(rest), 0, -1):
                    candidate = "/".join(rest[:end])
                    if candidate in variables:
                        trained.add(candidate)
                        break
            start = name.find(_UPDATE_SCOPE, start + 1)
    return frozenset(trained)


def _starts(spec: SliceSpec) -> tuple[int, ...]:
    return spec.starts


def _natural(name: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _choose_saver(
    where: str, restores: list[str], saver: str | None, meta: MetaFacts | None
) -> str:
    scopes = sorted({saver_scope(r) for r in restores})
    if saver is not None:
        wanted = saver.rstrip("/")
        if wanted in scopes:
            return wanted
        listed = ", ".join(_show_scope(s) for s in scopes)
        raise GraphError(f"{where}: no Saver named {saver!r}; the graph has savers {listed}")
    if meta is not None and meta.restore_op_name:
        named = saver_scope(meta.restore_op_name)
        if named in scopes:
            return named
    if DEFAULT_SAVER in scopes:
        return DEFAULT_SAVER
    if len(scopes) == 1:
        return scopes[0]
    listed = ", ".join(_show_scope(s) for s in scopes)
    raise GraphError(
        f"{where}: the graph has several savers ({listed}) and none is called "
        f"{DEFAULT_SAVER!r}; choose one with the saver option"
    )


def _spec_from_saver(
    source: NodeSource,
    scope: str,
    restores: list[str],
    variables: list[str],
    meta: MetaFacts,
) -> ModelSpec:
    where = source.where
    restored = [item for name in restores for item in _read_restore(source, name)]
    by_key: dict[str, list[_Restored]] = {}
    for item in restored:
        by_key.setdefault(item.key, []).append(item)
    slices = {key: _key_slices(where, key, items) for key, items in by_key.items()}

    var_nodes = {name: source.node(name) for name in variables}
    links, users = _follow_edges(source, scope, {r.output for r in restored}, var_nodes)
    assigned = _assign_variables(where, by_key, slices, links, var_nodes)

    keys: list[TensorSpec] = []
    graph_vars: list[GraphVariable] = []
    restored_into: dict[str, str] = {}
    for key, items in by_key.items():
        dtype = dtype_from_enum(items[0].dtype, where=f"{where}: key {key!r}")
        key_slices = slices[key]
        consumer = next((u for item in items for u in users.get(item.output, ())), None)
        if consumer is not None and not any(assigned.get(item.output) for item in items):
            restored_into[key] = _describe_consumer(source, consumer)
            if not key_slices:  # its size is the data's: any shape
                keys.append(TensorSpec(key, dtype, (), dynamic=True))
                continue
        if key_slices:
            shape = key_slices[0].full_shape
        else:
            shape = _whole_shape(where, key, assigned.get(items[0].output, ()), var_nodes)
        # Slices in offset order: the order of the restore op's list carries no meaning.
        keys.append(TensorSpec(key, dtype, shape, tuple(sorted(key_slices, key=_starts))))
        for k, item in enumerate(items):
            spec = key_slices[k] if key_slices else None
            graph_vars.extend(
                _graph_variable(var, key, dtype, shape, spec, meta)
                for var in assigned.get(item.output, ())
            )
    model = ModelSpec.from_parts(keys, graph_vars, source=where)
    return replace(model, save_shards=len(restores), restored_into=restored_into)


def _read_restore(source: NodeSource, name: str) -> list[_Restored]:
    where = f"{source.where}: {name}"
    node = source.node(name)
    data_inputs = [i for i in node.inputs if not i.startswith("^")]
    if len(data_inputs) < 3:
        raise GraphError(f"{where}: RestoreV2 has {len(data_inputs)} inputs, not 3")
    names, name_count = _string_const(source, data_inputs[1], f"{where} tensor_names")
    specs, spec_count = _string_const(source, data_inputs[2], f"{where} shape_and_slices")
    if not (name_count == spec_count == len(node.dtypes)):
        raise GraphError(
            f"{where}: {name_count} tensor names, {spec_count} slice specs and "
            f"{len(node.dtypes)} dtypes do not match (the Saver nodes are inconsistent)"
        )
    key_list = expand_values(names, name_count)
    spec_list = expand_values(specs, spec_count)
    return [
        _Restored(
            key=_decode(raw, f"{where} tensor_names"),
            spec=_decode(spec, f"{where} shape_and_slices"),
            dtype=dtype,
            output=f"{name}:{k}",
        )
        for k, (raw, spec, dtype) in enumerate(zip(key_list, spec_list, node.dtypes, strict=True))
    ]


def _string_const(source: NodeSource, tensor: str, where: str) -> tuple[tuple[bytes, ...], int]:
    """The ``string_val`` list of the Const that ``tensor`` names, and its element count."""
    name = tensor_node(tensor)
    op = source.ops().get(name)
    if op is None:
        raise GraphError(f"{where}: input {tensor!r} is not a node of the graph")
    if op != "Const":
        raise GraphError(
            f"{where}: input {tensor!r} is a {op} op, not a Const (ckptmap reads the "
            "restored names from constants, as tf.compat.v1.train.Saver builds them)"
        )
    node = source.node(name)
    if node.strings is None:
        raise GraphError(f"{where}: Const {name!r} does not hold a string tensor")
    count = string_count(node.strings, node.string_shape, f"{where}: Const {name!r}")
    return node.strings, count


def _decode(raw: bytes, where: str) -> str:
    # Keys are kept as str; bytes that are not UTF-8 survive as surrogates
    # (the convention of ModelSpec's byte-order sort).
    return raw.decode("utf-8", "surrogateescape")


def _key_slices(where: str, key: str, items: list[_Restored]) -> list[SliceSpec]:
    if any(not item.spec for item in items):
        if len(items) > 1:
            raise GraphError(
                f"{where}: key {key!r} is restored {len(items)} times, once as a whole "
                "tensor (the Saver nodes are inconsistent)"
            )
        return []
    try:
        specs = [SliceSpec.parse(item.spec) for item in items]
    except CkptmapError as err:
        raise GraphError(f"{where}: key {key!r}: {err}") from err
    if len({s.full_shape for s in specs}) > 1 or len({item.dtype for item in items}) > 1:
        raise GraphError(
            f"{where}: the slices of key {key!r} disagree on the full shape or dtype "
            "(the Saver nodes are inconsistent)"
        )
    _check_slices(where, key, specs)
    return specs


def _check_slices(where: str, key: str, specs: list[SliceSpec]) -> None:
    """The slices of a key must be of a real tensor and tile it exactly once."""
    check_shape(specs[0].full_shape, f"{where}: key {key!r}")
    try:
        check_tiling(specs, specs[0].full_shape)
    except (PartitionError, SliceSpecError) as err:
        raise GraphError(
            f"{where}: key {key!r}: {err} (the Saver nodes are inconsistent)"
        ) from None


def _follow_edges(
    source: NodeSource, scope: str, outputs: set[str], var_nodes: Mapping[str, GraphNode]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Map each restored output (``save/RestoreV2:k``) to the variables it is assigned to.

    Only nodes inside the Saver's name scope are read: that is where the Saver
    puts its restore ops. Besides ``Identity``, ``Assign`` and
    ``AssignVariableOp``, the other ops there that read a restored output (a
    lookup table's ``LookupTableImportV2``, another saveable's restore) are
    returned too.

    Returns:
        ``(variables, users)``: per restored output, the variables it is
        assigned to, and the other nodes that take it.
    """
    prefix = f"{scope}/" if scope else ""
    consumers: dict[str, list[str]] = {}  # tensor -> Identity nodes reading it
    assigned_from: dict[str, list[str]] = {}  # tensor -> variables assigned its value
    taken_by: dict[str, list[str]] = {}  # tensor -> other nodes reading it
    for name, op in source.ops().items():
        if not name.startswith(prefix) or op in (RESTORE_OP, "Const", "NoOp"):
            continue
        data = [i for i in source.inputs(name) if not i.startswith("^")]
        if op not in EDGE_OPS:
            for tensor in data:
                taken_by.setdefault(_output_name(tensor), []).append(name)
        elif op == IDENTITY_OP and data:
            consumers.setdefault(_output_name(data[0]), []).append(name)
        elif op in ASSIGN_OPS and len(data) >= 2:
            target = tensor_node(data[0])
            if target in var_nodes:
                assigned_from.setdefault(_output_name(data[1]), []).append(target)
    links: dict[str, list[str]] = {}
    users: dict[str, list[str]] = {}
    for output in outputs:
        found: list[str] = []
        others: list[str] = []
        frontier = [output]
        for _ in range(_MAX_CHAIN):
            following: list[str] = []
            for tensor in frontier:
                found.extend(v for v in assigned_from.get(tensor, ()) if v not in found)
                others.extend(n for n in taken_by.get(tensor, ()) if n not in others)
                following.extend(f"{n}:0" for n in consumers.get(tensor, ()))
            if not following:
                break
            frontier = following
        links[output] = found
        if others:
            users[output] = others
    return links, users


def _describe_consumer(source: NodeSource, name: str) -> str:
    """What a restored tensor goes into: ``lookup table 'word_ids' (MutableHashTableV2)``."""
    op = source.ops()[name]
    if op in TABLE_IMPORT_OPS:
        data = [i for i in source.inputs(name) if not i.startswith("^")]
        table = tensor_node(data[0]) if data else ""
        table_op = source.ops().get(table)
        if table_op is not None:
            return f"lookup table {table!r} ({table_op})"
    return f"{op} op {name!r}"


def _assign_variables(
    where: str,
    by_key: dict[str, list[_Restored]],
    slices: dict[str, list[SliceSpec]],
    links: dict[str, list[str]],
    var_nodes: Mapping[str, GraphNode],
) -> dict[str, tuple[str, ...]]:
    """Decide which variables each restored output goes to (edges, then names)."""
    assigned: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for output, targets in links.items():
        for target in targets:
            if target in owner and owner[target] != output:
                raise GraphError(
                    f"{where}: variable {target!r} is restored from both {owner[target]} and "
                    f"{output} (the Saver nodes are inconsistent)"
                )
            owner[target] = output
        if targets:
            assigned[output] = tuple(targets)
    for key, items in by_key.items():
        unlinked = [item for item in items if item.output not in assigned]
        if not unlinked:
            continue
        if not slices[key]:
            if key in var_nodes and key not in owner:
                assigned[unlinked[0].output] = (key,)
                owner[key] = unlinked[0].output
            continue
        parts = _parts_of(key, var_nodes, owner)
        ordered = sorted(
            (
                (item, spec)
                for item, spec in zip(items, slices[key], strict=True)
                if item in unlinked
            ),
            key=lambda pair: pair[1].starts,
        )
        if len(parts) != len(ordered):
            continue
        if all(
            var_nodes[p].shape == spec.shape for p, (_, spec) in zip(parts, ordered, strict=True)
        ):
            for part, (item, _spec) in zip(parts, ordered, strict=True):
                assigned[item.output] = (part,)
                owner[part] = item.output
    return assigned


def partition_of(name: str) -> tuple[str, int] | None:
    """The key and part number of a part's name: ``X/part_2`` -> ``(X, 2)``,
    ``X/part_2/Adam`` -> ``(X/Adam, 2)``; ``None`` for other names."""
    match = _PART.match(name)
    if match is None:
        return None
    return match.group(1) + (match.group(3) or ""), int(match.group(2))


def _parts_of(key: str, var_nodes: Mapping[str, GraphNode], owner: Mapping[str, str]) -> list[str]:
    parts = []
    for name in var_nodes:
        found = partition_of(name)
        if found is not None and found[0] == key and name not in owner:
            parts.append((found[1], name))
    return [name for _, name in sorted(parts)]


def _whole_shape(
    where: str, key: str, targets: tuple[str, ...], var_nodes: Mapping[str, GraphNode]
) -> tuple[int, ...]:
    if not targets:
        raise GraphError(
            f"{where}: cannot tell the shape of key {key!r}: the Saver restores it into no "
            "variable of the graph (describe the model with a JSON spec instead)"
        )
    shape = var_nodes[targets[0]].shape
    if shape is not None:
        check_shape(shape, f"{where}: variable {targets[0]!r} (key {key!r})", unknown_ok=True)
    if shape is None or any(d < 0 for d in shape):
        raise GraphError(
            f"{where}: variable {targets[0]!r} (key {key!r}) has no fully defined shape "
            "(describe the model with a JSON spec instead)"
        )
    return shape


def _graph_variable(
    name: str,
    key: str,
    dtype: DType,
    shape: tuple[int, ...],
    spec: SliceSpec | None,
    meta: MetaFacts,
) -> GraphVariable:
    is_step = name == GLOBAL_STEP or name in meta.global_step
    # Without collections every variable but the global step counts as trainable.
    trainable = not is_step if meta.trainable is None else name in meta.trainable
    return GraphVariable(
        name=name,
        key=key,
        dtype=dtype,
        shape=spec.shape if spec is not None else shape,
        slice=spec,
        trainable=trainable,
        is_global_step=is_step,
    )


# ---------------------------------------------------------------------------
# Graphs without a Saver
# ---------------------------------------------------------------------------


def _spec_from_variables(source: NodeSource, names: list[str], meta: MetaFacts) -> ModelSpec:
    where = source.where
    if meta.global_variables is not None:
        names = [n for n in names if n in meta.global_variables]
    nodes = [source.node(n) for n in names]
    whole: list[GraphNode] = []
    groups: dict[str, list[tuple[int, GraphNode]]] = {}
    placed: list[tuple[GraphNode, SliceInfo]] = []
    for node in nodes:
        info = meta.slice_info.get(node.name)
        found = partition_of(node.name)
        if info is not None:
            placed.append((node, info))
        elif found is not None:
            groups.setdefault(found[0], []).append((found[1], node))
        else:
            whole.append(node)
    for key, parts in groups.items():
        placed.extend(_place_parts(where, key, sorted(parts, key=lambda p: p[0])))

    keys: list[TensorSpec] = []
    graph_vars: list[GraphVariable] = []
    for node in whole:
        dtype = dtype_from_enum(node.dtype, where=f"{where}: variable {node.name!r}")
        shape = _whole_shape(where, node.name, (node.name,), {node.name: node})
        keys.append(TensorSpec(node.name, dtype, shape))
        graph_vars.append(_graph_variable(node.name, node.name, dtype, shape, None, meta))
    sliced: dict[str, list[tuple[GraphNode, SliceSpec]]] = {}
    for node, info in placed:
        sliced.setdefault(info.full_name, []).append((node, info.slice))
    clash = sorted(set(sliced) & {node.name for node in whole})
    if clash:
        raise GraphError(
            f"{where}: {clash[0]!r} is both a variable and the name of a partitioned "
            "variable's parts, so a Saver could not save both (rename one)"
        )
    for key, members in sliced.items():
        dtype = dtype_from_enum(members[0][0].dtype, where=f"{where}: variable {key!r}")
        members.sort(key=lambda m: m[1].starts)
        shape = members[0][1].full_shape
        if any(spec.full_shape != shape for _, spec in members):
            raise GraphError(
                f"{where}: the parts of {key!r} disagree on its full shape "
                "(the MetaGraphDef is inconsistent)"
            )
        _check_slices(where, key, [spec for _, spec in members])
        keys.append(TensorSpec(key, dtype, shape, tuple(spec for _, spec in members)))
        for node, spec in members:
            graph_vars.append(_graph_variable(node.name, key, dtype, shape, spec, meta))
    return ModelSpec.from_parts(keys, graph_vars, source=where)


def _place_parts(
    where: str, key: str, numbered: list[tuple[int, GraphNode]]
) -> list[tuple[GraphNode, SliceInfo]]:
    """Give the parts ``key/part_<i>`` slices: offsets summed along the axis where they differ.

    When every part has the same shape the axis is taken to be 0, the default
    of TensorFlow's partitioners.
    """
    if [i for i, _ in numbered] != list(range(len(numbered))):
        listed = ", ".join(node.name for _, node in numbered)
        raise GraphError(
            f"{where}: the parts of {key!r} are not numbered 0 to {len(numbered) - 1} "
            f"({listed}); describe the model with a JSON spec instead"
        )
    parts = [node for _, node in numbered]
    shapes = []
    for node in parts:
        if node.shape is not None:
            check_shape(node.shape, f"{where}: variable {node.name!r}", unknown_ok=True)
        if node.shape is None or any(d < 0 for d in node.shape):
            raise GraphError(f"{where}: variable {node.name!r} has no fully defined shape")
        shapes.append(node.shape)
    rank = len(shapes[0])
    if rank == 0 or any(len(s) != rank for s in shapes):
        raise GraphError(f"{where}: the parts of {key!r} have different ranks or are scalars")
    differing = [axis for axis in range(rank) if len({s[axis] for s in shapes}) > 1]
    if len(differing) > 1:
        raise GraphError(
            f"{where}: the parts of {key!r} differ in more than one dimension, so they "
            "are not slices along one axis"
        )
    axis = differing[0] if differing else 0
    full = list(shapes[0])
    full[axis] = sum(s[axis] for s in shapes)
    placed = []
    offset = 0
    for node, shape in zip(parts, shapes, strict=True):
        extents = tuple((offset, d) if i == axis else (0, d) for i, d in enumerate(shape))
        placed.append((node, SliceInfo(key, SliceSpec(tuple(full), extents))))
        offset += shape[axis]
    return placed
