"""The parts of the commit protocol shared by local and URL outputs.

``STAGING_PREFIX`` itself lives in :mod:`ckptmap.storage.staging`, where the
readers find it.

The step names and the fault hook, the :class:`Commit` interface, the order in
which files are put into place, and the journal. The protocol itself is
described in :mod:`ckptmap.writers.commit` and ``docs/durability.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ckptmap.errors import OutputError, UsageError
from ckptmap.formats.state_file import STATE_FILE_NAME
from ckptmap.storage.staging import STAGING_PREFIX

FAULT_ENV = "CKPTMAP_FAULT_AT"
FAULT_LOG_ENV = "CKPTMAP_FAULT_LOG"
FAULT_PAUSE_ENV = "CKPTMAP_FAULT_PAUSE"
FAULT_RELEASE_ENV = "CKPTMAP_FAULT_RELEASE"
JOURNAL_FORMAT = "ckptmap-commit/1"

STEPS = (
    "staging",
    "staged",
    "locked",
    "journal",
    "aside",
    "upload",
    "place-data",
    "place-asset",
    "place-index",
    "clean",
    "place-state",
    "done",
)
"""Every step boundary of a commit, in order (``aside``, ``upload`` and ``place-*`` once per file).

``upload`` (URL outputs only) is reached when a file's upload starts: for a file
complete before the commit (:meth:`Commit.finished`) that is before ``staged``,
with a ``journal`` step before it that names the file.
"""

DATA, ASSET, INDEX, STATE = "data", "asset", "index", "state"
_ORDER = {DATA: 0, ASSET: 1, INDEX: 2, STATE: 3}

FaultHook = Callable[[str], None]
fault_hook: FaultHook | None = None
"""Called with ``"<step>#<n>"`` at every step boundary (tests set it; ``None``: nothing)."""


_FICLONE = 0x40049409  # Linux ioctl: the new file shares the source's extents (a reflink)


def clone_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Write ``dst`` as a copy of the regular file ``src``: a reflink where the file
    system can (btrfs, XFS; instant, no shared inode), else the bytes."""
    with open(src, "rb") as source, open(dst, "wb") as target:
        try:
            import fcntl

            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
        except (ImportError, OSError):
            shutil.copyfileobj(source, target, 1 << 20)


class Steps:
    """Counts the steps of one commit and runs the fault hooks at each boundary.

    ``CKPTMAP_FAULT_AT=<step>`` (or ``<step>#<n>`` for the n-th time that step
    is reached) makes the process SIGKILL itself there; ``CKPTMAP_FAULT_LOG=<file>``
    appends each ``<step>#<n>`` reached to that file, so a test can list every
    boundary of a run and then kill a second run at each one;
    ``CKPTMAP_FAULT_PAUSE=<step>[#<n>]:<seconds>`` sleeps there (to make two
    runs overlap); with ``CKPTMAP_FAULT_RELEASE=<file>`` the pause ends as soon
    as that file exists, so a test overlaps two runs however slow the machine is.
    """

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()

    def reach(self, step: str) -> None:
        self._seen[step] += 1
        label = f"{step}#{self._seen[step]}"
        log = os.environ.get(FAULT_LOG_ENV)
        if log:
            with open(log, "a", encoding="utf-8") as file:
                file.write(label + "\n")
        if os.environ.get(FAULT_ENV) in (step, label):
            os.kill(os.getpid(), signal.SIGKILL)
        where, _, seconds = os.environ.get(FAULT_PAUSE_ENV, "").rpartition(":")
        if where in (step, label):
            _pause(float(seconds), os.environ.get(FAULT_RELEASE_ENV))
        if fault_hook is not None:
            fault_hook(label)


def _pause(seconds: float, release: str | None) -> None:
    """Sleep ``seconds``, or until the file ``release`` exists."""
    if not release:
        time.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not os.path.exists(release):
        time.sleep(0.02)


