"""What is in a checkpoint: the library behind ``ckptmap inspect``.

:func:`inspect_checkpoint` lists every tensor (name, dtype, shape, stored
bytes, shard, slices), the data files and the assets of one checkpoint, and
optionally value statistics and a CRC check of every byte. The result is a
frozen :class:`InspectReport`; :meth:`InspectReport.to_json` gives the
documented JSON form (docs/json-schema.md).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap._fast_new import fast_constructor
from ckptmap.errors import InputError, MissingInputError, UsageError
from ckptmap.formats.object_graph import OBJECT_GRAPH_KEY
from ckptmap.readers.assets import Asset
from ckptmap.readers.graph_files import graph_with_tables
from ckptmap.readers.source import Source, can_copy_bytes, open_source
from ckptmap.storage import STAGING_PREFIX, IoCounter, is_url, location_text, measure_io

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.readers.object_graph import KeyNames, ObjectNames
    from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry
    from ckptmap.spec import TensorSpec
    from ckptmap.value_stats import TensorStats


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One data file of the checkpoint.

    Attributes:
        path: the file (for a checkpoint at a URL, the URL as a path;
            :func:`ckptmap.storage.location_text` gives the URL back).
        size: its size in bytes; ``None`` at a URL, where it is not fetched,
            and for a missing file.
        missing: the local file does not exist (the listing comes from the
            index alone; the values stored in it cannot be read).
    """

    path: Path
    size: int | None
    missing: bool = False


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor of the checkpoint.

    Attributes:
        name: its key.
        dtype: its dtype's name (``float32``, ``bfloat16``, ``qint8``, ``string``).
        shape: its full shape.
        nbytes: the bytes it takes in the data files (all slices together).
        shard: the data file holding it; ``None`` for a partitioned tensor.
        slices: the stored slices of a partitioned tensor, as TensorFlow
            slice specs (``"10 4 0,4:0,4"``), in stored order.
        slice_shards: the data file of each slice, parallel to ``slices``.
        stats: its value statistics, when asked for (``None`` for strings and
            complex numbers, or when not asked for).
        restored_into: what the checkpoint's own graph (its ``.meta``, or its
            SavedModel's ``saved_model.pb``) restores it into when that is not
            a variable (``lookup table 'word_ids' (MutableHashTableV2)``); else ``None``.
        names: for a TF2 object-based checkpoint, what its object graph says
            of the key (full name, object paths, slot); else ``None``.
        user_name: the name users know it by (``hidden/kernel``,
            ``hidden/kernel/m``, ``global_step``; see
            :mod:`ckptmap.readers.object_graph`); ``None`` for a name-based checkpoint.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    shard: int | None
    slices: tuple[str, ...] = ()
    slice_shards: tuple[int, ...] = ()
    stats: TensorStats | None = None
    restored_into: str | None = None
    names: KeyNames | None = None
    user_name: str | None = None


_make_info = fast_constructor(TensorInfo)  # the same infos, built faster


