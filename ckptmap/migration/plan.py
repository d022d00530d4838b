"""The remap plan: every output key, its source, its pieces and the verdict, from indexes only.

:func:`plan_remap` reads the old checkpoint's index (never tensor data) and the
new model's description, runs the alias engine, plans every output key's
pieces (:mod:`ckptmap.migration.pieces`) and decides the one verdict
(:mod:`ckptmap.migration.verdict`). ``check`` and ``remap --dry-run`` stop
here; :func:`ckptmap.migration.execute.execute` carries the plan out.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap.alias import AliasPlan, Unresolved
from ckptmap.alias_names import plan_aliases_by_name
from ckptmap.errors import CorruptCheckpointError, UsageError
from ckptmap.migration.inputs import PlanInputs
from ckptmap.migration.object_based import (
    ObjectGraphCopy,
    missing_allowed,
    split_object_graph,
    without_old_object_graph,
)
from ckptmap.migration.pieces import Method, TensorPlan, plan_tensor
from ckptmap.migration.transforms import apply_transposes, plan_transposed
from ckptmap.migration.verdict import Verdict, decide
from ckptmap.spec import ModelSpec
from ckptmap.split import PartitionError, SliceSpecError
from ckptmap.storage import location_text

if TYPE_CHECKING:
    from ckptmap.readers.assets import Asset
    from ckptmap.readers.source import Source

FILLED = "filled"
"""The reason of a key that takes its value from the ``fill_from`` checkpoint."""


@dataclass(frozen=True)
class RemapPlan:
    """Everything a remap will do, decided from indexes alone.

    Attributes:
        old_prefix: the old checkpoint's prefix (or the store's location).
        new_source: where the new model's description came from.
        tensors: one plan per key the new model restores and that has a source.
        alias: the alias plan the tensors were derived from.
        verdict: the one verdict (ok, partial, unresolved, mismatched).
        unused_old: old keys that feed nothing (dropped from the output).
        old_assets: asset files of the old checkpoint (travel with the output).
        notes: non-fatal findings worth showing the user.
        old_name: the file name an output model folder gives the checkpoint
            (the old prefix's; for a converted store, its original checkpoint's).
        copies_bytes: whether the old source stores raw tensor bytes that can be
            copied as they are (a TensorFlow checkpoint); otherwise every piece
            is read as an array.
        filled: one plan per key with no old source that takes its value from
            the same key of :attr:`fill_from` (reason ``filled``).
        fill_from: the checkpoint of the new model keys are filled from, if any.
        object_graph: when the new model is an object-based template, its
            object graph, copied into the output as it is
            (:mod:`ckptmap.migration.object_based`).
    """

    old_prefix: Path
    new_source: str
    tensors: tuple[TensorPlan, ...]
    alias: AliasPlan
    verdict: Verdict
    unused_old: tuple[str, ...] = ()
    old_assets: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()
    old_name: str = ""
    copies_bytes: bool = True
    filled: tuple[TensorPlan, ...] = ()
    fill_from: Path | None = None
    object_graph: ObjectGraphCopy | None = None

    @property
    def output_name(self) -> str:
        """The file name a model-folder output takes."""
        return self.old_name or self.old_prefix.name

    @property
    def complete(self) -> bool:
        """True when every key the new model restores has a source of the right shape."""
        return self.verdict is Verdict.OK

    @property
    def accepted(self) -> bool:
        """True when the plan may be written (:attr:`Verdict.accepted`)."""
        return self.verdict.accepted

    @property
    def filled_keys(self) -> frozenset[str]:
        """The keys filled from :attr:`fill_from`."""
        return frozenset(t.key for t in self.filled)

    @property
    def unfilled(self) -> list[Unresolved]:
        """The keys with no source at all (not filled either), in key order."""
        filled = self.filled_keys
        return [u for u in self.alias.unresolved if u.new_key not in filled]

    @property
    def missing(self) -> tuple[str, ...]:
        """Keys the new model restores that have no fitting source, in key order."""
        return tuple(
            sorted([u.new_key for u in self.unfilled] + [m.new_key for m in self.alias.mismatched])
        )

    def summary(self) -> dict[str, int]:
        """Counts for the closing line of a remap."""
        actions: dict[str, int] = {}
        renamed = pieces = assembled = nbytes = 0
        for t in self.tensors:  # one pass over the tensors (was five)
            action = t.action
            actions[action] = actions.get(action, 0) + 1
            renamed += t.renamed
            for p in t.pieces:
                pieces += 1
                assembled += p.method is Method.ASSEMBLE
                nbytes += p.nbytes
        return {
            "tensors": len(self.tensors),
            "renamed": renamed,
            "split": actions.get("split", 0),
            "merged": actions.get("merge", 0),
            "repartitioned": actions.get("repartition", 0),
            "transposed": actions.get("transpose", 0),
            "pieces_copied_as_bytes": pieces - assembled,
            "pieces_assembled": assembled,
            "bytes": nbytes + sum(t.nbytes for t in self.filled),
            "old_keys_dropped": len(self.unused_old),
            "missing": len(self.unfilled),
            "filled": len(self.filled),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "old": location_text(self.old_prefix),
            "new": self.new_source,
            "verdict": self.verdict.value,
            "complete": self.complete,
            "summary": self.summary(),
            "tensors": [t.to_json() for t in self.tensors],
            "alias": self.alias.to_json(),
            "unused_old": list(self.unused_old),
            "assets": [str(p) for p in self.old_assets],
            "notes": list(self.notes),
            "fill_from": location_text(self.fill_from) if self.fill_from is not None else None,
            "object_graph": self.object_graph.to_json() if self.object_graph else None,
            "filled": [t.to_json() for t in self.filled],
        }


def load_new_spec(new_graph: str | os.PathLike[str] | ModelSpec, saver: str | None) -> ModelSpec:
    """The new model's description, read from its file unless already given."""
    if isinstance(new_graph, ModelSpec):
        return new_graph
    from ckptmap.readers.graph import read_model_spec

    return read_model_spec(new_graph, saver=saver)