def kind_of(name: str, prefix_name: str) -> str:
    """What output file ``name`` is to checkpoint ``prefix_name``: data, index, state or asset."""
    if name == f"{prefix_name}.index":
        return INDEX
    if name.startswith(f"{prefix_name}.data-") and "/" not in name:
        return DATA
    if name == STATE_FILE_NAME:
        return STATE
    return ASSET


def commit_order(names: Iterable[str], prefix_name: str) -> list[tuple[str, str]]:
    """``(name, kind)`` in the order they are put into place: data, assets, index, state."""
    kinds = [(n, kind_of(n, prefix_name)) for n in names]
    return sorted(kinds, key=lambda item: (_ORDER[item[1]], item[0]))


@dataclass(slots=True)
class Journal:
    """What a commit is about to do, written before its first move (JSON in the staging folder).

    Attributes:
        prefix: the checkpoint's name in the output folder.
        place: ``(name, kind)`` of every new file, in the order they are put in place.
        aside: old files moved into the staging folder before that (old index first).
        stale: old files removed after the commit point (not replaced by new ones).
        dirs: folders the commit creates in the output folder (removed on roll-back).
    """

    prefix: str
    place: list[tuple[str, str]]
    aside: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    @property
    def point(self) -> str | None:
        """The file whose placing commits: the index, else the last file before the state file."""
        names = [n for n, kind in self.place if kind != STATE]
        indexes = [n for n, kind in self.place if kind == INDEX]
        return indexes[0] if indexes else (names[-1] if names else None)

    def encode(self) -> bytes:
        data = {
            "format": JOURNAL_FORMAT,
            "prefix": self.prefix,
            "place": [list(item) for item in self.place],
            "aside": self.aside,
            "stale": self.stale,
            "dirs": self.dirs,
        }
        return json.dumps(data, indent=1).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> Journal:
        """Parse a journal; raises ``ValueError`` if it is not one."""
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
            raise ValueError("not a ckptmap commit journal")
        place = [(str(n), str(k)) for n, k in data["place"]]
        return cls(
            prefix=str(data["prefix"]),
            place=place,
            aside=[str(n) for n in data.get("aside", [])],
            stale=[str(n) for n in data.get("stale", [])],
            dirs=[str(n) for n in data.get("dirs", [])],
        )