@dataclass(frozen=True, slots=True)
class InspectReport:
    """Everything :func:`inspect_checkpoint` found.

    Attributes:
        prefix: the checkpoint prefix.
        index: its ``.index`` file.
        num_shards: the number of data files.
        shards: the data files, by shard number.
        byte_order: ``"<"`` (little-endian) or ``">"``.
        tensors: the tensors listed (all, or those the filter kept), in key order.
        assets: the non-tensor files of the checkpoint.
        with_stats: whether statistics were computed.
        verified: whether every CRC was checked (and matched).
        values: the values of the tensor asked for with ``tensor=``, else ``None``.
        url: the prefix as the user would write it (a local path or a URL).
        io: the bytes and requests that went to a remote store (zero for local files).
        format: ``"tf"`` for a TensorFlow checkpoint, ``"zarr3"`` for a store
            written by ``ckptmap convert``.
        notes: how the checkpoint was found, worth telling the user (a moved
            folder's state file resolved to the checkpoint here).
        graph: the checkpoint's own graph that said which tensors it restores
            into something other than a variable (``restored_into``), if any.
    """

    prefix: Path
    index: Path
    num_shards: int
    shards: tuple[ShardInfo, ...]
    byte_order: str
    tensors: tuple[TensorInfo, ...]
    assets: tuple[Asset, ...]
    with_stats: bool = False
    verified: bool = False
    values: np.ndarray | None = field(default=None, compare=False)
    url: str = ""
    io: IoCounter = field(default_factory=IoCounter, compare=False)
    format: str = "tf"
    notes: tuple[str, ...] = ()
    graph: Path | None = None

    @property
    def total_bytes(self) -> int:
        """The stored bytes of the tensors listed."""
        return sum([t.nbytes for t in self.tensors])

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data (schema in docs/json-schema.md)."""
        return self._json([self._tensor_json(t) for t in self.tensors])

    def to_json_text(self) -> str:
        """``json.dumps(self.to_json())``, the same text, made faster for big listings.

        A tensor with no statistics, names or restore note is one row
        formatted directly: its name (escaped by :mod:`json`'s own escaper)
        before the rest of the row, which is made once per distinct dtype,
        shape, size, shard and slices; every other value goes through
        :func:`json.dumps`.
        """
        import json
        from json.encoder import encode_basestring_ascii as quoted

        tails: dict[tuple[str, tuple[int, ...], int, int | None, tuple[str, ...]], str] = {}
        rows: list[str] = []
        add = rows.append
        with_stats = self.with_stats
        for t in self.tensors:
            if t.restored_into is not None or t.user_name is not None or with_stats:
                add(json.dumps(self._tensor_json(t)))
                continue
            kind = (t.dtype, t.shape, t.nbytes, t.shard, t.slices)
            tail = tails.get(kind)
            if tail is None:
                shard = "null" if t.shard is None else str(t.shard)
                # json.dumps of a list of ints, and of strings: items joined by ", "
                shape = f"[{', '.join(map(str, t.shape))}]"
                slices = f"[{', '.join(map(quoted, t.slices))}]"
                tail = tails[kind] = (
                    f'"dtype": {quoted(t.dtype)}, "shape": {shape}, '
                    f'"nbytes": {t.nbytes}, "shard": {shard}, "slices": {slices}}}'
                )
            add(f'{{"name": {quoted(t.name)}, {tail}')
        tensors = f"[{', '.join(rows)}]"
        parts = [
            f"{quoted(k)}: {tensors if k == 'tensors' else json.dumps(v)}"
            for k, v in self._json(None).items()
        ]
        return f"{{{', '.join(parts)}}}"

    def _tensor_json(self, t: TensorInfo) -> dict[str, Any]:
        item: dict[str, Any] = {
            "name": t.name,
            "dtype": t.dtype,
            "shape": list(t.shape),
            "nbytes": t.nbytes,
            "shard": t.shard,
            "slices": list(t.slices),
        }
        if self.with_stats:
            item["stats"] = None if t.stats is None else t.stats.to_json()
        if t.restored_into is not None:
            item["restored_into"] = t.restored_into
        if t.user_name is not None:
            item |= _names_json(t.user_name, t.names)
        return item

    def _json(self, tensors: list[dict[str, Any]] | None) -> dict[str, Any]:
        """:meth:`to_json` with ``tensors`` as its tensor list."""
        return {
            "checkpoint": {
                "prefix": self.url or str(self.prefix),
                "index": location_text(self.index),
                "num_shards": self.num_shards,
                "shards": [
                    {"path": location_text(s.path), "size": s.size}
                    | ({"missing": True} if s.missing else {})
                    for s in self.shards
                ],
                "byte_order": self.byte_order,
                "format": self.format,
            },
            "tensors": tensors,
            "totals": {"tensors": len(self.tensors), "bytes": self.total_bytes},
            "assets": [
                {
                    "path": location_text(a.path),
                    "name": a.name,
                    "size": a.size,
                    "kind": a.kind,
                    "ps_index": a.ps_index,
                    "legacy": a.legacy,
                }
                for a in self.assets
            ],
            "io": self.io.to_json(),
        }


def inspect_checkpoint(
    path: str | os.PathLike[str],
    *,
    step: int | None = None,
    stats: bool = False,
    verify: bool = False,
    filter: str | None = None,
    tensor: str | None = None,
) -> InspectReport:
    """Describe the checkpoint at ``path``.

    Listing reads the index only (and the sizes of local data files, to check
    that every tensor's bytes are there); ``stats`` and ``verify`` read data.
    At a URL, listing fetches the state file (for a folder) and the index and
    nothing else; ``report.io`` counts the remote bytes and requests.

    Args:
        path: a model folder, a checkpoint prefix, or its ``.index`` file; a
            local path or a URL (see :mod:`ckptmap.storage`).
        step: with a folder, the checkpoint of this global step.
        stats: compute min, max, mean, std and NaN/Inf counts of every tensor listed.
        verify: check the CRC32C of every tensor in the checkpoint first.
        filter: a regular expression; list only the tensors whose key, or
            name users know it by (a TF2 object-based checkpoint's full names,
            :mod:`ckptmap.readers.object_graph`), it matches (``re.search``).
        tensor: list only this tensor (a key, or such a name) and return its
            values in ``values``.

    Returns:
        The report.

    Raises:
        MissingInputError: if the checkpoint, or one of its data files, is missing.
        CorruptCheckpointError: if anything read is damaged (with ``verify``,
            naming the first tensor whose CRC does not match).
        UnsupportedInputError: if the checkpoint uses something ckptmap cannot read.
        TensorNotFoundError: if ``tensor`` is not in the checkpoint.
        UsageError: if ``filter`` is not a valid regular expression, or is
            combined with ``tensor``.
        InputError: if a ckptmap commit into the folder was interrupted before
            its commit point (a killed ``--force`` replace): the checkpoint
            there is then neither the old one nor the new one until the next
            ckptmap write into the folder rolls it back.

    Example:
        >>> report = inspect_checkpoint("fixtures/ffm_v1", filter="^ffm/")  # doctest: +SKIP
        >>> [t.name for t in report.tensors][:1]  # doctest: +SKIP
        ['ffm/bias_net/w']
    """
    if tensor is not None and filter is not None:
        raise UsageError("choose either a tensor or a filter, not both")
    pattern = _compile(filter)
    _refuse_an_interrupted_commit(path)
    with measure_io() as io, open_source(path, step=step) as source:  # counts the index too
        if verify:
            source.verify()
        names = _object_names(source)
        if tensor is not None and names is not None and tensor not in source:
            tensor = names.key_of(tensor) or tensor
        if tensor is not None:
            source.slices(tensor)  # raises TensorNotFoundError with a suggestion
            keys = [tensor]
        else:
            keys = list(source)
            if pattern is not None:
                keys = [k for k in keys if _kept(pattern, k, names)]
        notes = source.notes
        if can_copy_bytes(source):
            shards = tuple(_shard_info(source, i) for i in range(source.num_shards))
            values_needed = stats or verify or tensor is not None
            missing = {i for i, s in enumerate(shards) if s.missing}
            if missing and values_needed:
                source.shard_size(min(missing))  # raises, naming the missing file
            infos = _describe_all(source, keys, stats=stats, missing=missing)
            notes += tuple(_missing_note(shards[i], infos, i) for i in sorted(missing))
            prefix, index = source.prefix, source.index_path
        else:
            shards = ()
            specs = source.specs()
            infos = tuple(_describe_array(source, specs[key], stats=stats) for key in keys)
            prefix, index = Path(source.url), Path(source.where)
        graph, restored = _restored_beside(source.url)
        if restored:
            infos = tuple(replace(i, restored_into=restored.get(i.name)) for i in infos)
        if names is not None:
            infos = tuple(
                replace(i, names=names.get(i.name), user_name=names.user_name(i.name))
                for i in infos
            )
        return InspectReport(
            prefix=prefix,
            index=index,
            num_shards=len(shards),
            shards=shards,
            byte_order=source.byte_order,
            tensors=infos,
            assets=tuple(source.assets),
            with_stats=stats,
            verified=verify,
            values=source.read(tensor) if tensor is not None else None,
            url=source.url,
            io=io,
            format=source.format,
            notes=notes,
            graph=graph if restored else None,
        )


def _refuse_an_interrupted_commit(path: str | os.PathLike[str]) -> None:
    """Report a replace that a kill interrupted (docs/durability.md) instead of a half checkpoint.

    Only local folders have staging folders to look at; one that merely holds
    a run in progress or a killed fresh write (no journal) changes nothing
    anyone can see, and one past its commit point already shows the new
    checkpoint, so only the ``replacing`` phase is refused.
    """
    text = location_text(path)
    if is_url(text):
        return
    where = Path(text)
    folder, name = (where, None) if where.is_dir() else (where.parent, where.name)
    if name is not None and name.endswith(".index"):
        name = name[: -len(".index")]
    try:
        with os.scandir(folder) as entries:
            if not any(e.name.startswith(STAGING_PREFIX) for e in entries):
                return  # the common case, without importing the writers
    except OSError:
        return
    from ckptmap.writers.commit import pending_commits

    for commit in pending_commits(folder):
        if commit.phase != "replacing" or name not in (None, commit.prefix):
            continue
        what = f"checkpoint {commit.prefix!r}" if commit.prefix else "checkpoint"
        if commit.live:
            raise InputError(
                f"{folder}: the {what} is being replaced by a running ckptmap process "
                f"(staging folder {commit.staging}); inspect it when that run has ended"
            )
        raise InputError(
            f"{folder}: a ckptmap replace of the {what} was interrupted (staging folder "
            f"{commit.staging}), so neither the old nor the new checkpoint is complete here; "
            "the next ckptmap write into this folder rolls it back (the old files come "
            "back): run the remap again"
        )


def _restored_beside(checkpoint: str) -> tuple[Path | None, dict[str, str]]:
    """The graph beside ``checkpoint`` that restores a lookup table, and what its keys go into."""
    found = graph_with_tables(checkpoint)
    if found is None:
        return None, {}
    from ckptmap.readers.graph import restored_into  # protobuf: only for a graph with tables

    restored = restored_into(*found)
    return (None, {}) if restored is None else (found[0], restored)


def _object_names(source: Source) -> ObjectNames | None:
    """The object graph's names of a TF2 checkpoint's keys (``None`` for a name-based one)."""
    if OBJECT_GRAPH_KEY not in source:
        return None  # the graph's reader is loaded only for a checkpoint that has a graph
    from ckptmap.readers.object_graph import object_names

    return object_names(source)


def _kept(pattern: re.Pattern[str], key: str, names: ObjectNames | None) -> bool:
    """Whether the filter keeps ``key``: it matches the key or the name users know it by."""
    if pattern.search(key):
        return True
    return names is not None and pattern.search(names.user_name(key)) is not None


def _names_json(user_name: str, names: KeyNames | None) -> dict[str, Any]:
    """The object graph's fields of one tensor in ``inspect --json``."""
    slot = names.slot_of if names is not None else None
    return {
        "user_name": user_name,
        "full_name": names.full_name if names is not None else None,
        "object_path": names.object_paths[0] if names is not None and names.object_paths else None,
        "object_paths": list(names.object_paths) if names is not None else [],
        "slot_of": None
        if slot is None
        else {"variable": slot.variable, "slot": slot.slot, "optimizer": slot.optimizer},
    }


def _compile(filter: str | None) -> re.Pattern[str] | None:
    if filter is None:
        return None
    try:
        return re.compile(filter)
    except re.error as err:
        raise UsageError(f"filter {filter!r} is not a valid regular expression ({err})") from None


def _shard_info(ckpt: Checkpoint, shard_id: int) -> ShardInfo:
    try:
        return ShardInfo(ckpt.shard_path(shard_id), ckpt.shard_size(shard_id))
    except MissingInputError:
        return ShardInfo(ckpt.shard_path(shard_id), None, missing=True)


def _missing_note(shard: ShardInfo, infos: Iterable[TensorInfo], shard_id: int) -> str:
    held = sum(1 for t in infos if t.shard == shard_id or shard_id in t.slice_shards)
    return (
        f"{shard.path}: data file of this checkpoint is missing; listed from the index "
        f"alone (the values of {held} tensor{'s' if held != 1 else ''} listed here cannot "
        "be read)"
    )


def _describe_all(
    ckpt: Checkpoint, keys: list[str], *, stats: bool, missing: set[int]
) -> tuple[TensorInfo, ...]:
    """:func:`_describe` of each key, in order; a whole listing's tensors stored whole at once.

    The fast path gives the same infos and raises the same first error: each
    entry is decoded, then its bytes checked against its data file, in key order.
    """
    from ckptmap.readers.tf_bundle import Checkpoint

    if stats or missing or not isinstance(ckpt, Checkpoint) or len(keys) != len(ckpt):
        return tuple(_describe(ckpt, key, stats=stats, missing=missing) for key in keys)
    sizes = [ckpt.shard_size(i) for i in range(ckpt.num_shards)]
    infos: list[TensorInfo] = []
    add = infos.append
    for key, entry in zip(keys, ckpt.entries(), strict=True):
        if entry.slices:
            add(_describe(ckpt, key, stats=False, missing=missing))
            continue
        size = sizes[entry.shard_id]
        if size is not None and entry.offset + entry.size > size:
            ckpt.check_entry(entry)  # raises, naming the tensor
        add(_make_info(key, entry.dtype.name, entry.shape, entry.size, entry.shard_id))
    return tuple(infos)


def _describe(ckpt: Checkpoint, key: str, *, stats: bool, missing: set[int]) -> TensorInfo:
    entry = ckpt.entry(key)
    parts = [part for _, part in ckpt.slice_entries(key)] if entry.slices else [entry]
    if not any(part.shard_id in missing for part in parts):
        ckpt.check_entry(entry)
    computed = _tensor_stats(ckpt, entry, parts) if stats else None
    sliced = bool(entry.slices)
    return _make_info(
        key,
        entry.dtype.name,
        entry.shape,
        sum([part.size for part in parts]),
        None if sliced else entry.shard_id,
        tuple([spec.format() for spec in entry.slices]),
        tuple([part.shard_id for part in parts]) if sliced else (),
        computed,
    )


# -- statistics ---------------------------------------------------------------


def _tensor_stats(
    ckpt: Checkpoint, entry: TensorEntry, parts: list[TensorEntry]
) -> TensorStats | None:
    """Statistics of a tensor, slice by slice and chunk by chunk, never assembling it."""
    from ckptmap.value_stats import value_stats  # numpy: only for --stats

    arrays = (ckpt.read_slice_entry(part) for part in parts)  # read only if there are stats
    return value_stats(arrays, entry.dtype.numpy, entry.dtype.name)


def _describe_array(source: Source, spec: TensorSpec, *, stats: bool) -> TensorInfo:
    """A tensor of a source without stored bytes (a zarr3 store): its spec, read as an array."""
    return TensorInfo(
        name=spec.key,
        dtype=spec.dtype.name,
        shape=spec.shape,
        nbytes=math.prod(spec.shape) * spec.dtype.itemsize,
        shard=None,
        slices=tuple(s.format() for s in spec.slices),
        stats=_array_stats(source.read(spec.key), spec.dtype.name) if stats else None,
    )


def _array_stats(values: np.ndarray, dtype_name: str) -> TensorStats | None:
    """Statistics of an array already in memory, chunk by chunk."""
    from ckptmap.value_stats import value_stats

    return value_stats([values], values.dtype, dtype_name)
