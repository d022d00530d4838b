"""Carrying out a remap plan: stream the old tensors into a new checkpoint.

:func:`execute` writes what a :class:`~ckptmap.migration.plan.RemapPlan` says,
refusing a plan whose verdict is not accepted; the bytes of each piece come
from :mod:`ckptmap.migration.write`, the old assets from
:mod:`ckptmap.migration.assets`; every output, local or at a URL, is
committed by :mod:`ckptmap.writers.commit`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckptmap.errors import OutputError, UnresolvedError, UsageError
from ckptmap.migration.assets import stage_assets
from ckptmap.migration.object_based import missing_hint, write_object_graph
from ckptmap.migration.plan import RemapPlan
from ckptmap.migration.write import Linker, Progress, piece_bytes_for, write_tensor
from ckptmap.storage import is_url, location_text
from ckptmap.storage.range_reads import ReadOptions
from ckptmap.writers.commit import open_commit
from ckptmap.writers.shard_cut import count_shards
from ckptmap.writers.tf_bundle import BundleWriter

URL_SHARD_BYTES = 32 << 20
"""Default shard size of a remap to a URL: each full shard is uploaded while the next is written."""


@dataclass(frozen=True)
class RemapResult:
    """What a remap wrote.

    Attributes:
        prefix: the output prefix.
        files: the files written (data shards, index, state file, assets).
        bytes_written: tensor bytes written into data shards.
        plan: the plan that was carried out.
        notes: findings of the writing (e.g. links that fell back to copies).
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


def resolve_output(out: str | os.PathLike[str], name: str) -> tuple[str, bool]:
    """Turn ``--out`` into an output prefix, and whether it is a model folder.

    An existing local folder, or a path or URL ending in a separator, becomes a
    model folder: the checkpoint is written under ``name`` (the old prefix's
    file name) and a ``checkpoint`` state file names it. Anything else is a prefix.
    """
    text = location_text(out)
    if is_url(text):
        return (text + name, True) if text.endswith("/") else (text, False)
    path = Path(text)
    if path.is_dir() or text.endswith((os.sep, "/")):
        return str(path / name), True
    return text, False


def _check_output(prefix: str, old_prefix: Path) -> None:
    if is_url(prefix) or is_url(old_prefix):
        if location_text(prefix) == location_text(old_prefix):
            raise UsageError(
                f"{prefix}: the output prefix is the input checkpoint; choose another --out"
            )
        return
    path = Path(prefix)
    if path.resolve() == old_prefix.resolve():
        raise UsageError(
            f"{prefix}: the output prefix is the input checkpoint; choose another --out"
        )
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{parent}: exists and is not a folder; choose another --out")


def check_sharding(shards: int | None, shard_bytes: int | None, link: bool) -> None:
    """Refuse a shard size combined with a shard count or with ``link``.

    Raises:
        UsageError: naming the options that cannot go together.
    """
    if shard_bytes is None:
        return
    if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, int) or shard_bytes < 1:
        raise UsageError(f"the shard size must be a positive number of bytes, not {shard_bytes!r}")
    if shards is not None:
        raise UsageError("give either --shards or --shard-size, not both")
    if link:
        raise UsageError(
            "--link reuses the old data files as they are, so --shard-size cannot cut them"
            " (drop one of the two)"
        )


def _shard_layout(
    plan: RemapPlan, shards: int | None, shard_bytes: int | None, to_url: bool
) -> tuple[int, int | None]:
    """(shard count, size limit of shards filled in turn; None: filled together)."""
    if shard_bytes is None and shards is None and to_url:
        shard_bytes = URL_SHARD_BYTES
    if shard_bytes is None:
        return (1 if shards is None else shards), None
    return count_shards(plan_sizes(plan), shard_bytes), shard_bytes


def plan_sizes(plan: RemapPlan) -> list[int]:
    """The planned bytes of every stored piece, in the order :func:`execute` writes them.

    Strings count 0 (their size is known only on reading), and the object graph
    of a TF2 checkpoint (a few KiB, written last) is not counted.
    """
    return [p.nbytes for t in (*plan.tensors, *plan.filled) for p in t.pieces]


def refuse_unaccepted(plan: RemapPlan) -> None:
    """Raise :class:`UnresolvedError` unless the plan's verdict allows writing it."""
    if plan.accepted:
        return
    missing = plan.missing
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    hint = (
        "fix their sources (a shape or dtype differs; see `ckptmap check`)"
        if plan.alias.mismatched
        else missing_hint(plan.object_graph)
        if plan.object_graph is not None
        else (
            "add --rule or --alias-map entries (see `ckptmap check`), fill them from a"
            " checkpoint of the new model with --fill-from, or pass --allow-missing"
        )
    )
    raise UnresolvedError(
        f"{len(missing)} key(s) of the new model have no fitting source ({shown}); {hint}",
        report=plan,
    )


def _write_filled(
    writer: BundleWriter, plan: RemapPlan, verify: bool, progress: Progress | None
) -> int:
    """Write the keys filled from the checkpoint of the new model (checked as the old ones)."""
    from ckptmap.readers.source import open_source

    assert plan.fill_from is not None
    written = 0
    with open_source(location_text(plan.fill_from)) as template:
        pieces = piece_bytes_for(template, verify=verify, linker=None)
        try:
            for tensor in plan.filled:
                written += write_tensor(writer, pieces, tensor, progress)
        finally:
            pieces.close()
    return written


