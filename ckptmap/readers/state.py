"""Finding a checkpoint: the ``checkpoint`` state file, prefixes and ``.index`` names.

A user may name a checkpoint by its model folder (the ``checkpoint`` state file
there says which prefix is the latest, tf-checkpoint-format.md §1.2), by its
prefix (``model.ckpt-100``), or by one of its files (``model.ckpt-100.index``),
as a local path or a URL. :func:`find_checkpoint` turns any of them into a
:class:`CheckpointRef` (a folder :class:`~ckptmap.storage.Location` and the
prefix's name in it) through the storage seam alone, so local folders and
stores are searched by the same code; :func:`locate_checkpoint` gives a local
checkpoint's prefix as a path. The state file's text is decoded by
:mod:`ckptmap.formats.state_file`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ckptmap.errors import (
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    UsageError,
)
from ckptmap.formats.state_file import (
    MAX_STATE_FILE_BYTES,
    STATE_FILE_NAME,
    StateFields,
    StateFileError,
    decode_state,
)
from ckptmap.formats.table import FOOTER_SIZE, TABLE_MAGIC
from ckptmap.storage import LocalLocation, Location, location_text, open_parent
from ckptmap.storage.input_files import open_input

__all__ = [
    "INDEX_SUFFIX",
    "STATE_FILE_NAME",
    "CheckpointRef",
    "CheckpointState",
    "find_checkpoint",
    "locate_checkpoint",
    "read_state_file",
]

INDEX_SUFFIX = ".index"
_DATA_FILE = re.compile(r"^(?P<prefix>.+)\.data-\d{5,}-of-\d{5,}$")
V1_SHARD = re.compile(r"-(?:\?{5}|\d{5})-of-(\d{5})$")  # a sharded V1 Saver's file names
_STEP = re.compile(r"-(\d+)$")
_SAVED_MODEL_VARIABLES = "variables/variables"
_EXPECTED = (
    "(expected a model folder, a checkpoint prefix or its .index file, or a .safetensors or "
    ".npz file)"
)


@dataclass(frozen=True, slots=True)
class CheckpointRef:
    """Where a checkpoint is, found by :func:`find_checkpoint`.

    Attributes:
        location: the folder holding the checkpoint's files.
        prefix: the checkpoint prefix's name inside that folder (``model.ckpt-100``).
        index: the ``.index`` file's bytes when finding already read them, else ``None``.
        notes: what the user should know about how it was found (a state file
            naming a path outside a moved folder, resolved to the file here).
        v1_files: for a V1 checkpoint (one table file per shard, no ``.index``;
            local only), the names of its files in ``location``; else empty.
    """

    location: Location
    prefix: str
    index: bytes | None = None
    notes: tuple[str, ...] = ()
    v1_files: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The prefix as a path (for a checkpoint at a URL, the URL as a path)."""
        return Path(self.location.where(self.prefix))


@dataclass(frozen=True, slots=True)
class CheckpointState:
    """The decoded ``checkpoint`` state file of a model folder (§1.2).

    Attributes:
        path: the state file.
        latest: the prefix of the latest checkpoint, resolved against the folder.
        all: the prefixes still kept, oldest first, resolved against the folder.
    """

    path: Path
    latest: Path
    all: tuple[Path, ...]


def read_state_file(path: str | os.PathLike[str]) -> CheckpointState:
    """Read a local ``checkpoint`` state file.

    Relative prefixes are joined with the file's folder. A prefix that points
    outside that folder is refused: a copied model folder would otherwise
    silently read another checkpoint.

    Raises:
        MissingInputError: if the file does not exist.
        CorruptCheckpointError: if the file is not a text ``CheckpointState``,
            names no checkpoint, or points outside its folder.
    """
    path = Path(path)
    folder = LocalLocation(path.parent)
    message = _read_state(folder, path.name)
    if message is None:
        raise MissingInputError(path, "checkpoint state file not found")
    where = str(path)
    latest = _name_in_folder(where, folder, message.model_checkpoint_path)
    kept = tuple(_name_in_folder(where, folder, p) for p in message.all_model_checkpoint_paths)
    return CheckpointState(path, folder.path(latest), tuple(folder.path(p) for p in kept))


