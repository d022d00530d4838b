"""The migration: plan from indexes, then stream bytes into a new checkpoint.

``plan_remap`` reads only the old checkpoint's index and the new model's
description, and decides everything; ``execute`` writes what the plan says;
``remap`` does both. ``check`` (in :mod:`ckptmap.check`) is ``plan_remap``
plus a verdict.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap._execute import (
    Linker,
    Progress,
    SourceCrcs,
    copy_assets,
    execute_from_store,
    write_remote_tensor,
    write_tensor,
)
from ckptmap.alias import CANDIDATE_CUTOFF, AliasPlan, plan_aliases
from ckptmap.errors import (
    AliasError,
    InputError,
    MissingInputError,
    OutputError,
    OutputExistsError,
    UnresolvedError,
    UsageError,
)
from ckptmap.naming import Rule, parse_rule
from ckptmap.plan import (
    Method,
    PiecePlan,
    TensorPlan,
    plan_piece,
    source_pieces,
)
from ckptmap.readers.assets import Asset
from ckptmap.readers.tf_bundle import Checkpoint, open_checkpoint
from ckptmap.spec import ModelSpec, TensorSpec
from ckptmap.split import SliceSpec
from ckptmap.storage import is_url, location_text, open_location, split_name
from ckptmap.writers.state import write_state_file
from ckptmap.writers.tf_bundle import BundleWriter

if TYPE_CHECKING:
    from ckptmap.readers.zarr_store import ZarrCheckpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemapPlan:
    """Everything a remap will do, decided from indexes alone.

    Attributes:
        old_prefix: the old checkpoint's prefix.
        new_source: where the new model's description came from.
        tensors: one plan per key the new model restores and that has a source.
        alias: the alias plan the tensors were derived from.
        unused_old: old keys that feed nothing (dropped from the output).
        old_assets: asset files of the old checkpoint (travel with the output).
        notes: non-fatal findings worth showing the user.
        old_format: ``"tf"`` for a TensorFlow checkpoint, ``"zarr3"`` for a store
            written by ``ckptmap convert`` (its tensors are read as arrays).
        old_name: for a store, the name of the checkpoint it was converted from.
    """

    old_prefix: Path
    new_source: str
    tensors: tuple[TensorPlan, ...]
    alias: AliasPlan
    unused_old: tuple[str, ...] = ()
    old_assets: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()
    old_format: str = "tf"
    old_name: str = ""

    @property
    def output_name(self) -> str:
        """The file name a model-folder output takes: the old prefix's."""
        return self.old_name or self.old_prefix.name

    @property
    def complete(self) -> bool:
        """True when every key the new model restores has a source of the right shape."""
        return not self.alias.unresolved and not self.alias.mismatched

    def summary(self) -> dict[str, int]:
        """Counts for the closing line of a remap."""
        actions = [t.action for t in self.tensors]
        return {
            "tensors": len(self.tensors),
            "renamed": sum(t.renamed for t in self.tensors),
            "split": actions.count("split"),
            "merged": actions.count("merge"),
            "repartitioned": actions.count("repartition"),
            "pieces_copied_as_bytes": sum(
                p.method is not Method.ASSEMBLE for t in self.tensors for p in t.pieces
            ),
            "pieces_assembled": sum(
                p.method is Method.ASSEMBLE for t in self.tensors for p in t.pieces
            ),
            "bytes": sum(t.nbytes for t in self.tensors),
            "old_keys_dropped": len(self.unused_old),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "old": location_text(self.old_prefix),
            "new": self.new_source,
            "complete": self.complete,
            "summary": self.summary(),
            "tensors": [t.to_json() for t in self.tensors],
            "alias": self.alias.to_json(),
            "unused_old": list(self.unused_old),
            "assets": [str(p) for p in self.old_assets],
            "notes": list(self.notes),
        }


