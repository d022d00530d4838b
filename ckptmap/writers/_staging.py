"""Staging folders, their locks, and finishing or undoing an interrupted commit.

A staging folder ``<out folder>/.ckptmap-staging-<token>/`` holds:

* ``.lock``: its owner holds an exclusive ``flock`` on it for the folder's
  whole life; a folder whose lock anyone can take is *stale* (its owner died);
* ``.owner``: JSON naming the prefix being written, the process and the time;
* the staged output files under their final names (``model.ckpt-100.index``,
  ``model.ckpt-100.assets/...``, ``checkpoint``);
* ``.journal``: written (atomically) just before the first file is moved at
  commit; it lists what the commit moves (:class:`~ckptmap.writers._protocol.Journal`);
* ``.aside/``: old files moved out of the way by a ``--force`` replace.

Moves in the output folder happen under an exclusive ``flock`` on the output
folder itself (:func:`folder_lock`), so commits and recoveries in one folder
never interleave. :func:`recover` resolves every stale staging folder of a
folder: without a journal it is removed; with one it is rolled back (the commit
point was not reached: new files go back into staging, old ones come back) or
rolled forward (it was: stale old files are removed, the state file put in
place), then removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ckptmap.errors import OutputError
from ckptmap.storage.staging import STAGING_PREFIX
from ckptmap.writers._atomic import fsync_dir, new_token, output_error
from ckptmap.writers._protocol import STATE, Journal, remove_tree

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
OWNER_NAME = ".owner"
JOURNAL_NAME = ".journal"
ASIDE_NAME = ".aside"
_ATTEMPTS = 8


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the output folder itself while moving files in it.

    A filesystem that cannot lock a folder (some network and FUSE filesystems)
    is tolerated with a debug message: the final no-replace check at the
    commit point still stops a second writer without ``--force``.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise output_error(folder, err, "cannot open the output folder") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            log.debug("cannot lock %s (%s); going on without the folder lock", folder, err)
        yield
    finally:
        os.close(fd)  # releases the lock


def _try_lock(path: Path, *, create: bool) -> int | None:
    """An fd holding the exclusive lock on ``path``, or None if someone holds it (or it is gone)."""
    flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY  # a reader may not write
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:  # removed and made again meanwhile
            raise BlockingIOError(errno.EWOULDBLOCK, "replaced")
    except OSError:
        os.close(fd)
        return None
    return fd


@dataclass(slots=True)
class Staging:
    """One live staging folder, locked by this process.

    Attributes:
        path: the folder.
        token: its random part.
        started: when it was made (nanoseconds; orders two writers of one prefix).
    """

    path: Path
    token: str
    started: int
    _fd: int

    @classmethod
    def create(cls, folder: Path, prefix_name: str) -> Staging:
        """Make and lock a new staging folder in ``folder``.

        Raises:
            OutputError: if it cannot be made.
        """
        last: OSError | None = None
        for _ in range(_ATTEMPTS):
            token = new_token()
            path = folder / f"{STAGING_PREFIX}{token}"
            try:
                path.mkdir()
            except FileExistsError as err:
                last = err
                continue
            except OSError as err:
                raise output_error(folder, err, "cannot create a staging folder") from err
            try:
                fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except (FileExistsError, FileNotFoundError) as err:  # a cleaner took it: again
                last = err
                continue
            except OSError as err:
                remove_tree(path)
                raise output_error(folder, err, "cannot create a staging folder") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    last = err
                    continue
                remove_tree(path)
                raise output_error(folder, err, "cannot lock a staging folder") from err
            staging = cls(path, token, time.time_ns(), fd)
            try:
                owner = {
                    "prefix": prefix_name,
                    "pid": os.getpid(),
                    "host": os.uname().nodename,  # gethostname(2)
                    "started": staging.started,
                }
                (path / OWNER_NAME).write_text(json.dumps(owner), encoding="utf-8")
            except OSError as err:
                staging.remove()
                raise output_error(folder, err, "cannot create a staging folder") from err
            return staging
        raise OutputError(f"{folder}: cannot create a staging folder ({last})")

    def remove(self) -> None:
        """Remove the folder (still holding its lock), then release the lock."""
        remove_tree(self.path)
        self.release()

    def release(self) -> None:
        """Release the lock without removing the folder (it becomes stale)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def write_journal(self, journal: Journal) -> None:
        """Write the journal atomically and durably (temp name, fsync, rename, fsync)."""
        tmp = self.path / f"{JOURNAL_NAME}.tmp"
        with open(tmp, "wb") as file:
            file.write(journal.encode())
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path / JOURNAL_NAME)
        fsync_dir(self.path)