def locate_checkpoint(path: str | os.PathLike[str], *, step: int | None = None) -> Path:
    """Return the prefix of the local checkpoint that ``path`` names.

    The same search as :func:`find_checkpoint`, for callers that want a path.

    Example:
        >>> locate_checkpoint("fixtures/ffm_v1", step=50)  # doctest: +SKIP
        PosixPath('fixtures/ffm_v1/model.ckpt-50')
    """
    return find_checkpoint(path, step=step).path


def find_checkpoint(
    path_or_url: str | os.PathLike[str], *, step: int | None = None
) -> CheckpointRef:
    """Find the checkpoint that a path or URL names.

    Args:
        path_or_url: a model folder (its ``checkpoint`` state file is used;
            without one, the folder's only checkpoint, or a SavedModel's
            ``variables/variables``), the state file itself, a checkpoint
            prefix, its ``.index`` file or one of its data files; a local path
            or a URL (a URL ending in ``/`` is a folder).
        step: with a folder or prefix, the checkpoint saved at this global
            step: the kept prefix that ends in ``-<step>``.

    Returns:
        The folder and the prefix's name in it. Only the state file and the
        index are read (the index only at a URL, where it is kept in the result).

    Raises:
        MissingInputError: if there is no checkpoint there, or none for ``step``.
        CorruptCheckpointError: if the state file is unusable.
        InputError: if a store at a URL cannot be reached or read.
        UsageError: if ``step`` is given with an ``.index`` or data file, or the
            URL scheme is not supported.
    """
    text = location_text(path_or_url)
    folder, name = open_parent(text)
    if not name or name == STATE_FILE_NAME and (not folder.is_local or folder.exists(name)):
        return _in_folder(folder, step)
    data_match = _DATA_FILE.match(name)
    if name.endswith(INDEX_SUFFIX) or data_match:
        if step is not None:
            kind = "an .index" if data_match is None else "a data"
            what = "path" if folder.is_local else "URL"
            raise UsageError(
                f"{text}: a step cannot be used with {kind} file {what} "
                "(pass the model folder or the prefix with the step)"
            )
        stem = name[: -len(INDEX_SUFFIX)] if data_match is None else data_match["prefix"]
        if not folder.is_local or folder.exists(name) and folder.exists(stem + INDEX_SUFFIX):
            return CheckpointRef(folder, stem)  # at a URL, a missing index shows when read
    if isinstance(folder, LocalLocation) and folder.path(name).is_dir():
        return _in_folder(folder.child(name), step)
    prefix = name if step is None else f"{name}-{step}"
    if folder.is_local:
        if folder.exists(prefix + INDEX_SUFFIX):
            return CheckpointRef(folder, prefix)
        v1_files = _v1_files(folder, prefix)
        if v1_files:
            return CheckpointRef(folder, prefix, v1_files=v1_files)
        raise _not_a_checkpoint(text, folder, name, prefix, step)
    index = _read_if_present(folder, prefix + INDEX_SUFFIX)
    if index is not None:
        return CheckpointRef(folder, prefix, index)
    return _in_folder(folder.child(name), step)


def _not_a_checkpoint(
    text: str, folder: Location, name: str, prefix: str, step: int | None
) -> MissingInputError:
    if step is not None:
        return MissingInputError(
            text, f"no checkpoint for step {step} at {folder.where(prefix)} {_EXPECTED}"
        )
    if isinstance(folder, LocalLocation) and folder.path(name).exists():
        return MissingInputError(text, f"not a checkpoint {_EXPECTED}")
    return MissingInputError(text, f"no such file, folder or checkpoint prefix {_EXPECTED}")