def execute(
    plan: RemapPlan,
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    shards: int | None = None,
    shard_bytes: int | None = None,
    assets: str = "link",
    link: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
    reads: ReadOptions | None = None,
) -> RemapResult:
    """Write the checkpoint a plan describes.

    Everything is written through the one commit protocol
    (:mod:`ckptmap.writers.commit`, docs/durability.md): data shards, assets,
    the index (the commit point), then (for a model folder) the ``checkpoint``
    state file, locally or at a URL. A failure or a kill at any point leaves
    the old checkpoint or the new one, never a half one.

    Args:
        plan: from :func:`~ckptmap.migration.plan.plan_from` or ``plan_remap``;
            its verdict must be accepted (``ok``, or ``partial`` when planned
            with ``allow_missing``: keys without a source are left out). Keys
            planned with ``fill_from`` are read from that checkpoint.
        out: the output prefix, or a folder to become a model folder.
        force: replace an existing checkpoint at the output prefix.
        shards: number of data shards to write, filled together (each piece
            goes to the smallest).
        shard_bytes: write data shards of at most this many bytes instead
            (a larger piece gets one of its own), filled one after another in
            the plan's order; each is finished as soon as it is full, and an
            output at a URL uploads it while the rest is written. Not with
            ``shards`` or ``link``. Given neither, a local output gets one
            shard and one at a URL shards of :data:`URL_SHARD_BYTES`.
        assets: ``link`` (hard links, copies where links fail), ``copy`` or ``skip``.
        link: reuse the old data shards instead of copying them: each old shard
            that holds a piece stored unchanged (or one contiguous run of an old
            piece, as in a first-axis split) is hard-linked into the output and
            the new index points into it; only other pieces are written. Falls
            back to copying the shard where a link is impossible (noted in the
            result). Old checkpoint files are never modified either way.
        verify: check the stored CRC32C (and for strings the layout) of every
            old entry the output takes bytes from, as ``inspect --verify``
            does: the entries that ``ranges`` pieces are cut from (each read
            once; the check comes from combining the CRCs of the runs), those
            read to ``assemble`` a piece, and those copied unchanged (``copy``
            and ``--link`` references: read once, in a worker thread, before
            the copy). A mismatch raises :class:`CorruptCheckpointError`
            naming the data file and the old tensor, and nothing is published.
            ``False`` skips the checks: copies keep their stored CRC (a corrupt
            source stays detectable in the output by TensorFlow's restore and
            ``ckptmap inspect --verify``) and the new CRCs of cut pieces are
            still computed from the bytes read.
        progress: called with a byte count after each stored piece.
        reads: how an old checkpoint at a URL is fetched (requests in flight, the
            byte budget; :class:`~ckptmap.storage.range_reads.ReadOptions`).

    Raises:
        UnresolvedError: the plan's verdict is not accepted.
        UsageError: the output is the input.
        OutputExistsError: the output exists and ``force`` is false.
        OutputError: the output cannot be written.
        InputError: the old checkpoint is unreadable or corrupt.
    """
    refuse_unaccepted(plan)
    if link and (is_url(plan.old_prefix) or is_url(out)):
        raise UsageError("--link needs a local old checkpoint and a local --out (drop --link)")
    if link and not plan.copies_bytes:
        raise UsageError("--link reuses TensorFlow data files; a zarr store has none")
    prefix, model_dir = resolve_output(out, plan.output_name)
    _check_output(prefix, plan.old_prefix)
    check_sharding(shards, shard_bytes, link)
    num_shards, shard_bytes = _shard_layout(plan, shards, shard_bytes, is_url(prefix))
    from ckptmap.readers.source import can_copy_bytes, open_source

    bytes_written = 0
    linker: Linker | None = None
    with (
        open_source(location_text(plan.old_prefix)) as source,
        open_commit(prefix, force=force) as output,
    ):
        notes = stage_assets(output, plan.old_prefix, plan.old_assets, assets)
        with BundleWriter(
            output.prefix,
            num_shards=num_shards,
            max_shard_bytes=shard_bytes,
            byte_order=source.byte_order,
            output=output,
        ) as w:
            if link and can_copy_bytes(source):
                linker = Linker(w, source)
            pieces = piece_bytes_for(
                source, verify=verify, linker=linker, tensors=plan.tensors, reads=reads
            )
            try:
                for tensor in plan.tensors:
                    bytes_written += write_tensor(w, pieces, tensor, progress)
            finally:
                pieces.close()
            if plan.filled:
                bytes_written += _write_filled(w, plan, verify, progress)
            if plan.object_graph is not None:
                bytes_written += write_object_graph(
                    w,
                    plan.object_graph,
                    byte_order=source.byte_order,
                    verify=verify,
                    progress=progress,
                )
            if model_dir:
                output.record_latest()
            committed = w.commit()
    if linker is not None and linker.copied:
        notes.insert(0, "--link: some old shards are on another filesystem and were copied")
    return RemapResult(
        prefix=Path(location_text(committed.prefix)),
        files=committed.files,
        bytes_written=bytes_written,
        plan=plan,
        notes=tuple(notes),
    )