@dataclass(frozen=True, slots=True)
class PendingCommit:
    """A staging folder found in an output folder.

    Attributes:
        staging: the staging folder.
        prefix: the checkpoint it writes (a name in the output folder), if known.
        live: its owner is running (it holds the lock).
        phase: ``writing`` (nothing moved yet), ``replacing`` (a commit was
            interrupted before its commit point: the next write rolls it
            back) or ``committed`` (interrupted after it: the next write
            finishes it).
        started: when it was made (nanoseconds since the epoch), 0 if unknown.
        token: the staging folder's token.
    """

    staging: str
    prefix: str | None
    live: bool
    phase: str
    started: int = 0
    token: str = ""

    @property
    def outcome(self) -> str:
        """What the next ckptmap write into the folder does with it, in words."""
        if self.live:
            return "being written by a running ckptmap process"
        if self.phase == "replacing":
            return "an interrupted commit: the next write rolls it back (the old files come back)"
        if self.phase == "committed":
            return "an interrupted commit past its commit point: the next write finishes it"
        return "left by a killed run: the next write removes it"


def staging_folders(folder: Path) -> list[Path]:
    """The staging folders in ``folder``, sorted by name."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.name.startswith(STAGING_PREFIX))
    except OSError:
        return []
    return [folder / n for n in names if (folder / n).is_dir()]


def _owner(path: Path) -> tuple[str | None, int]:
    try:
        data = json.loads((path / OWNER_NAME).read_text(encoding="utf-8"))
        return str(data["prefix"]), int(data["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, 0


def _journal(path: Path) -> Journal | None:
    try:
        return Journal.decode((path / JOURNAL_NAME).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s: unreadable journal; treating the commit as not started", path)
        return None


def committed(folder: Path, staging: Path, journal: Journal) -> bool:
    """Whether the commit described by ``journal`` passed its commit point."""
    point = journal.point
    if point is None:
        return True
    staged, final = staging / point, folder / point
    if not os.path.lexists(staged):
        return True
    try:  # placed as a hard link, and killed before the staged name was removed
        return os.path.lexists(final) and os.path.samefile(staged, final)
    except OSError:
        return False


def _describe(folder: Path, path: Path, *, live: bool) -> PendingCommit:
    prefix, started = _owner(path)
    journal = _journal(path)
    if journal is None:
        phase = "writing"
    else:
        phase = "committed" if committed(folder, path, journal) else "replacing"
        prefix = journal.prefix
    token = path.name[len(STAGING_PREFIX) :]
    return PendingCommit(str(path), prefix, live, phase, started, token)


def pending(folder: Path, *, skip: Path | None = None) -> list[PendingCommit]:
    """Describe every staging folder in ``folder`` without changing anything."""
    found = []
    for path in staging_folders(folder):
        if path == skip:
            continue
        fd = _try_lock(path / LOCK_NAME, create=False)
        if fd is not None:
            os.close(fd)
        live = fd is None and (path / LOCK_NAME).exists()
        found.append(_describe(folder, path, live=live))
    return found


def recover(folder: Path, *, skip: Path | None = None) -> list[PendingCommit]:
    """Resolve every stale staging folder of ``folder``; return all found (live ones untouched).

    The caller holds :func:`folder_lock`.

    Raises:
        OutputError: if an interrupted commit cannot be finished or undone.
    """
    found = []
    for path in staging_folders(folder):
        if path == skip:
            continue
        fd = _try_lock(path / LOCK_NAME, create=True)
        if fd is None:
            found.append(_describe(folder, path, live=True))
            continue
        try:
            item = _describe(folder, path, live=False)
            found.append(item)
            resolve(folder, path)
            remove_tree(path)
        finally:
            os.close(fd)
    if found:
        with contextlib.suppress(OSError):
            fsync_dir(folder)
    return found


def resolve(folder: Path, staging: Path) -> None:
    """Finish or undo the commit journaled in ``staging`` (nothing without a journal)."""
    journal = _journal(staging)
    if journal is None:
        return
    try:
        if committed(folder, staging, journal):
            roll_forward(folder, staging, journal)
        else:
            roll_back(folder, staging, journal)
    except OSError as err:
        raise output_error(
            staging,
            err,
            "cannot finish or undo an interrupted commit (fix the cause and run the command "
            "again; the journal in this folder says what is left to do)",
        ) from err


def roll_back(folder: Path, staging: Path, journal: Journal) -> None:
    """Undo a commit that did not reach its commit point: the output folder is as before it.

    New files already placed move back into staging (so running this twice is
    safe), the folders the commit made are removed, then the old files come
    back from ``.aside/`` (the old index last).
    """
    for name, _kind in reversed(journal.place):
        staged, final = staging / name, folder / name
        if not os.path.lexists(staged) and os.path.lexists(final):
            staged.parent.mkdir(parents=True, exist_ok=True)
            os.rename(final, staged)
    for name in reversed(journal.dirs):
        with contextlib.suppress(OSError):
            (folder / name).rmdir()
    aside = staging / ASIDE_NAME
    for name in reversed(journal.aside):
        if os.path.lexists(aside / name):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.rename(aside / name, folder / name)
    fsync_dir(folder)


def roll_forward(folder: Path, staging: Path, journal: Journal) -> None:
    """Finish a commit that passed its commit point: old leftovers go, the state file comes."""
    for name in journal.stale:
        remove_tree(folder / name)
    remove_tree(staging / ASIDE_NAME)
    for name, kind in journal.place:
        if kind == STATE and os.path.lexists(staging / name):
            os.replace(staging / name, folder / name)
    fsync_dir(folder)
