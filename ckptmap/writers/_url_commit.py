"""The commit protocol for an output at a URL: stage locally, upload in commit order.

Stores have no rename, so each file is uploaded under its final name, the
index (the commit point) after the data and assets, the state file last. A
journal object ``<folder>/.ckptmap-staging-<token>.journal`` is written to
the store before the first upload and deleted after the last, so leftovers of
a killed upload are recognisable; the next write of the same prefix deletes
them.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from ckptmap.errors import CkptmapError, InputError, OutputError, OutputExistsError, UsageError
from ckptmap.formats.state_file import STATE_FILE_NAME
from ckptmap.storage import Location, open_location, split_name
from ckptmap.storage.staging import STAGING_PREFIX
from ckptmap.writers._protocol import (
    DATA,
    STATE,
    Commit,
    Journal,
    commit_order,
)
from ckptmap.writers._staging import Staging, folder_lock, recover
from ckptmap.writers.state import state_file_bytes

JOURNAL_SUFFIX = ".journal"  # one key, not a folder: stores without folders leave none behind


def url_journals(location: Location) -> list[tuple[str, Journal | None]]:
    """The journal objects left at ``location`` (``(key, journal)``; empty if it cannot list)."""
    names = location.list(STAGING_PREFIX)
    found: list[tuple[str, Journal | None]] = []
    for key in names or []:
        if "/" in key or not key.endswith(JOURNAL_SUFFIX):
            continue
        try:
            found.append((key, Journal.decode(location.read_all(key, max_bytes=1 << 24))))
        except (CkptmapError, ValueError, KeyError, TypeError):
            found.append((key, None))
    return found


class UrlCommit(Commit):
    """A commit to a folder URL (see :mod:`ckptmap.writers.commit`).

    The files are staged in a local staging folder under the temporary folder
    (``TMPDIR``), locked like a local one, so a killed run's leftovers there are
    removed by the next URL write.
    """

    is_local = False

    def __init__(self, url: str, *, force: bool) -> None:
        super().__init__()
        folder, name = split_name(url)
        try:
            self.location = open_location(folder)
        except (InputError, UsageError) as err:
            raise OutputError(str(err)) from None
        self.prefix = self.location.where(name)
        self.name = name
        self.force = force
        self._index = f"{name}.index"
        self._uploaded: list[str] = []
        self._journal_key = ""
        if not force and self.location.exists(self._index):
            raise OutputExistsError(
                self.location.where(self._index),
                "a checkpoint exists here; pass --force to replace it",
            )
        tmp = Path(tempfile.gettempdir())
        with folder_lock(tmp):
            recover(tmp)
            self._staging = Staging.create(tmp, name)
        self.stage_folder = self._staging.path
        try:
            self.steps.reach("staging")
        except BaseException:
            self.abort()
            raise

    def where(self, name: str) -> str:
        return self.location.where(name)

    def _check_free(self, name: str) -> None:
        return None  # checked for the index at open and at commit; a store has no cheap listing

    def commit(self) -> tuple[str, ...]:
        self._check_open()
        self.steps.reach("staged")
        loc = self.location
        names = list(self._staged)
        if self._latest is not None:  # names this checkpoint only (a remote one is replaced)
            data = state_file_bytes(self.stage_folder, self.stage_prefix, keep_existing=False)
            (self.stage_folder / STATE_FILE_NAME).write_bytes(data)
            names.append(STATE_FILE_NAME)
        place = commit_order(names, self.name)
        had_index = loc.exists(self._index)
        if had_index and not self.force:
            self.abort()
            raise OutputExistsError(
                loc.where(self._index),
                "a checkpoint appeared here while writing; pass --force to replace it",
            )
        # an old asset of the same name is overwritten in place (docs/durability.md)
        clash = had_index and any(loc.exists(n) for n, kind in place if kind == DATA)
        listed = loc.list(f"{self.name}.data-") if had_index else []
        stale = [n for n in (listed or []) if n not in names]
        journal = Journal(self.name, place, [self._index] if clash else [], stale)
        committed = False
        try:
            self._journal_key = f"{STAGING_PREFIX}{self._staging.token}{JOURNAL_SUFFIX}"
            loc.write(self._journal_key, journal.encode())
            self.steps.reach("journal")
            if clash:  # old data are overwritten next: the old index must not point at them
                loc.delete(self._index)
                self.steps.reach("aside")
            placed: list[str] = []
            for name, kind in place:
                if kind == STATE:
                    continue
                self._upload(name)
                placed.append(name)
                committed = name == journal.point
                self.steps.reach(f"place-{kind}")
            self.state = "committed"
            for name in stale:
                loc.delete(name)
            self._forget_leftovers(names)
            self.steps.reach("clean")
            if any(kind == STATE for _, kind in place):
                self._upload(STATE_FILE_NAME)
                placed.append(STATE_FILE_NAME)
                self.steps.reach("place-state")
            loc.delete(self._journal_key)
            self._staging.remove()
        except BaseException as exc:
            if committed:  # the checkpoint is whole; the journal object marks what is left
                self.state = "committed"
                self._staging.release()
                raise
            before = max(len(self._uploaded) - 1, 0)  # the last one is the one that failed
            self._delete_uploaded()
            self.abort()
            if isinstance(exc, OutputError):
                raise OutputError(
                    f"{exc} (nothing was committed: the {before} file(s) written before "
                    "were deleted again)"
                ) from None
            raise
        self.steps.reach("done")
        return tuple(placed)

    def _upload(self, name: str) -> None:
        path = self.stage_folder / name
        try:
            data = path.read_bytes()
        except OSError as err:
            raise OutputError(f"{path}: cannot read the staged file ({err.strerror})") from err
        self._uploaded.append(name)
        self.location.write(name, data)

    def _delete_uploaded(self) -> None:
        for name in reversed(self._uploaded):
            self.location.delete(name)
        if self._journal_key:
            self.location.delete(self._journal_key)
        self._uploaded.clear()

    def _forget_leftovers(self, names: list[str]) -> None:
        """Delete what killed uploads of this prefix left (files not part of this checkpoint)."""
        for key, journal in url_journals(self.location):
            if key == self._journal_key or journal is None or journal.prefix != self.name:
                continue
            for name, _kind in journal.place:
                if name not in names:
                    self.location.delete(name)
            self.location.delete(key)

    def abort(self) -> None:
        if self.state != "open":
            return
        self.state = "aborted"
        with contextlib.suppress(OSError):
            self._staging.remove()
