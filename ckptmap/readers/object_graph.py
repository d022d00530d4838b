"""The names users know for the keys of a TF2 object-based checkpoint.

A checkpoint written by ``tf.train.Checkpoint`` or Keras stores each variable
under the first path by which its saver reached it
(``optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE`` for Keras 3's
``hidden/kernel``). The ``_CHECKPOINTABLE_OBJECT_GRAPH`` string tensor is a
serialized ``TrackableObjectGraph`` (tf-checkpoint-format.md §10): nodes with
named children, attributes naming a variable's ``full_name`` and its
``checkpoint_key``, and optimizer slots. :func:`object_names` reads it into a
:class:`KeyNames` per key and one *user name* per key
(:meth:`ObjectNames.user_name`):

* a variable: its full name (``hidden/kernel``); an object saving several
  attributes: ``<full name>/<attribute>``;
* an optimizer slot: ``<variable full name>/<slot name>`` (``hidden/kernel/m``
  for tf-keras, ``hidden/kernel/momentum`` for Keras 3). Slots are found in
  the graph's slot references (legacy optimizers, TF1 optimizers), by position
  (Keras 3: an optimizer's lists such as ``_momentums`` run parallel to its
  ``_trainable_variables``) or by name (tf-keras: ``Adam/m/hidden/kernel`` is
  slot ``m`` of ``hidden/kernel``);
* the one optimizer's iteration counter (its ``_iterations`` or ``iter``
  child): ``global_step``;
* anything else, or a name two keys would share: the key itself.

Every object reachable more than one way lists up to :data:`MAX_PATHS` paths,
shortest first and without cycles; the first is the one its key was made of.
The graph is read bounded: its size, the paths per object and the work spent
on alternative paths are capped, and a damaged graph is a
:class:`~ckptmap.errors.CorruptCheckpointError` naming the checkpoint.

Example:
    >>> with open_source("fixtures/tf2_keras3/old/ckpt") as source:  # doctest: +SKIP
    ...     names = object_names(source)
    ...     names.user_name("optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE")
    'hidden/kernel'
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ckptmap.errors import CorruptCheckpointError, UnsupportedInputError
from ckptmap.formats.object_graph import OBJECT_GRAPH_KEY

if TYPE_CHECKING:
    from ckptmap.proto.ckptmap_tf_pb2 import TrackableObjectGraph as _Graph
    from ckptmap.readers.source import Source
    from ckptmap.spec import ModelSpec

__all__ = [
    "GLOBAL_STEP",
    "MAX_GRAPH_BYTES",
    "MAX_PATHS",
    "KeyNames",
    "ObjectNames",
    "SlotOf",
    "object_names",
    "parse_object_graph",
    "template_names",
]

GLOBAL_STEP = "global_step"
"""The user name of an optimizer's iteration counter."""

MAX_GRAPH_BYTES = 256 * 2**20
"""The largest object graph read (a model of millions of variables needs far less)."""

MAX_PATHS = 8
"""The most paths listed per object (shortest first)."""

_ALT_PATH_BUDGET = 4_000_000
"""Steps spent checking alternative paths for cycles; past it, only first paths are kept."""

_VARIABLE_VALUE = "VARIABLE_VALUE"
_ITERATION_CHILDREN = ("_iterations", "iter")
_KERAS3_NON_SLOT_LISTS = frozenset({"_variables", "_trainable_variables"})
_INDEX = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class SlotOf:
    """What an optimizer slot belongs to.

    Attributes:
        variable: the full name of the variable it is a slot of (``hidden/kernel``).
        slot: the slot's name (``m``, ``v``, ``momentum``, ``velocity``).
        optimizer: the optimizer's object path (``optimizer``).
    """

    variable: str
    slot: str
    optimizer: str


@dataclass(frozen=True)
class KeyNames:
    """Everything the object graph says about one key.

    Attributes:
        key: the checkpoint key.
        full_name: the variable's name as the model knows it (``hidden/kernel``),
            ``None`` if the graph gives none.
        object_paths: the paths that reach the object (``model/layer_with_weights-0/kernel``),
            shortest first, at most :data:`MAX_PATHS`; the first one is the key's.
        attribute: the saved attribute (``VARIABLE_VALUE`` for a variable).
        slot_of: for an optimizer slot, what it belongs to; else ``None``.
        iteration: whether this is an optimizer's iteration counter.
    """

    key: str
    full_name: str | None
    object_paths: tuple[str, ...]
    attribute: str
    slot_of: SlotOf | None = None
    iteration: bool = False


