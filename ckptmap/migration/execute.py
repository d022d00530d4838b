"""Carrying out a remap plan: stream the old tensors into a new checkpoint.

:func:`execute` writes what a :class:`~ckptmap.migration.plan.RemapPlan` says,
refusing a plan whose verdict is not accepted; the bytes of each piece come
from :mod:`ckptmap.migration.write`, the old assets from
:mod:`ckptmap.migration.assets`, and a URL output is committed by
:mod:`ckptmap.migration.url_output`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckptmap.errors import OutputError, UnresolvedError, UsageError
from ckptmap.migration.assets import copy_assets
from ckptmap.migration.plan import RemapPlan
from ckptmap.migration.write import Linker, Progress, piece_bytes_for, write_tensor
from ckptmap.storage import is_url, location_text
from ckptmap.writers.state import write_state_file
from ckptmap.writers.tf_bundle import BundleWriter


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


def refuse_unaccepted(plan: RemapPlan) -> None:
    """Raise :class:`UnresolvedError` unless the plan's verdict allows writing it."""
    if plan.accepted:
        return
    missing = plan.missing
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    hint = (
        "fix their sources (a shape or dtype differs; see `ckptmap check`)"
        if plan.alias.mismatched
        else "add --rule or --alias-map entries (see `ckptmap check`), or pass --allow-missing"
    )
    raise UnresolvedError(
        f"{len(missing)} key(s) of the new model have no fitting source ({shown}); {hint}",
        report=plan,
    )


def execute(
    plan: RemapPlan,
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    shards: int = 1,
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
        plan: from :func:`~ckptmap.migration.plan.plan_from` or ``plan_remap``;
            its verdict must be accepted (``ok``, or ``partial`` when planned
            with ``allow_missing``: keys without a source are left out).
        out: the output prefix, or a folder to become a model folder.
        force: replace an existing checkpoint at the output prefix.
        shards: number of data shards to write.
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
    if is_url(out):
        from ckptmap.migration.url_output import execute_to_url

        return execute_to_url(
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
    from ckptmap.readers.source import can_copy_bytes, open_source

    bytes_written = 0
    linker: Linker | None = None
    with (
        open_source(location_text(plan.old_prefix)) as source,
        BundleWriter(prefix, num_shards=shards, force=force, byte_order=source.byte_order) as w,
    ):
        if link and can_copy_bytes(source):
            linker = Linker(w, source)
        pieces = piece_bytes_for(source, verify=verify, linker=linker)
        try:
            for tensor in plan.tensors:
                bytes_written += write_tensor(w, pieces, tensor, progress)
        finally:
            pieces.close()
        committed = w.commit()
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