def load_alias_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an explicit alias map: a JSON object ``{new name: old key}``.

    The output of ``ckptmap alias`` is accepted too (its ``"aliases"`` member).

    Raises:
        MissingInputError: if the file does not exist.
        AliasError: if it is not such a JSON object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingInputError(p, "alias map not found (check the --alias-map path)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise AliasError(f"{p}: cannot read the alias map ({err})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AliasError(
            f"{p}: not JSON at line {err.lineno} column {err.colno} ({err.msg}); "
            'an alias map is a JSON object {"new name": "old key"}'
        ) from err
    if isinstance(data, dict) and isinstance(data.get("aliases"), dict):
        data = data["aliases"]
    if not isinstance(data, dict):
        raise AliasError(f'{p}: an alias map must be a JSON object {{"new name": "old key"}}')
    out: dict[str, str] = {}
    for new, old in data.items():
        if isinstance(old, dict) and isinstance(old.get("source"), str):
            old = old["source"]
        if not isinstance(old, str):
            raise AliasError(f"{p}: entry {new!r} must map to an old key (a string), not {old!r}")
        out[str(new)] = old
    return out


def _load_new_spec(new_graph: str | os.PathLike[str] | ModelSpec, saver: str | None) -> ModelSpec:
    if isinstance(new_graph, ModelSpec):
        return new_graph
    from ckptmap.readers.graph import read_model_spec

    return read_model_spec(new_graph, saver=saver)


def _old_specs(ckpt: Checkpoint | ZarrCheckpoint) -> dict[str, TensorSpec]:
    return ckpt.specs()


def plan_remap(
    old: str | os.PathLike[str] | Checkpoint,
    new_graph: str | os.PathLike[str] | ModelSpec,
    *,
    step: int | None = None,
    alias_map: str | os.PathLike[str] | Mapping[str, str] | None = None,
    rules: Sequence[str | Rule] = (),
    auto: bool = True,
    clear_nn: bool = False,
    continue_training: bool = False,
    saver: str | None = None,
    candidate_cutoff: float = CANDIDATE_CUTOFF,
) -> RemapPlan:
    """Decide every output tensor of a remap, reading indexes and graphs only.

    Args:
        old: the old checkpoint (model folder, prefix or ``.index``), or an open one.
        new_graph: the new model (graph.pbtxt, .pb, .meta, SavedModel folder, JSON
            spec, a checkpoint of the new model) or a :class:`ModelSpec`.
        step: with a model folder, the checkpoint of this global step.
        alias_map: explicit ``{new name: old key}`` map, or a JSON file of one.
        rules: ``PATTERN=FORMAT`` rules (strings or parsed :class:`Rule`).
        auto: whether to generate aliases automatically (Monolith's heuristics).
        clear_nn: do not restore the dense (NN) variables.
        continue_training: with ``clear_nn``, keep ``global_step``.
        saver: which saver of the new graph to read when it has several.
        candidate_cutoff: how similar an old key's name must be to an unresolved
            key's to be listed as its candidate (0 to 1).

    Returns:
        The plan; ``plan.complete`` tells whether every key has a source.

    Raises:
        InputError: unreadable old checkpoint or new model.
        AliasError: invalid alias map or rule.
    """
    ckpt = old if isinstance(old, Checkpoint) else _open_old(old, step)
    spec = _load_new_spec(new_graph, saver)
    explicit = (
        dict(alias_map)
        if isinstance(alias_map, Mapping)
        else (load_alias_map(alias_map) if alias_map is not None else None)
    )
    parsed_rules = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
    old_specs = _old_specs(ckpt)
    alias = plan_aliases(
        old_specs,
        spec,
        explicit=explicit,
        rules=parsed_rules,
        auto=auto,
        clear_nn=clear_nn,
        continue_training=continue_training,
        candidate_cutoff=candidate_cutoff,
    )
    tensors: list[TensorPlan] = []
    for key, match in alias.matches.items():
        new = spec.keys[key]
        src = old_specs[match.old_key]
        if new.shape != src.shape or new.dtype.enum != src.dtype.enum:
            continue  # listed in alias.mismatched
        sources = source_pieces(src.shape, src.slices)
        targets: Sequence[SliceSpec | None] = new.slices or (None,)
        pieces = tuple(plan_piece(t, new.shape, new.dtype, sources) for t in targets)
        tensors.append(
            TensorPlan(
                key=key,
                dtype=new.dtype,
                shape=new.shape,
                source=match.old_key,
                reason=match.reason,
                sliced=bool(new.slices),
                pieces=pieces,
                source_sliced=bool(src.slices),
            )
        )
    used = {t.source for t in tensors}
    unused = tuple(k for k in old_specs if k not in used)
    if isinstance(ckpt, Checkpoint):
        return RemapPlan(
            old_prefix=ckpt.prefix,
            new_source=spec.source,
            tensors=tuple(tensors),
            alias=alias,
            unused_old=unused,
            old_assets=tuple(a.path for a in ckpt.assets),
            notes=_hash_filter_notes(ckpt.assets, spec),
        )
    return RemapPlan(
        old_prefix=Path(ckpt.path),
        new_source=spec.source,
        tensors=tuple(_assembled(t) for t in tensors),
        alias=alias,
        unused_old=unused,
        old_format="zarr3",
        old_name=Path(ckpt.source).name if ckpt.source else "",
    )


def _assembled(tensor: TensorPlan) -> TensorPlan:
    """A store has no bytes to copy: every piece is read as an array and written."""
    pieces = tuple(
        PiecePlan(p.slice, p.shape, Method.ASSEMBLE, nbytes=p.nbytes) for p in tensor.pieces
    )
    return dataclasses.replace(tensor, pieces=pieces)


def _open_old(old: str | os.PathLike[str], step: int | None) -> Checkpoint | ZarrCheckpoint:
    """The old checkpoint: a TensorFlow checkpoint, or a store ``ckptmap convert`` wrote.

    The TensorFlow reading is tried first, so a URL costs no extra request; only
    where no checkpoint is found is the path tried as a zarr3 store.
    """
    try:
        return open_checkpoint(old, step=step)
    except MissingInputError:
        from ckptmap.readers.zarr_store import is_zarr_store, open_source

        if not is_zarr_store(old):
            raise
    if step is not None:
        raise UsageError(f"{old}: --step picks a checkpoint in a model folder, not in a zarr store")
    return open_source(old)


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


@dataclass(frozen=True)
class RemapResult:
    """What a remap wrote.

    Attributes:
        prefix: the output prefix.
        files: the files written (data shards, index, state file, assets).
        bytes_written: tensor bytes written into data shards.
        plan: the plan that was carried out.
    """

    prefix: Path
    files: tuple[Path, ...]
    bytes_written: int
    plan: RemapPlan
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = self.plan.to_json()
        data["output"] = {
            "prefix": location_text(self.prefix),
            "files": [location_text(f) for f in self.files],
            "bytes_written": self.bytes_written,
        }
        data["notes"] = list(self.plan.notes) + list(self.notes)
        return data


def resolve_output(out: str | os.PathLike[str], name: str) -> tuple[Path, Path | None]:
    """Turn ``--out`` into an output prefix and, for a model folder, the folder.

    An existing folder, or a path ending in a separator, becomes a model folder:
    the checkpoint is written under ``name`` (the old prefix's file name) and a
    ``checkpoint`` state file names it. Anything else is a prefix.
    """
    text = os.fspath(out)
    path = Path(text)
    if path.is_dir() or text.endswith((os.sep, "/")):
        return path / name, path
    return path, None


def _check_output(prefix: Path, old_prefix: Path) -> None:
    if prefix.resolve() == old_prefix.resolve():
        raise UsageError(
            f"{prefix}: the output prefix is the input checkpoint; choose another --out"
        )
    parent = prefix.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{parent}: exists and is not a folder; choose another --out")


def execute(
    plan: RemapPlan,
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    shards: int = 1,
    allow_missing: bool = False,
    assets: str = "link",
    link: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
) -> RemapResult:
    """Write the checkpoint a plan describes.

    Data shards are written under temporary names, fsynced, and renamed into
    place; the index comes last, then assets, then (for a model folder) the
    ``checkpoint`` state file. A failure at any point leaves no partial
    checkpoint under the output prefix and the old state file as it was.

    Args:
        plan: from :func:`plan_remap`.
        out: the output prefix, or a folder to become a model folder.
        force: replace an existing checkpoint at the output prefix.
        shards: number of data shards to write.
        allow_missing: write even when some keys have no source (a plain Saver
            restoring the result will miss them; the plan lists which).
        assets: ``link`` (hard links, copies where links fail), ``copy`` or ``skip``.
        link: reuse the old data shards instead of copying them: each old shard
            that holds a piece stored unchanged (or one contiguous run of an old
            piece, as in a first-axis split) is hard-linked into the output and
            the new index points into it; only other pieces are written. Falls
            back to copying the shard where a link is impossible (noted in the
            result). Old checkpoint files are never modified either way.
        verify: check the stored CRC32C of every old entry whose bytes are
            transformed: the entries that ``ranges`` pieces are cut from (each
            read once; the check comes from combining the CRCs of the runs) and
            those read to ``assemble`` a piece. A mismatch raises
            :class:`CorruptCheckpointError` and nothing is published. Pieces
            copied unchanged (``copy``, and ``--link`` references) are never
            read, either way: their bytes keep their stored CRC, so a corrupt
            source stays detectable in the output by TensorFlow's restore and
            ``ckptmap inspect --verify``; nothing is masked. ``False`` skips
            the checks (the new CRCs of cut pieces are still computed from
            the bytes read).
        progress: called with a byte count after each stored piece.

    Raises:
        UnresolvedError: the plan is incomplete and ``allow_missing`` is false.
        UsageError: the output is the input.
        OutputExistsError: the output exists and ``force`` is false.
        OutputError: the output cannot be written.
        InputError: the old checkpoint is unreadable or corrupt.
    """
    if not plan.complete and not allow_missing:
        missing = [u.new_key for u in plan.alias.unresolved] + [
            m.new_key for m in plan.alias.mismatched
        ]
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise UnresolvedError(
            f"{len(missing)} key(s) of the new model have no fitting source ({shown}); "
            "add --rule or --alias-map entries (see `ckptmap check`), or pass --allow-missing",
            report=plan,
        )
    remote_old = is_url(plan.old_prefix)
    if link and (remote_old or is_url(out)):
        raise UsageError("--link needs a local old checkpoint and a local --out (drop --link)")
    if is_url(out):
        return _execute_to_url(
            plan,
            location_text(out),
            force=force,
            shards=shards,
            assets=assets,
            verify=verify,
            progress=progress,
        )
    prefix, model_dir = resolve_output(out, plan.output_name)
    _check_output(prefix, plan.old_prefix)
    if plan.old_format == "zarr3":
        if link:
            raise UsageError("--link reuses TensorFlow data files; a zarr store has none")
        with BundleWriter(prefix, num_shards=shards, force=force) as w:
            bytes_written = execute_from_store(plan, w, progress)
            committed = w.commit()
        files = [*committed.data_paths, committed.index_path]
        if model_dir is not None:
            files.append(write_state_file(model_dir, committed.prefix))
        return RemapResult(committed.prefix, tuple(files), bytes_written, plan)
    bytes_written = 0
    with open_checkpoint(plan.old_prefix) as ckpt:
        crcs = SourceCrcs(ckpt, verify)
        try:
            with BundleWriter(
                prefix, num_shards=shards, force=force, byte_order=ckpt.byte_order
            ) as w:
                linker = Linker(w, ckpt) if link else None
                for tensor in plan.tensors:
                    if remote_old:
                        bytes_written += write_remote_tensor(w, ckpt, tensor, progress, verify)
                        continue
                    bytes_written += write_tensor(w, ckpt, tensor, crcs, progress, linker, verify)
                crcs.close()
                committed = w.commit()
        finally:
            crcs.close()
    files = [*committed.data_paths, committed.index_path]
    asset_files, notes = copy_assets(
        plan.old_prefix, plan.old_assets, committed.prefix, assets, force
    )
    if linker is not None and linker.copied:
        notes.insert(0, "--link: some old shards are on another filesystem and were copied")
    files += asset_files
    if model_dir is not None:
        files.append(write_state_file(model_dir, committed.prefix))
    return RemapResult(
        prefix=committed.prefix,
        files=tuple(files),
        bytes_written=bytes_written,
        plan=plan,
        notes=tuple(notes),
    )


def _execute_to_url(
    plan: RemapPlan,
    out: str,
    *,
    force: bool,
    shards: int,
    assets: str,
    verify: bool,
    progress: Progress | None,
) -> RemapResult:
    """Write the checkpoint into a local staging folder, then upload it in commit order.

    Stores have no rename, so the ``.index`` is the commit point: the data
    shards go first under their final names, then the assets, then the index,
    then (for a folder URL ending in ``/``) the ``checkpoint`` state file. An
    existing index is refused without ``force``, and deleted first with it.
    A failed upload deletes what it wrote (docs/remote.md).
    """
    import tempfile

    from ckptmap.storage import upload_files

    folder, name = split_name(out)
    try:
        location = open_location(folder)
    except (InputError, UsageError) as err:
        raise OutputError(f"--out {err}") from None
    model_dir = not name
    prefix_name = name or plan.output_name
    index_name = prefix_name + ".index"
    if location.exists(index_name) and not force:
        raise OutputExistsError(
            location.where(index_name), "a checkpoint exists here; pass --force to replace it"
        )
    with tempfile.TemporaryDirectory(prefix="ckptmap-stage-") as stage:
        staged_out = f"{stage}{os.sep}" if model_dir else os.path.join(stage, prefix_name)
        staged = execute(
            plan,
            staged_out,
            shards=shards,
            allow_missing=True,  # checked by the caller
            assets="copy" if assets == "link" else assets,
            verify=verify,
            progress=progress,
        )
        root = Path(stage)
        names = {f: f.relative_to(root).as_posix() for f in staged.files}
        index = [f for f in staged.files if names[f] == index_name]
        state = [f for f in staged.files if names[f] == "checkpoint"]
        data = [f for f in staged.files if ".data-" in names[f] and f not in index]
        rest = [f for f in staged.files if f not in (*index, *state, *data)]
        ordered = [(names[f], f) for f in (*data, *rest, *index, *state)]
        written = upload_files(location, ordered, delete_first=[index_name] if force else [])
    return RemapResult(
        prefix=Path(location.where(prefix_name)),
        files=tuple(Path(location.where(n)) for n in written),
        bytes_written=staged.bytes_written,
        plan=plan,
        notes=staged.notes,
    )


def remap(
    old: str | os.PathLike[str],
    new_graph: str | os.PathLike[str] | ModelSpec,
    out: str | os.PathLike[str],
    *,
    step: int | None = None,
    alias_map: str | os.PathLike[str] | Mapping[str, str] | None = None,
    rules: Sequence[str | Rule] = (),
    auto: bool = True,
    clear_nn: bool = False,
    continue_training: bool = False,
    saver: str | None = None,
    candidate_cutoff: float = CANDIDATE_CUTOFF,
    force: bool = False,
    shards: int = 1,
    allow_missing: bool = False,
    assets: str = "link",
    link: bool = False,
    progress: Progress | None = None,
) -> RemapResult:
    """Plan and write a migrated checkpoint in one call.

    See :func:`plan_remap` and :func:`execute` for the arguments.

    Example:
        >>> result = remap("old_model/", "new/graph.pbtxt", "new_model/",
        ...                rules=["^model_v2/(.*)$=model/{}"])  # doctest: +SKIP
    """
    plan = plan_remap(
        old,
        new_graph,
        step=step,
        alias_map=alias_map,
        rules=rules,
        auto=auto,
        clear_nn=clear_nn,
        continue_training=continue_training,
        saver=saver,
        candidate_cutoff=candidate_cutoff,
    )
    return execute(
        plan,
        out,
        force=force,
        shards=shards,
        allow_missing=allow_missing,
        assets=assets,
        link=link,
        progress=progress,
    )