def plan_from(inputs: PlanInputs) -> RemapPlan:
    """Decide every output tensor of a remap, reading indexes and graphs only.

    Args:
        inputs: what to plan from (see :class:`PlanInputs`).

    Returns:
        The plan; ``plan.verdict`` is the one verdict.

    Raises:
        InputError: unreadable old checkpoint or new model; an old key whose
            slices do not tile it (a gap or an overlap) is a corrupt input.
        AliasError: invalid alias map or rule.
    """
    from ckptmap.readers.object_graph import object_names, template_names
    from ckptmap.readers.source import Source as SourceProtocol
    from ckptmap.readers.source import can_copy_bytes, open_source

    old = inputs.old
    source: Source = old if isinstance(old, SourceProtocol) else open_source(old, step=inputs.step)
    spec, object_graph = split_object_graph(load_new_spec(inputs.new_graph, inputs.saver))
    old_specs = without_old_object_graph(source.specs(), spec)
    alias = plan_aliases_by_name(
        old_specs,
        spec,
        old_names=object_names(source),
        new_names=template_names(spec),
        explicit=inputs.explicit_map(),
        rules=inputs.parsed_rules(),
        auto=inputs.auto,
        clear_nn=inputs.clear_nn,
        continue_training=inputs.continue_training,
        candidate_cutoff=inputs.candidate_cutoff,
        map_file=inputs.alias_map_file,
    )
    alias, transposed = apply_transposes(alias, inputs.transposes(), old_specs, spec)
    tensors: list[TensorPlan] = []
    for key, match in alias.matches.items():
        new = spec.keys[key]
        src = old_specs[match.old_key]
        perm = transposed.get(key)
        if perm is not None:
            args = (key, match.old_key, match.reason, new.dtype, new.shape, new.slices, perm)
            tensors.append(plan_transposed(*args))
            continue
        if not new.accepts(src):
            continue  # listed in alias.mismatched
        shape = src.shape if new.dynamic else new.shape  # a table's data: as they are
        try:
            tensors.append(
                plan_tensor(
                    key, match.old_key, match.reason, new.dtype, shape, new.slices, src.slices
                )
            )
        except (PartitionError, SliceSpecError) as err:
            raise CorruptCheckpointError(
                source.where, f"tensor {match.old_key!r}: {err} (the old checkpoint is corrupt)"
            ) from None
    copies = can_copy_bytes(source)
    if not copies:  # no raw bytes to copy: every piece is read as an array
        tensors = [_as_arrays(t) for t in tensors]
    filled: tuple[TensorPlan, ...] = ()
    fill_at: Path | None = None
    if inputs.fill_from is not None and alias.unresolved:
        filled, fill_at, alias = _plan_fills(inputs.fill_from, alias, spec, source)
    used = {t.source for t in tensors}
    assets = tuple(source.assets)
    allow_missing, graph_notes = missing_allowed(object_graph, alias, inputs.allow_missing, filled)
    return RemapPlan(
        old_prefix=Path(source.url),
        new_source=spec.source,
        tensors=tuple(tensors),
        alias=alias,
        verdict=decide(alias, allow_missing=allow_missing, filled={t.key for t in filled}),
        unused_old=tuple(k for k in old_specs if k not in used),
        old_assets=tuple(a.path for a in assets),
        notes=(*source.notes, *_hash_filter_notes(assets, spec), *graph_notes),
        old_name=source.name,
        copies_bytes=copies,
        filled=filled,
        fill_from=fill_at,
        object_graph=object_graph,
    )


