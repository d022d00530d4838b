"""The commit protocol for a local output folder: stage, journal, rename, clean."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from ckptmap.errors import CkptmapError, OutputError, OutputExistsError
from ckptmap.formats.state_file import STATE_FILE_NAME
from ckptmap.writers._atomic import (
    fsync_dir,
    make_folders,
    output_error,
    remove_empty_folders,
)
from ckptmap.writers._protocol import (
    ASSET,
    INDEX,
    STATE,
    Commit,
    Journal,
    commit_order,
    kind_of,
    remove_tree,
)
from ckptmap.writers._staging import (
    ASIDE_NAME,
    PendingCommit,
    Staging,
    folder_lock,
    recover,
    roll_back,
    staging_folders,
)
from ckptmap.writers.state import state_file_bytes

log = logging.getLogger(__name__)

_NO_LINK = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)


def existing_checkpoint(folder: Path, name: str) -> list[str]:
    """Files of a checkpoint ``name`` in ``folder``: ``name.index`` and ``name.data-*``, sorted.

    Raises:
        OutputError: if the folder cannot be listed.
    """
    try:
        with os.scandir(folder) as entries:
            return sorted(
                e.name
                for e in entries
                if e.name == f"{name}.index" or e.name.startswith(f"{name}.data-")
            )
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise output_error(folder, err, "cannot list the output folder") from err


class LocalCommit(Commit):
    """A commit into a local folder (see :mod:`ckptmap.writers.commit`).

    With ``whole_folder`` the output is the one folder ``prefix`` (a zarr
    store): it is staged empty at :attr:`stage_prefix`, and the commit renames
    it into place (an old one moves aside first and is deleted after).

    Opening it takes the folder lock briefly: stale staging folders are
    resolved, an existing checkpoint is refused without ``force``, a running
    writer of the same prefix is refused, and this commit's staging folder is
    made and locked.
    """

    is_local = True

    def __init__(self, prefix: Path, *, force: bool, whole_folder: bool = False) -> None:
        super().__init__()
        self.prefix = str(prefix)
        self.name = prefix.name
        self.force = force
        self.folder = prefix.parent
        self.whole_folder = whole_folder
        self.found: list[PendingCommit] = []
        self._journal: Journal | None = None
        self._committed = False
        if not staging_folders(self.folder):
            # A quick refusal; with staging folders around, only after recovery
            # (an interrupted --force replace is rolled back even when refused).
            self._refuse_existing(before=True)
        try:
            self._created = make_folders(self.folder)
        except OSError as err:
            raise output_error(self.folder, err, "cannot create the output folder") from err
        try:
            with folder_lock(self.folder):
                self._staging = Staging.create(self.folder, self.name)
                try:
                    self.found = recover(self.folder, skip=self._staging.path)
                    self._refuse_existing(before=True)
                    self._refuse_running()
                except BaseException:
                    self._staging.remove()
                    raise
        except BaseException:
            remove_empty_folders(self._created)
            raise
        self.stage_folder = self._staging.path
        try:
            if whole_folder:
                self.stage_path(self.name).mkdir()
            self.steps.reach("staging")
        except BaseException:
            self.abort()
            raise

    def where(self, name: str) -> str:
        return str(self.folder / name)

    def _check_free(self, name: str) -> None:
        asset = kind_of(name, self.name) == ASSET
        if asset and not self.force and os.path.lexists(self.folder / name):
            raise OutputExistsError(self.folder / name, "asset exists; pass --force to replace it")

    def _refuse_existing(self, *, before: bool) -> None:
        if self.whole_folder:
            if before and not self.force and os.path.lexists(self.prefix):
                raise OutputExistsError(self.prefix, "already exists (pass --force to replace it)")
            return
        existing = existing_checkpoint(self.folder, self.name)
        if not existing or self.force:
            return
        if before:
            shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
            detail = (
                f"a checkpoint already exists at this prefix ({shown}); "
                "pass force=True (--force) to replace it or choose another output"
            )
        else:
            detail = (
                "a checkpoint appeared at this prefix while writing; "
                "pass force=True (--force) to replace it"
            )
        raise OutputExistsError(self.prefix, detail)

    def _refuse_running(self) -> None:
        mine = (self._staging.started, self._staging.token)
        for other in self.found:
            if other.live and other.prefix == self.name and (other.started, other.token) < mine:
                raise OutputExistsError(
                    self.prefix,
                    f"is being written by another ckptmap process (staging folder "
                    f"{Path(other.staging).name}); wait for it to finish or choose another output",
                )

    # ------------------------------------------------------------------ commit

    def commit(self) -> tuple[str, ...]:
        self._check_open()
        self.steps.reach("staged")
        try:
            with folder_lock(self.folder):
                self._plan_and_journal()
                placed = self._place()
        except BaseException as exc:
            if self._committed:  # past the commit point: the next write finishes the rest
                self.state = "committed"
                self._staging.release()
                raise
            self.abort()
            if isinstance(exc, OSError) and not isinstance(exc, CkptmapError):
                raise output_error(self.prefix, exc, "cannot put the checkpoint in place") from exc
            raise
        self.state = "committed"
        return placed

    def _plan_and_journal(self) -> None:
        recover(self.folder, skip=self._staging.path)
        self._refuse_existing(before=False)
        names = list(self._staged)
        present = [n for n in names if os.path.lexists(self.folder / n)]
        if present and not self.force:
            raise OutputExistsError(
                self.where(present[0]), "appeared while writing; pass --force to replace it"
            )
        if self._latest is not None:
            keep, stamp = self._latest
            prefix = self.folder / self.name
            data = state_file_bytes(self.folder, prefix, keep_existing=keep, timestamp=stamp)
            self._write_staged(STATE_FILE_NAME, data)
            names.append(STATE_FILE_NAME)
        place = commit_order(names, self.name)
        index = f"{self.name}.index"
        old = set(present)
        if not self.whole_folder:
            old |= set(existing_checkpoint(self.folder, self.name))
        clash = [n for n, kind in place if n in old and kind not in (INDEX, STATE)]
        aside = ([index] if clash and index in old else []) + clash
        stale = sorted(n for n in old if n not in names)
        dirs: list[str] = []
        for name in names:
            parent = Path(name).parent
            chain = [p for p in reversed(parent.parents) if p != Path(".")] + [parent]
            for part in chain:
                text = part.as_posix()
                if text != "." and text not in dirs and not (self.folder / part).exists():
                    dirs.append(text)
        journal = Journal(self.name, place, aside, stale, dirs)
        self.steps.reach("locked")
        self._staging.write_journal(journal)
        self._journal = journal
        self.steps.reach("journal")

    def _place(self) -> tuple[str, ...]:
        assert self._journal is not None
        journal = self._journal
        folder, staging = self.folder, self.stage_folder
        aside = staging / ASIDE_NAME
        for name in journal.aside:
            (aside / name).parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder / name, aside / name)
            self.steps.reach("aside")
        if journal.aside:
            fsync_dir(folder)
        point = journal.point
        placed: list[str] = []
        for name, kind in journal.place:
            if kind == STATE:
                continue
            for part in journal.dirs:
                if name.startswith(part + "/") and not (folder / part).is_dir():
                    (folder / part).mkdir()
            self._move_in(name, exclusive=not self.force)
            placed.append(name)
            if name == point:
                for parent in {Path(n).parent for n in placed}:
                    fsync_dir(folder / parent)
                self._committed = True
            self.steps.reach(f"place-{kind}")
        self._after_commit_point(journal, placed)
        return tuple(placed)

    def _move_in(self, name: str, *, exclusive: bool) -> None:
        """Move staged ``name`` into place; with ``exclusive``, never over an existing file."""
        staged, final = self.stage_folder / name, self.folder / name
        if exclusive and staged.is_file() and not staged.is_symlink():
            try:
                os.link(staged, final)  # fails if anything appeared there: the final check
            except FileExistsError:
                raise OutputExistsError(
                    final, "appeared while writing; pass --force to replace it"
                ) from None
            except OSError as err:
                if err.errno not in _NO_LINK:
                    raise
            else:
                os.unlink(staged)
                return
        if exclusive and os.path.lexists(final):
            raise OutputExistsError(final, "appeared while writing; pass --force to replace it")
        os.replace(staged, final)

    def _after_commit_point(self, journal: Journal, placed: list[str]) -> None:
        """Remove stale old files, put the state file in place, remove the staging folder.

        The checkpoint is committed already: a failure here is an error that
        says so; the staging folder is left for the next write to finish.
        """
        try:
            for name in journal.stale:
                remove_tree(self.folder / name)
            remove_tree(self.stage_folder / ASIDE_NAME)
            if journal.stale:
                fsync_dir(self.folder)
            self.steps.reach("clean")
            if any(kind == STATE for _, kind in journal.place):
                os.replace(self.stage_folder / STATE_FILE_NAME, self.folder / STATE_FILE_NAME)
                fsync_dir(self.folder)
                placed.append(STATE_FILE_NAME)
                self.steps.reach("place-state")
            self._staging.remove()
            fsync_dir(self.folder)
        except OSError as err:
            raise OutputError(
                f"{self.prefix}: the checkpoint is committed, but finishing failed "
                f"({err.strerror or err}); the next ckptmap write into {self.folder} finishes it"
            ) from err
        self.steps.reach("done")

    def _write_staged(self, name: str, data: bytes) -> None:
        path = self.stage_folder / name
        with open(path, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    # ------------------------------------------------------------------ abort

    def abort(self) -> None:
        if self.state != "open":
            return
        self.state = "aborted"
        if self._journal is not None:  # interrupted while moving: put the folder back
            try:
                with folder_lock(self.folder):
                    roll_back(self.folder, self.stage_folder, self._journal)
            except OSError as err:  # the journal stays for the next write to roll back
                log.warning("%s: could not undo the commit: %s", self.prefix, err)
                self._staging.release()
                return
            self._journal = None
        self._staging.remove()
        with contextlib.suppress(OSError):
            remove_empty_folders(self._created)