class ObjectNames(Mapping[str, KeyNames]):
    """The :class:`KeyNames` of every key the object graph names, and the user names.

    A mapping from checkpoint key to :class:`KeyNames`; keys the graph does not
    name (the graph tensor itself) are absent, and their user name is the key.
    """

    def __init__(self, names: Mapping[str, KeyNames]) -> None:
        self._names = dict(names)
        one_counter = sum(entry.iteration for entry in self._names.values()) == 1
        wanted = {key: _wanted_name(entry, one_counter) for key, entry in self._names.items()}
        counts = Counter(wanted.values())
        self._user = {
            key: name if counts[name] == 1 and (name == key or name not in self._names) else key
            for key, name in wanted.items()
        }
        self._by_user = {name: key for key, name in self._user.items()}
        full = Counter(entry.full_name for entry in self._names.values() if entry.full_name)
        self._by_full = {
            entry.full_name: key
            for key, entry in self._names.items()
            if entry.full_name and full[entry.full_name] == 1
        }

    def __getitem__(self, key: str) -> KeyNames:
        return self._names[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def user_name(self, key: str) -> str:
        """The name users know ``key`` by (see the module docstring); the key if none."""
        return self._user.get(key, key)

    def user_names(self) -> dict[str, str]:
        """Checkpoint key -> user name, for every key the graph names."""
        return dict(self._user)

    def key_of(self, name: str) -> str | None:
        """The key a user means by ``name``: a user name, a full name one key has, or a key.

        Returns:
            The checkpoint key, or ``None`` if ``name`` names none (or several).
        """
        if name in self._by_user:
            return self._by_user[name]
        if name in self._by_full:
            return self._by_full[name]
        return name if name in self._names else None


def object_names(source: Source) -> ObjectNames | None:
    """The object graph's names for ``source``'s keys; ``None`` for a name-based checkpoint.

    Raises:
        CorruptCheckpointError: if the object graph tensor is not a readable graph.
        UnsupportedInputError: if it is larger than :data:`MAX_GRAPH_BYTES`.
    """
    if OBJECT_GRAPH_KEY not in source:
        return None
    spec = source.specs()[OBJECT_GRAPH_KEY]
    if spec.dtype.name != "string" or tuple(spec.shape) != ():
        raise CorruptCheckpointError(
            source.where,
            f"{OBJECT_GRAPH_KEY} is {spec.dtype.name} {list(spec.shape)}, not a string "
            "scalar; the object graph is damaged",
        )
    value = source.read(OBJECT_GRAPH_KEY).item()
    data = value if isinstance(value, bytes) else bytes(value)
    return parse_object_graph(data, source.where, source.keys())


def template_names(spec: ModelSpec) -> ObjectNames | None:
    """The object graph names of a new model given as a checkpoint of itself (a template).

    ``None`` when the spec was not read from a checkpoint, or that checkpoint
    is name-based.
    """
    if not spec.template:
        return None
    from ckptmap.readers.source import open_source

    with open_source(spec.template) as source:
        return object_names(source)


def parse_object_graph(data: bytes, where: str, keys: Collection[str] | None = None) -> ObjectNames:
    """The names a serialized ``TrackableObjectGraph`` gives, limited to ``keys`` if given.

    Args:
        data: the bytes of the ``_CHECKPOINTABLE_OBJECT_GRAPH`` tensor.
        where: the checkpoint's listing file, for messages.
        keys: the checkpoint's keys; attributes naming other keys are left out.

    Raises:
        CorruptCheckpointError: if the bytes are no graph, or a reference points nowhere.
        UnsupportedInputError: if they are more than :data:`MAX_GRAPH_BYTES`.
    """
    if len(data) > MAX_GRAPH_BYTES:
        raise UnsupportedInputError(
            f"{where}: the object graph ({OBJECT_GRAPH_KEY}) is {len(data)} bytes, more than "
            f"the {MAX_GRAPH_BYTES} ckptmap reads"
        )
    from google.protobuf.message import DecodeError  # protobuf loads for an object graph only

    from ckptmap.proto import ckptmap_tf_pb2

    try:
        graph = ckptmap_tf_pb2.TrackableObjectGraph.FromString(data)
    except (DecodeError, RuntimeError) as e:
        raise CorruptCheckpointError(
            where,
            f"{OBJECT_GRAPH_KEY} is not a readable object graph ({e}); the checkpoint is damaged",
        ) from None
    _check_references(graph, where)
    wanted = set(keys) if keys is not None else None
    nodes = _Nodes(graph)
    paths = _object_paths(nodes)
    slots = _slots(graph, nodes, paths)
    _with_slot_paths(graph, paths)
    iterations = _iteration_nodes(nodes)
    names: dict[str, KeyNames] = {}
    for node_id, node in enumerate(graph.nodes):
        own = paths.get(node_id, ())
        for attribute in node.attributes:
            key = attribute.checkpoint_key
            if not key or (wanted is not None and key not in wanted) or key in names:
                continue
            full_name = attribute.full_name or None
            if len(node.attributes) > 1 and full_name is not None:
                full_name = f"{full_name}/{attribute.name}"
            names[key] = KeyNames(
                key=key,
                full_name=full_name,
                object_paths=own,
                attribute=attribute.name,
                slot_of=slots.get(node_id),
                iteration=node_id in iterations and attribute.name == _VARIABLE_VALUE,
            )
    return ObjectNames(names)


def _wanted_name(entry: KeyNames, one_counter: bool) -> str:
    """The user name ``entry`` asks for, before collisions are settled.

    ``global_step`` only when the checkpoint has one iteration counter.
    """
    if entry.iteration and one_counter:
        return GLOBAL_STEP
    if entry.slot_of is not None:
        return f"{entry.slot_of.variable}/{entry.slot_of.slot}"
    return entry.full_name or entry.key


def _check_references(graph: _Graph, where: str) -> None:
    count = len(graph.nodes)
    for node_id, node in enumerate(graph.nodes):
        refs = [child.node_id for child in node.children]
        for slot in node.slot_variables:
            refs += [slot.original_variable_node_id, slot.slot_variable_node_id]
        bad = next((ref for ref in refs if not 0 <= ref < count), None)
        if bad is not None:
            raise CorruptCheckpointError(
                where,
                f"{OBJECT_GRAPH_KEY}: node {node_id} refers to node {bad}, but the graph has "
                f"{count} nodes; the checkpoint is damaged",
            )


class _Step(NamedTuple):
    """One path in the breadth-first walk: the node reached, its last name, the path before."""

    node: int
    name: str
    parent: _Step | None
    depth: int


class _Nodes:
    """The graph's children lists and full names, read out of the proto once."""

    def __init__(self, graph: _Graph) -> None:
        self.children = [[(c.node_id, c.local_name) for c in n.children] for n in graph.nodes]
        self.full_names: dict[int, str] = {}
        for node_id, node in enumerate(graph.nodes):
            for attribute in node.attributes:
                if attribute.name == _VARIABLE_VALUE and attribute.full_name:
                    self.full_names[node_id] = str(attribute.full_name)
                    break
        self.optimizers = [
            node_id
            for node_id, node in enumerate(graph.nodes)
            if node.slot_variables
            or any(name in _ITERATION_CHILDREN for _, name in self.children[node_id])
        ]

    def child(self, node_id: int, name: str) -> int | None:
        return next((c for c, local in self.children[node_id] if local == name), None)

    def list_items(self, node_id: int) -> list[int] | None:
        """A list object's elements (children named ``0``, ``1``, ... in order), else ``None``."""
        children = self.children[node_id]
        if not children or any(local != str(i) for i, (_, local) in enumerate(children)):
            return None
        return [c for c, _ in children]


def _object_paths(nodes: _Nodes) -> _Paths:
    """Up to :data:`MAX_PATHS` simple paths from the root to each node, shortest first.

    Breadth first in stored child order, as TensorFlow assigns keys, so each
    node's first path is the one TensorFlow's saver found. Local names are
    escaped as in keys (``.`` -> ``..``, ``/`` -> ``.S``).
    """
    if not nodes.children:
        return _Paths({})
    found: dict[int, list[_Step]] = {}
    queue: deque[_Step | None] = deque([None])
    budget = _ALT_PATH_BUDGET
    while queue:
        step = queue.popleft()
        node = 0 if step is None else step.node
        for target, local_name in nodes.children[node]:
            have = found.setdefault(target, [])
            if target == 0 or len(have) >= MAX_PATHS:
                continue
            if have:  # an alternative path: keep it only if it has no cycle
                budget -= 1 if step is None else step.depth
                if budget < 0 or _on_path(step, target):
                    continue
            new = _Step(target, _escape(local_name), step, 1 if step is None else step.depth + 1)
            have.append(new)
            queue.append(new)
    return _Paths({node: steps for node, steps in found.items() if steps})


class _Paths(Mapping[int, tuple[str, ...]]):
    """Node -> its paths as text, made on first use (most nodes hold no key)."""

    def __init__(self, steps: dict[int, list[_Step]]) -> None:
        self._steps = steps
        self._text: dict[int, tuple[str, ...]] = {}

    def __getitem__(self, node: int) -> tuple[str, ...]:
        if node not in self._text:
            self._text[node] = tuple(_text(step) for step in self._steps[node])
        return self._text[node]

    def __iter__(self) -> Iterator[int]:
        return iter(self._steps.keys() | self._text.keys())

    def __len__(self) -> int:
        return len(self._steps.keys() | self._text.keys())

    def __contains__(self, node: object) -> bool:
        return node in self._steps or node in self._text

    def add(self, node: int, paths: tuple[str, ...]) -> None:
        self._text[node] = paths


def _on_path(step: _Step | None, node: int) -> bool:
    while step is not None:
        if step.node == node:
            return True
        step = step.parent
    return node == 0


def _text(step: _Step) -> str:
    names: list[str] = []
    at: _Step | None = step
    while at is not None:
        names.append(at.name)
        at = at.parent
    return "/".join(reversed(names))


def _escape(local_name: str) -> str:
    return local_name.replace(".", "..").replace("/", ".S")


def _with_slot_paths(graph: _Graph, paths: _Paths) -> None:
    """Add to ``paths``, for a referenced slot no child reaches, the path its key was made of.

    TensorFlow names such a slot ``<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot>``.
    """
    extra: dict[int, tuple[str, ...]] = {}
    for opt, node in enumerate(graph.nodes):
        for ref in node.slot_variables:
            variable = paths.get(ref.original_variable_node_id)
            optimizer = paths.get(opt)
            if ref.slot_variable_node_id in paths or not variable or not optimizer:
                continue
            extra[ref.slot_variable_node_id] = (
                f"{variable[0]}/.OPTIMIZER_SLOT/{optimizer[0]}/{_escape(ref.slot_name)}",
            )
    for node, texts in extra.items():
        paths.add(node, texts)


def _iteration_nodes(nodes: _Nodes) -> set[int]:
    """The iteration counters of the optimizers (their ``_iterations`` or ``iter`` child)."""
    found: set[int] = set()
    for opt in nodes.optimizers:
        for name in _ITERATION_CHILDREN:
            child = nodes.child(opt, name)
            if child is not None and child in nodes.full_names:
                found.add(child)
    return found


def _slots(graph: _Graph, nodes: _Nodes, paths: Mapping[int, tuple[str, ...]]) -> dict[int, SlotOf]:
    """Slot variable node -> :class:`SlotOf`, from references, positions and names."""
    slots: dict[int, SlotOf] = {}
    variables = {name: node_id for node_id, name in nodes.full_names.items()}
    for opt in nodes.optimizers:
        opt_path = paths.get(opt, ("",))[0]
        for ref in graph.nodes[opt].slot_variables:  # legacy and TF1 optimizers
            original = nodes.full_names.get(ref.original_variable_node_id)
            if original is not None:
                slots[ref.slot_variable_node_id] = SlotOf(original, ref.slot_name, opt_path)
        trainable_id = nodes.child(opt, "_trainable_variables")
        trainable = nodes.list_items(trainable_id) if trainable_id is not None else None
        for list_id, list_name in nodes.children[opt]:
            if list_name in _KERAS3_NON_SLOT_LISTS:
                continue
            items = nodes.list_items(list_id) or []
            for index, item in enumerate(items):
                name = nodes.full_names.get(item)
                if item in slots or name is None:
                    continue
                if trainable is not None and len(trainable) == len(items):
                    slot = _keras3_slot(nodes.full_names.get(trainable[index]), name, list_name)
                else:
                    slot = _named_slot(name, variables, item)
                if slot is not None:
                    slots[item] = SlotOf(slot[0], slot[1], opt_path)
    return slots


def _keras3_slot(original: str | None, name: str, list_name: str) -> tuple[str, str] | None:
    """Keras 3: item i of a list like ``_momentums`` is a slot of trainable variable i.

    The slot name is what follows ``<variable path with _ for />_`` in the
    slot's name (``adam/hidden_kernel_momentum`` -> ``momentum``), else the
    list's name without its leading underscore.
    """
    if original is None:
        return None
    marker = original.replace("/", "_") + "_"
    last = name.rsplit("/", 1)[-1]
    slot = last[len(marker) :] if last.startswith(marker) and len(last) > len(marker) else ""
    return original, slot or list_name.lstrip("_")


def _named_slot(name: str, variables: Mapping[str, int], item: int) -> tuple[str, str] | None:
    """tf-keras: ``<optimizer>/<slot>/<variable full name>`` (``Adam/m/hidden/kernel``),
    or ``<slot>/<variable full name>`` for slots made by ``optimizer.build()`` outside
    the optimizer's name scope (``m/hidden/kernel``).

    The part after the slot name must be the full name of another variable.
    """
    for head in (1, 2):
        parts = name.split("/", head)
        if len(parts) <= head:
            return None
        original = parts[head]
        if variables.get(original, item) != item:
            return original, parts[head - 1]
    return None