def check_name(name: str) -> str:
    """A relative, ``/``-separated name inside the output folder (no ``..``, not the protocol's)."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"{name!r}: not a file name inside the output folder")
    if parts[0].startswith(STAGING_PREFIX):
        raise UsageError(f"{name!r}: names starting with {STAGING_PREFIX!r} are ckptmap's own")
    return name


def remove_tree(path: Path) -> None:
    """Remove a file or a folder tree; a missing one is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class Commit(ABC):
    """One output being written: files are staged, then put into place in one commit.

    Made by :func:`ckptmap.writers.commit.open_commit`. Files are written under
    :meth:`stage_path` (or added with :meth:`add_file`); :meth:`commit` puts
    them in place in the order data shards, assets, index (the commit point),
    ``checkpoint`` state file. Use it as a context manager: leaving the block
    without :meth:`commit`, or by an exception, is :meth:`abort`.

    Attributes:
        prefix: the checkpoint prefix as the user would write it (path or URL).
        name: the prefix's last name (``model.ckpt-100``).
        force: whether an existing checkpoint at the prefix may be replaced.
        is_local: True for a local folder (renames), False for a URL (uploads).
        stage_folder: the local folder that holds the staged files.
    """

    prefix: str
    name: str
    force: bool
    is_local: bool
    stage_folder: Path

    def __init__(self) -> None:
        self.steps = Steps()
        self._staged: dict[str, Path] = {}
        self._latest: tuple[bool, float | None] | None = None
        self.state = "open"

    def __enter__(self) -> Commit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state == "open":
            self.abort()

    @property
    def stage_prefix(self) -> Path:
        """The checkpoint prefix inside the staging folder (a writer writes ``<this>.index``)."""
        return self.stage_folder / self.name

    @abstractmethod
    def where(self, name: str) -> str:
        """The final place of output file ``name`` (a path or URL), for messages and results."""

    @abstractmethod
    def _check_free(self, name: str) -> None:
        """Raise :class:`OutputExistsError` if ``name`` exists and ``force`` is off."""

    def stage_path(self, name: str) -> Path:
        """Claim the output file (or folder) ``name`` and return where to write it in staging.

        ``name`` is relative to the output folder: ``model.ckpt-100.index``,
        ``model.ckpt-100.assets/vocab.txt``. Its parent folders in staging are
        created; the caller creates the file (or the folder) itself.

        Raises:
            OutputExistsError: if ``name`` exists at the output and ``force`` is off.
            UsageError: for a name outside the folder or one of the protocol's own.
        """
        self._check_open()
        check_name(name)
        if name == STATE_FILE_NAME:
            raise UsageError("the state file is written by record_latest(), not staged by hand")
        if name not in self._staged:
            self._check_free(name)
        path = self.stage_folder / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{path.parent}: cannot create a staging folder ({err})") from err
        self._staged[name] = path
        return path

    def add_file(self, name: str, src: str | os.PathLike[str], *, link: bool = True) -> bool:
        """Stage a copy of the local file ``src`` as output file ``name``.

        With ``link`` the file is hard-linked into staging where the filesystem
        allows (its bytes are never modified; checkpoint files are immutable),
        else copied. Returns True when linked.

        Raises:
            OutputExistsError, UsageError: as :meth:`stage_path`.
            OutputError: if it can be neither linked nor copied.
        """
        path = self.stage_path(name)
        path.unlink(missing_ok=True)
        if link:
            try:
                os.link(src, path)
            except OSError:
                pass  # another filesystem, or no links here: copied below
            else:
                return True
        try:
            clone_or_copy(src, path)
        except OSError as err:
            raise OutputError(f"{self.where(name)}: cannot stage {os.fspath(src)} ({err})") from err
        return False

    def add_bytes(self, name: str, data: bytes) -> None:
        """Stage ``data`` as output file ``name`` (errors as :meth:`add_file`)."""
        path = self.stage_path(name)
        try:
            path.write_bytes(data)
        except OSError as err:
            raise OutputError(f"{self.where(name)}: cannot stage ({err})") from err

    def finished(self, name: str) -> None:
        """Say that the staged file ``name`` is complete (its bytes will not change).

        A URL commit may start uploading it now, while the caller goes on with
        other files; a local commit does nothing until :meth:`commit`.
        """
        self._check_open()

    def record_latest(self, *, keep_existing: bool = True, timestamp: float | None = None) -> None:
        """Make the folder's ``checkpoint`` state file name this prefix, as the commit's last step.

        Args:
            keep_existing: keep the paths an existing local state file lists
                (see :func:`~ckptmap.writers.state.write_state_file`); a state
                file at a URL is replaced, not merged.
            timestamp: the Unix time recorded with the path when timestamps are kept.
        """
        self._check_open()
        self._latest = (keep_existing, timestamp)

    @property
    def staged(self) -> Sequence[str]:
        """The names staged so far."""
        return tuple(self._staged)

    @abstractmethod
    def commit(self) -> tuple[str, ...]:
        """Put every staged file into place; return their names in the order placed.

        Raises:
            OutputExistsError: if, without ``force``, the output appeared meanwhile.
            OutputError: if a file cannot be put in place (what was placed is
                undone, the old checkpoint restored).
        """

    @abstractmethod
    def abort(self) -> None:
        """Discard the staged files and the staging folder. Idempotent; nothing after commit."""

    def _check_open(self) -> None:
        if self.state != "open":
            raise UsageError(f"{self.prefix}: the output commit is already {self.state}")
