"""The commit protocol for an output at a URL: stage locally, upload as files complete.

Stores have no rename, so each file is uploaded under its final name: the data
shards and assets first, the index (the commit point) only once every one of
them is durably in the store, the state file last. A journal object
``<folder>/.ckptmap-staging-<token>.journal`` names every file before its upload
starts and is deleted after the last, so leftovers of a killed upload are
recognisable; the next write of the same prefix deletes them.

Uploads overlap the rest of the run: a file is uploaded as soon as it is
complete (an asset when staged with ``add_file``/``add_bytes``, a data shard when
the writer calls :meth:`~ckptmap.writers._protocol.Commit.finished`), while the
writer goes on, unless a file of that name is already in the store (an old
checkpoint replaced with ``--force``): that one waits for the commit, as before.
Several uploads are in flight at once (tensorstore futures), at most
:data:`UPLOAD_IN_FLIGHT_FILES` files and :data:`UPLOAD_IN_FLIGHT_BYTES` bytes
(one larger file goes alone), and each staged copy is deleted once the store has
it. tensorstore writes a file whole (one request, no multi-part), so a file is
in memory while it is uploaded.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ckptmap.errors import CkptmapError, InputError, OutputError, OutputExistsError, UsageError
from ckptmap.formats.state_file import STATE_FILE_NAME
from ckptmap.storage import Location, open_location, split_name
from ckptmap.storage.location import PendingWrite
from ckptmap.storage.staging import STAGING_PREFIX
from ckptmap.writers._protocol import (
    DATA,
    INDEX,
    STATE,
    Commit,
    Journal,
    commit_order,
    kind_of,
)
from ckptmap.writers._staging import Staging, folder_lock, recover
from ckptmap.writers.state import state_file_bytes

JOURNAL_SUFFIX = ".journal"  # one key, not a folder: stores without folders leave none behind
UPLOAD_IN_FLIGHT_FILES = 8  # files uploaded at once
UPLOAD_IN_FLIGHT_BYTES = 256 << 20  # their bytes (held in memory by tensorstore until stored)
_SHARD_OF = re.compile(r"^(?P<stem>.*\.data-)\d{5}-of-(?P<count>\d{5})$")


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


@dataclass(slots=True)
class _Upload:
    name: str
    size: int
    pending: PendingWrite


class UrlCommit(Commit):
    """A commit to a folder URL (see :mod:`ckptmap.writers.commit`).

    The files are staged in a local staging folder under the temporary folder
    (``TMPDIR``), locked like a local one, so a killed run's leftovers there are
    removed by the next URL write. Complete files are uploaded while the run
    goes on (module docstring).
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
        self._uploaded: list[str] = []  # every upload started (deleted again on failure)
        self._in_flight: list[_Upload] = []  # oldest first
        self._stored: set[str] = set()  # uploads the store confirmed
        self._early: set[str] = set()  # started before commit(), from a complete staged file
        self._listed: set[str] = set()  # names the journal object in the store lists
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

    # -- uploads while the run goes on -----------------------------------------------------

    def stage_path(self, name: str) -> Path:
        if name in self._early:  # staged again after its upload started: uploaded again
            self._wait_for(name)
            self._early.discard(name)
            self._stored.discard(name)
        return super().stage_path(name)

    def add_file(self, name: str, src: str | os.PathLike[str], *, link: bool = True) -> bool:
        linked = super().add_file(name, src, link=link)
        self.finished(name)
        return linked

    def add_bytes(self, name: str, data: bytes) -> None:
        super().add_bytes(name, data)
        self.finished(name)

    def finished(self, name: str) -> None:
        """Start uploading the complete staged file ``name`` now, unless its name is taken.

        A name already in the store (an old checkpoint's file, replaced with
        ``force``) waits for :meth:`commit`, which decides whether the old index
        must go first. The journal object names the file before its upload starts.
        """
        self._check_open()
        if (
            name not in self._staged
            or name in self._early
            or kind_of(name, self.name)
            in (
                INDEX,
                STATE,
            )
        ):
            return
        if self.location.exists(name):
            return
        self._list_in_journal(name)
        self._start_upload(name)
        self._early.add(name)

    def _list_in_journal(self, name: str) -> None:
        """Make the journal object list ``name`` (and a shard's siblings) before it is uploaded."""
        if name in self._listed:
            return
        names = {name}
        match = _SHARD_OF.match(name)
        if match is not None:  # the other shards of the same count follow: one journal for all
            count = int(match["count"])
            names |= {f"{match['stem']}{i:05d}-of-{count:05d}" for i in range(count)}
        self._listed |= names
        self._journal_key = f"{STAGING_PREFIX}{self._staging.token}{JOURNAL_SUFFIX}"
        journal = Journal(self.name, commit_order(sorted(self._listed), self.name))
        self.location.write(self._journal_key, journal.encode())
        self.steps.reach("journal")

    def _start_upload(self, name: str) -> None:
        """Start one upload, first waiting for older ones while the window is full."""
        path = self.stage_folder / name
        try:
            size = path.stat().st_size
            while self._in_flight and self._in_flight[0].pending.done():
                self._finish_oldest()  # stored: its staged copy goes now, not at the commit
            while self._in_flight and (
                len(self._in_flight) >= UPLOAD_IN_FLIGHT_FILES
                or sum(u.size for u in self._in_flight) + size > UPLOAD_IN_FLIGHT_BYTES
            ):
                self._finish_oldest()
            data = path.read_bytes()
        except OSError as err:
            raise OutputError(f"{path}: cannot read the staged file ({err.strerror})") from err
        self._uploaded.append(name)
        self._in_flight.append(_Upload(name, size, self.location.start_write(name, data)))
        del data  # tensorstore holds the value now
        self.steps.reach("upload")

    def _finish_oldest(self) -> None:
        upload = self._in_flight.pop(0)
        upload.pending.result()
        self._stored.add(upload.name)
        with contextlib.suppress(OSError):  # the store has it: the staged copy is not needed
            (self.stage_folder / upload.name).unlink()

    def _wait_for(self, name: str) -> None:
        while name not in self._stored:
            self._finish_oldest()

    def _drain(self) -> None:
        """Wait for every upload in flight, ignoring their errors (before deleting them)."""
        while self._in_flight:
            with contextlib.suppress(CkptmapError):
                self._finish_oldest()

    # -- the commit ------------------------------------------------------------------------

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
        # an old asset of the same name is overwritten in place (docs/durability.md); a file
        # uploaded early had a free name
        clash = had_index and any(
            loc.exists(n) for n, kind in place if kind == DATA and n not in self._early
        )
        listed = loc.list(f"{self.name}.data-") if had_index else []
        stale = [n for n in (listed or []) if n not in names]
        journal = Journal(self.name, place, [self._index] if clash else [], stale)
        committed = False
        placed: list[str] = []
        try:
            self._journal_key = f"{STAGING_PREFIX}{self._staging.token}{JOURNAL_SUFFIX}"
            loc.write(self._journal_key, journal.encode())
            self._listed |= set(names)
            self.steps.reach("journal")
            if clash:  # old data are overwritten next: the old index must not point at them
                loc.delete(self._index)
                self.steps.reach("aside")
            for name, kind in place:  # the rest of the data and assets, concurrently
                if kind not in (INDEX, STATE) and name not in self._early:
                    self._start_upload(name)
            for name, kind in place:
                if kind == STATE:
                    continue
                if kind == INDEX:  # every data file and asset is in the store now
                    self._upload(name)
                else:
                    self._wait_for(name)
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
            self._drain()
            before = len(self._stored)
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
        """Upload one file and wait for it (the index, the state file)."""
        path = self.stage_folder / name
        try:
            data = path.read_bytes()
        except OSError as err:
            raise OutputError(f"{path}: cannot read the staged file ({err.strerror})") from err
        self._uploaded.append(name)
        self.location.write(name, data)
        self._stored.add(name)

    def _delete_uploaded(self) -> None:
        for name in reversed(self._uploaded):
            self.location.delete(name)
        if self._journal_key:
            self.location.delete(self._journal_key)
            self._journal_key = ""
        self._uploaded.clear()
        self._stored.clear()

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
        self._drain()  # no upload may land after the deletes below
        self._delete_uploaded()
        with contextlib.suppress(OSError):
            self._staging.remove()