def _v1_files(folder: Location, prefix: str) -> tuple[str, ...]:
    """The table files of the V1 checkpoint ``prefix`` in a local folder; empty if there is none.

    ``prefix`` is the one file of a V1 checkpoint (``model.ckpt-5``), the pattern
    a sharded V1 Saver's state file names (``model.ckpt-5-?????-of-00002``), one
    of its shard files, or the prefix without the pattern: a shard's name stands
    for all the shards with its count. Only files that end in a table footer count.
    """
    if not isinstance(folder, LocalLocation):
        return ()
    match = V1_SHARD.search(prefix)
    if match is None and _is_table(folder, prefix):
        return (prefix,)
    stem = prefix if match is None else prefix[: match.start()]
    count = r"\d{5}" if match is None else match[1]
    parent, _, base = stem.rpartition("/")
    shard = re.compile(re.escape(base) + r"-\d{5}-of-" + count)
    try:
        listed = os.listdir(folder.path(parent or "."))
    except OSError:
        return ()
    names = sorted(f"{parent}/{n}" if parent else n for n in listed if shard.fullmatch(n))
    counts = {n[-5:] for n in names}
    if len(counts) > 1:  # shards of two sharded saves: the one the name says, else none
        return ()
    return tuple(n for n in names if _is_table(folder, n))


def _is_table(folder: LocalLocation, name: str) -> bool:
    """Whether the file ``name`` ends in a table footer (without reading more than that)."""
    path = folder.path(name)
    try:
        with os.fdopen(open_input(path, folder.root), "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < FOOTER_SIZE:
                return False
            file.seek(size - 8)
            return int.from_bytes(file.read(8), "little") == TABLE_MAGIC
    except (InputError, OSError):
        return False


def _read_if_present(location: Location, name: str) -> bytes | None:
    try:
        return location.read_all(name)
    except MissingInputError:
        return None


# -- model folders ------------------------------------------------------------------


def _in_folder(folder: Location, step: int | None) -> CheckpointRef:
    """The checkpoint of a model folder: its state file's, or the folder's only one."""
    state_where = folder.where(STATE_FILE_NAME)
    message = _read_state(folder, STATE_FILE_NAME)
    if message is None:
        return _without_state(folder, step)
    latest = _name_in_folder(state_where, folder, message.model_checkpoint_path)
    notes: tuple[str, ...] = ()
    if step is None:
        prefix = latest
    else:
        kept = [_name_in_folder(state_where, folder, p) for p in message.all_model_checkpoint_paths]
        candidates = [p for p in (*kept, latest) if p.endswith(f"-{step}")]
        if not candidates:
            steps = sorted({m[1] for p in kept if (m := _STEP.search(p))}, key=int)
            raise MissingInputError(
                state_where,
                f"no checkpoint for step {step} (steps kept: {', '.join(steps) or 'none'})",
            )
        prefix = candidates[0]
    stored = next(
        (
            p
            for p in (message.model_checkpoint_path, *message.all_model_checkpoint_paths)
            if Path(p).name == Path(prefix).name
        ),
        prefix,
    )
    if isinstance(folder, LocalLocation) and _outside(folder, stored):
        notes = (f"checkpoint state file names {stored}; using ./{prefix} in this folder",)
    if folder.is_local and not folder.exists(prefix + INDEX_SUFFIX):
        v1_files = _v1_files(folder, prefix)
        if v1_files:
            return CheckpointRef(folder, prefix, notes=notes, v1_files=v1_files)
        raise MissingInputError(
            folder.where(prefix + INDEX_SUFFIX),
            f"listed in {state_where} but missing (copy the checkpoint's files "
            "or edit the state file)",
        )
    return CheckpointRef(folder, prefix, notes=notes)


def _read_state(folder: Location, name: str) -> StateFields | None:
    """The state file ``name`` of ``folder``, decoded; ``None`` if there is none.

    Raises:
        CorruptCheckpointError: if it is too large, not a text ``CheckpointState``,
            or names no checkpoint.
    """
    where = folder.where(name)
    if folder.is_local:  # check the size before reading (a store tells it only by reading)
        try:
            size = folder.size(name)
        except MissingInputError:
            return None
        if size is not None and size > MAX_STATE_FILE_BYTES:
            raise _too_large(where, size)
    raw = _read_if_present(folder, name)
    if raw is None:
        return None
    if len(raw) > MAX_STATE_FILE_BYTES:
        raise _too_large(where, len(raw))
    try:
        message = decode_state(raw)
    except StateFileError as err:
        raise CorruptCheckpointError(
            where,
            f"not a valid checkpoint state file ({err}; delete it and pass a checkpoint "
            "prefix, or restore it from a backup)",
        ) from None
    if not message.model_checkpoint_path:
        raise CorruptCheckpointError(
            where,
            "the state file names no checkpoint (model_checkpoint_path is empty; "
            "pass a checkpoint prefix instead of the folder)",
        )
    return message


def _too_large(where: str, size: int) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        where, f"state file is {size} bytes, too large to be a checkpoint state file"
    )


