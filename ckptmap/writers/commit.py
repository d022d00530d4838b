"""The one commit protocol: how every output of ckptmap becomes visible, whole or not at all.

Local and URL outputs go through the same object, a :class:`Commit` from
:func:`open_commit`. A run writes every file of its output (data shards,
index, assets, state file) into one staging folder and, at :meth:`Commit.commit`,
puts them into place in a fixed order: **data shards, assets, the index (the
commit point), the ``checkpoint`` state file**. TensorFlow and ckptmap find a
checkpoint through its ``.index``, so data without an index are invisible.

Local folders (``docs/durability.md`` has every instant a kill can hit)::

    <out folder>/.ckptmap-staging-<token>/   hidden, one per run
        .lock      flock'ed exclusively by the run for its whole life
        .owner     {"prefix": ..., "pid": ..., "host": ..., "started": ns}
        <files>    the output under its final names (model.ckpt-100.index, ...)
        .journal   what the commit moves, written just before the first move
        .aside/    old files moved out of the way by a --force replace

1. ``open_commit`` (step ``staging``): under an exclusive ``flock`` on the
   output folder, stale staging folders (nobody holds their lock) are resolved
   (see 6), an existing checkpoint is refused without ``force``
   (``OutputExistsError``: "... already exists ...; pass force=True (--force)"),
   a running ckptmap writer of the same prefix that started earlier is refused
   ("... is being written by another ckptmap process"), and the staging folder
   is made and locked.
2. The caller writes files under :meth:`Commit.stage_path` (``BundleWriter``
   does), fsyncing them; ``commit()`` is called (step ``staged``).
3. Under the folder lock again: stale staging folders are resolved, the
   output is checked again (without ``force``: anything that appeared is
   refused, "a checkpoint appeared at this prefix while writing"), the state
   file is prepared in staging, and the journal is written atomically
   (steps ``locked``, ``journal``).
4. ``--force`` over an old checkpoint: if a new data shard or asset has the
   name of an old file, the old index and then those old files are renamed
   into ``.aside/`` (step ``aside`` each); when no name clashes (the shard
   count changed), nothing moves aside and the index rename in 5 replaces the
   old checkpoint by the new one atomically.
5. The new files are renamed into place: data (``place-data`` each), assets
   (``place-asset``), then the index (``place-index``): the commit point.
   Without ``force`` the index is hard-linked (which fails if anything
   appeared at that name: the final no-replace check), then unlinked from
   staging.
6. Old files the new checkpoint does not replace (an old shard count's
   shards) and ``.aside/`` are deleted (``clean``), the state file is renamed
   into place (``place-state``), the staging folder is removed (``done``).

A killed run leaves only its staging folder, and, if it died between 4 and
5, the files the journal names. The next ckptmap write into the folder (or
:func:`recover_folder`) resolves it: no journal, the folder is removed; a
journal whose commit point was not reached is **rolled back** (new files move
back into staging, old ones come back from ``.aside/``, old index last), one
whose commit point was reached is **rolled forward** (6). A failure (not a
kill) inside ``commit`` rolls back at once. :func:`pending_commits` reports
staging folders without changing anything (``inspect`` can show them).

URLs (stores have no rename): files are staged in a locked staging folder
under ``TMPDIR`` and uploaded under their final names, data and assets before
the index, the state file last. A file is uploaded as soon as it is complete
(an asset staged with :meth:`Commit.add_file` / :meth:`Commit.add_bytes`, a
shard the writer reports with :meth:`Commit.finished`; step ``upload``), while
the run goes on, several at once (bounded in files and bytes), each staged copy
deleted once stored; a name already in the store waits for the commit. A journal
object ``<folder URL>/.ckptmap-staging-<token>.journal`` names every file before
its upload starts and is deleted last, so a killed upload's leftovers are
recognisable; the next write of the same prefix deletes them. The index is
uploaded only after every data file and asset is stored. With ``force``, the
old index is deleted before the clashing uploads only when a new data shard
would overwrite an old file (then a kill before the new index leaves neither
checkpoint: a store cannot rename). Any failure waits for the uploads in
flight and deletes every file uploaded so far (:mod:`ckptmap.writers._url_commit`).

Fault injection: every step boundary calls :class:`~ckptmap.writers._protocol.Steps`
with its name (:data:`STEPS`): ``CKPTMAP_FAULT_AT=<step>`` or ``<step>#<n>``
SIGKILLs the process there, ``CKPTMAP_FAULT_LOG=<file>`` records each
``<step>#<n>`` reached, ``CKPTMAP_FAULT_PAUSE=<step>:<seconds>`` sleeps there
(until the file ``CKPTMAP_FAULT_RELEASE`` names exists, if set), and tests
may install a function with :func:`set_fault_hook`.

Example:
    >>> with open_commit("out/model.ckpt-100", force=True) as output:  # doctest: +SKIP
    ...     output.stage_path("model.ckpt-100.assets/vocab.txt").write_text("a\\nb\\n")
    ...     with BundleWriter(output.prefix, output=output) as writer:
    ...         writer.add_array("w", np.zeros(3, np.float32))
    ...         output.record_latest()
    ...         writer.commit()  # commits the output, the asset and the state file too
"""

