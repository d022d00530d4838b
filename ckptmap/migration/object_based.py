"""Object-based outputs: writing a checkpoint shaped like a TF2 template of the new model.

A TF2 model (``tf.train.Checkpoint``, Keras) restores by its object graph:
the ``_CHECKPOINTABLE_OBJECT_GRAPH`` string tensor names, for every variable
of the model and its optimizer, the checkpoint key to read
(tf-checkpoint-format.md §10.3). When the new model is given as an
object-based checkpoint of itself (a *template*, saved once right after
building the model and its optimizer), the output is that template's
checkpoint with the old values:

- the output keys are exactly the template's keys (the new model's spec is
  read from its index, as for any checkpoint of the new model);
- each key's value comes from the old checkpoint, matched by the alias engine
  (names users know, structure, the user's map and rules);
- the object graph tensor is the template's, copied byte for byte: the keys it
  names are the keys written, so the new model's own restore finds them all;
- keys with no old source follow the verdict: ``--fill-from`` the template
  gives them the template's values; ``--allow-missing`` does not apply
  (:func:`missing_allowed`), because the object graph would name keys the
  output lacks and TensorFlow's restore fails on those.

:func:`split_object_graph` takes the object graph key out of the new model's
spec before the alias engine runs (it is never taken from the old checkpoint)
and plans copying it from the template; :func:`write_object_graph` writes it.
:func:`without_old_object_graph` leaves the old checkpoint's object graph key
out of what is migrated when the new model does not restore that key (a
template, a TF1 graph): it is metadata about the old object structure, not a
variable, so it is neither a source nor an "unused" old key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap.errors import CorruptCheckpointError
from ckptmap.formats.object_graph import OBJECT_GRAPH_KEY
from ckptmap.migration.pieces import Method, TensorPlan, plan_tensor
from ckptmap.storage import location_text

if TYPE_CHECKING:
    from ckptmap.alias import AliasPlan
    from ckptmap.migration.write import Progress
    from ckptmap.spec import ModelSpec, TensorSpec
    from ckptmap.writers.tf_bundle import BundleWriter

TEMPLATE = "template"
"""The reason of the object graph key: copied from the template of the new model."""


@dataclass(frozen=True)
class ObjectGraphCopy:
    """The template's object graph, to be copied into the output as it is.

    Attributes:
        template: the template's prefix (or URL).
        tensor: the plan of the ``_CHECKPOINTABLE_OBJECT_GRAPH`` key, read
            from the template (its source key is the same key).
    """

    template: Path
    tensor: TensorPlan

    def to_json(self) -> dict[str, Any]:
        return {"key": self.tensor.key, "from": location_text(self.template)}


def split_object_graph(spec: ModelSpec) -> tuple[ModelSpec, ObjectGraphCopy | None]:
    """The new model's spec without its object graph key, and the plan to copy that key.

    Only a template (a checkpoint of the new model, :attr:`ModelSpec.template`)
    has object graph bytes to copy; any other spec is returned unchanged with
    ``None``.
    """
    graph = spec.keys.get(OBJECT_GRAPH_KEY)
    if graph is None or not spec.template:
        return spec, None
    tensor = plan_tensor(
        OBJECT_GRAPH_KEY, OBJECT_GRAPH_KEY, TEMPLATE, graph.dtype, graph.shape, (), ()
    )
    keys = {k: v for k, v in spec.keys.items() if k != OBJECT_GRAPH_KEY}
    return dataclasses.replace(spec, keys=keys), ObjectGraphCopy(Path(spec.template), tensor)


def without_old_object_graph(
    old: Mapping[str, TensorSpec], new: ModelSpec
) -> Mapping[str, TensorSpec]:
    """The old keys to migrate from: ``old`` without its object graph key, unless ``new``
    restores that key itself (a JSON spec or SavedModel listing it)."""
    if OBJECT_GRAPH_KEY not in old or OBJECT_GRAPH_KEY in new.keys:
        return old
    return {k: v for k, v in old.items() if k != OBJECT_GRAPH_KEY}


def missing_allowed(
    graph: ObjectGraphCopy | None,
    alias: AliasPlan,
    allow_missing: bool,
    filled: Sequence[TensorPlan],
) -> tuple[bool, tuple[str, ...]]:
    """Whether keys with no source may be left out, and a note when they may not.

    An object-based output may not lack keys: its object graph (the
    template's, as it is) names every key of the template, and TensorFlow's
    restore fails on a named key the checkpoint does not have. So
    ``allow_missing`` does not apply to it; the note says what does.
    """
    if graph is None or not allow_missing:
        return allow_missing, ()
    done = {t.key for t in filled}
    missing = [u.new_key for u in alias.unresolved if u.new_key not in done]
    if not missing:
        return allow_missing, ()
    note = f"{len(missing)} key(s) with no source: {missing_hint(graph)}"
    return False, (note,)


def missing_hint(graph: ObjectGraphCopy) -> str:
    """What to do about keys of an object-based new model that have no source."""
    return (
        "--allow-missing does not apply to an object-based new model (its object graph "
        "names every key, and TensorFlow could not restore a checkpoint without them); add "
        "--rule or --alias-map entries (see `ckptmap check`), or give them the template's "
        f"values with --fill-from {location_text(graph.template)}"
    )


def write_object_graph(
    writer: BundleWriter,
    graph: ObjectGraphCopy,
    *,
    byte_order: str,
    verify: bool,
    progress: Progress | None,
) -> int:
    """Copy the template's object graph into ``writer``; return the bytes written.

    The bytes are copied as they are (their CRC checked when ``verify``); a
    template of another byte order, or one with no raw bytes, is decoded and
    re-encoded (the string's length checksum depends on the byte order).

    Raises:
        CorruptCheckpointError: the template changed since planning, or is corrupt.
        InputError: the template is unreadable.
    """
    from ckptmap.migration.write import piece_bytes_for, write_tensor
    from ckptmap.readers.source import can_copy_bytes, open_source

    with open_source(location_text(graph.template)) as template:
        stored = template.specs().get(OBJECT_GRAPH_KEY)
        planned = graph.tensor
        if stored is None or stored.dtype.enum != planned.dtype.enum or stored.slices:
            raise CorruptCheckpointError(
                template.where,
                f"{OBJECT_GRAPH_KEY!r} is gone or changed since planning (plan again)",
            )
        tensor = planned
        if not can_copy_bytes(template) or template.byte_order != byte_order:
            pieces = tuple(
                dataclasses.replace(p, method=Method.ASSEMBLE, runs=()) for p in planned.pieces
            )
            tensor = dataclasses.replace(planned, pieces=pieces)
        source = piece_bytes_for(template, verify=verify, linker=None)
        try:
            return write_tensor(writer, source, tensor, progress)
        finally:
            source.close()