def _name_in_folder(state_where: str, folder: Location, stored: str) -> str:
    """A prefix stored in a state file as a name in its folder; one that leaves it is refused.

    Locally, absolute paths inside the folder are accepted and symbolic links
    are followed; in a store, absolute paths and ``..`` are refused.
    """
    if isinstance(folder, LocalLocation):
        candidate = Path(stored)
        if not candidate.is_absolute():
            candidate = folder.root / candidate
        if not _outside(folder, stored):
            return os.path.relpath(candidate, folder.root)
        # a moved or copied folder (TensorFlow writes absolute paths): the checkpoint
        # of that name here, never the file out there (which is not even looked at)
        here = Path(stored.replace("\\", "/")).name
        if (
            Path(stored).is_absolute()
            and here
            and (folder.exists(here + INDEX_SUFFIX) or _v1_files(folder, here))
        ):
            return here
        raise CorruptCheckpointError(
            state_where,
            f"checkpoint path {stored!r} points outside {folder.root} (the folder was probably "
            f"moved or copied; make the paths in this file relative, e.g. "
            f"{Path(stored).name!r}, or pass the checkpoint prefix directly)",
        )
    parts = stored.replace("\\", "/").split("/")
    if stored.startswith("/") or ".." in parts or not parts[-1]:
        raise CorruptCheckpointError(
            state_where,
            f"checkpoint path {stored!r} points outside {folder.url} (the folder was copied "
            f"from elsewhere; make the paths in this file relative, e.g. "
            f"{parts[-1] or stored!r}, or pass the checkpoint prefix URL directly)",
        )
    return "/".join(p for p in parts if p not in ("", "."))


def _outside(folder: LocalLocation, stored: str) -> bool:
    """Whether a state file's path leaves ``folder`` (decided on paths, nothing opened)."""
    candidate = Path(stored)
    if not candidate.is_absolute():
        candidate = folder.root / candidate
    real_folder = Path(os.path.realpath(folder.root))
    real = Path(os.path.realpath(candidate))
    return not (real.parent == real_folder or real_folder in real.parents)


def _without_state(folder: Location, step: int | None) -> CheckpointRef:
    """A folder without a state file: its only checkpoint, or a SavedModel's variables."""
    listed = folder.list()
    if listed is None:
        raise MissingInputError(
            folder.url,
            "no checkpoint here: no <URL>.index and no 'checkpoint' state file in this folder "
            "(this store cannot list folders: give the checkpoint prefix URL)",
        )
    names = {n for n in listed if n.endswith(INDEX_SUFFIX)}
    prefixes = sorted(n[: -len(INDEX_SUFFIX)] for n in names if "/" not in n)
    if not prefixes:
        if _SAVED_MODEL_VARIABLES + INDEX_SUFFIX in names and step is None:
            return CheckpointRef(folder, _SAVED_MODEL_VARIABLES)
        raise MissingInputError(
            folder.url,
            "no checkpoint in this folder (no 'checkpoint' state file and no .index file; "
            "pass a checkpoint prefix or another folder)",
        )
    if step is not None:
        prefixes = [p for p in prefixes if p.endswith(f"-{step}")]
        if not prefixes:
            raise MissingInputError(folder.url, f"no checkpoint for step {step} in this folder")
    if len(prefixes) > 1:
        raise MissingInputError(
            folder.url,
            f"no 'checkpoint' state file and several checkpoints ({', '.join(prefixes)}); "
            "pass one prefix or --step",
        )
    return CheckpointRef(folder, prefixes[0])