from __future__ import annotations

import os
from pathlib import Path

from ckptmap.errors import UsageError
from ckptmap.storage import is_url, location_text, open_location
from ckptmap.storage.staging import STAGING_PREFIX, is_staging_name
from ckptmap.writers import _protocol
from ckptmap.writers._local_commit import LocalCommit
from ckptmap.writers._protocol import (
    FAULT_ENV,
    FAULT_LOG_ENV,
    FAULT_PAUSE_ENV,
    FAULT_RELEASE_ENV,
    STEPS,
    Commit,
)
from ckptmap.writers._staging import PendingCommit, folder_lock, pending, recover
from ckptmap.writers._url_commit import UrlCommit, url_journals

__all__ = [
    "FAULT_ENV",
    "FAULT_LOG_ENV",
    "FAULT_PAUSE_ENV",
    "FAULT_RELEASE_ENV",
    "STAGING_PREFIX",
    "STEPS",
    "Commit",
    "PendingCommit",
    "is_staging_name",
    "open_commit",
    "pending_commits",
    "recover_folder",
    "set_fault_hook",
]


def open_commit(
    prefix: str | os.PathLike[str], *, force: bool = False, whole_folder: bool = False
) -> Commit:
    """Start writing the output at ``prefix`` (a local path or a URL).

    Missing local folders are created (and removed again on abort).

    Args:
        prefix: the checkpoint prefix (``out/model.ckpt-100``), or with
            ``whole_folder`` the output folder itself (``out/store.zarr``).
        force: replace what is there.
        whole_folder: the output is one folder (a zarr store), staged empty at
            :attr:`Commit.stage_prefix` and renamed into place whole at the
            commit; local paths only. Without ``force`` an existing one is
            refused (``... already exists (pass --force to replace it)``).

    Raises:
        UsageError: if ``prefix`` is empty or names a folder.
        OutputExistsError: if a checkpoint exists at ``prefix`` and not ``force``,
            or another ckptmap process is writing it.
        OutputError: if the output folder cannot be created or written.
    """
    text = location_text(prefix)
    if whole_folder:
        if is_url(text):
            raise UsageError(f"{text}: a whole-folder commit needs a local path")
        return LocalCommit(
            Path(os.path.abspath(text.rstrip("/" + os.sep))), force=force, whole_folder=True
        )
    if is_url(text):
        if text.endswith("/"):
            raise UsageError(f"{text!r} is a folder; a checkpoint prefix names files")
        return UrlCommit(text, force=force)
    if not text or text.endswith(("/", os.sep)) or os.path.isdir(text):
        raise UsageError(
            f"{text!r} is a folder or empty; a checkpoint prefix names files "
            "(e.g. out/model.ckpt-100)"
        )
    return LocalCommit(Path(os.path.abspath(text)), force=force)


def pending_commits(folder: str | os.PathLike[str]) -> list[PendingCommit]:
    """The staging folders in a local ``folder`` (or journal objects at a folder URL).

    Nothing is changed. Each says whether its writer is running and what the
    next write does with it (:attr:`PendingCommit.outcome`).
    """
    text = location_text(folder)
    if is_url(text):
        location = open_location(text)
        found = []
        for key, journal in url_journals(location):
            token = key[len(STAGING_PREFIX) : -len(".journal")]
            prefix = journal.prefix if journal is not None else None
            found.append(PendingCommit(location.where(key), prefix, False, "uploading", 0, token))
        return found
    return pending(Path(text))


def recover_folder(folder: str | os.PathLike[str]) -> list[PendingCommit]:
    """Resolve the stale staging folders of a local ``folder`` now (what every write does first).

    Returns what was found (running writers' folders are left alone).

    Raises:
        OutputError: if an interrupted commit can be neither finished nor undone.
    """
    path = Path(location_text(folder))
    if not path.is_dir():
        return []
    with folder_lock(path):
        return recover(path)


def set_fault_hook(hook: _protocol.FaultHook | None) -> None:
    """Call ``hook("<step>#<n>")`` at every step boundary of every commit (``None``: stop)."""
    _protocol.fault_hook = hook