def _plan_fills(
    fill_from: Any, alias: AliasPlan, spec: ModelSpec, old: Source
) -> tuple[tuple[TensorPlan, ...], Path, AliasPlan]:
    """Plan every key with no old source from the same key of a checkpoint of the new model.

    Returns the filled keys' plans, where they come from, and the alias plan
    with a note on each key the template lacks too.

    Raises:
        UsageError: a key of the template has another dtype or shape than the
            new model's (it is no checkpoint of the new model).
        InputError: the template is unreadable or corrupt.
    """
    from contextlib import nullcontext

    from ckptmap.readers.source import Source as SourceProtocol
    from ckptmap.readers.source import can_copy_bytes, open_source

    given = isinstance(fill_from, SourceProtocol)
    with nullcontext(fill_from) if given else open_source(fill_from) as template:
        specs = template.specs()
        plans: list[TensorPlan] = []
        lacking: set[str] = set()
        for u in alias.unresolved:
            have = specs.get(u.new_key)
            if have is None:
                lacking.add(u.new_key)
                continue
            new = spec.keys[u.new_key]
            if have.shape != new.shape or have.dtype.enum != new.dtype.enum:
                raise UsageError(
                    f"{template.where}: --fill-from key {u.new_key!r} is {have.dtype.name}"
                    f" {list(have.shape)} but the new model restores {new.dtype.name}"
                    f" {list(new.shape)}; fill from a checkpoint of the new model"
                )
            try:
                plans.append(
                    plan_tensor(
                        u.new_key, u.new_key, FILLED, new.dtype, new.shape, new.slices, have.slices
                    )
                )
            except (PartitionError, SliceSpecError) as err:
                raise CorruptCheckpointError(
                    template.where, f"tensor {u.new_key!r}: {err} (the checkpoint is corrupt)"
                ) from None
        if not can_copy_bytes(template) or template.byte_order != old.byte_order:
            plans = [_as_arrays(t) for t in plans]  # decoded, re-encoded in the output's order
        where = Path(template.url)
    if lacking:
        unresolved = [
            dataclasses.replace(u, note=f"{u.note}; not in the --fill-from checkpoint either")
            if u.new_key in lacking
            else u
            for u in alias.unresolved
        ]
        alias = dataclasses.replace(alias, unresolved=unresolved)
    return tuple(plans), where, alias


def _as_arrays(tensor: TensorPlan) -> TensorPlan:
    pieces = tuple(dataclasses.replace(p, method=Method.ASSEMBLE, runs=()) for p in tensor.pieces)
    return dataclasses.replace(tensor, pieces=pieces)


def _hash_filter_notes(assets: Sequence[Asset], spec: ModelSpec) -> tuple[str, ...]:
    """A warning when Monolith's per-parameter-server hash filters do not fit the new model.

    Each ``hash_filter_<i>`` belongs to parameter server ``i``; the new model's
    parameter-server count is the number of devices its sharded Saver saves
    from (``ModelSpec.save_shards``, unknown for JSON specs).
    """
    servers = {a.ps_index for a in assets if a.kind == "hash_filter" and a.ps_index is not None}
    if not servers or spec.save_shards <= 0 or len(servers) == spec.save_shards:
        return ()
    return (
        f"the old checkpoint has hash filters for {len(servers)} parameter servers but the "
        f"new model saves from {spec.save_shards} device(s); the filters are copied as they "
        "are, so re-shard them for the new layout if its hash tables moved",
    )
