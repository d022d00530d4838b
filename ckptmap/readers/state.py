"""Finding a checkpoint: the ``checkpoint`` state file, prefixes and ``.index`` paths.

A user may name a checkpoint by its model folder (the ``checkpoint`` state file
there says which prefix is the latest, tf-checkpoint-format.md §1.2), by its
prefix (``model.ckpt-100``), or by one of its files (``model.ckpt-100.index``).
:func:`locate_checkpoint` turns any of them into a prefix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ckptmap.errors import CorruptCheckpointError, MissingInputError, UsageError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.storage import Location, open_parent

STATE_FILE_NAME = "checkpoint"
INDEX_SUFFIX = ".index"
MAX_STATE_FILE_BYTES = 16 * 1024 * 1024  # a real one is a few hundred bytes
_DATA_FILE = re.compile(r"^(?P<prefix>.+)\.data-\d{5,}-of-\d{5,}$")
_STEP = re.compile(r"-(\d+)$")


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
    """Read a ``checkpoint`` state file.

    Relative prefixes are joined with the file's folder. A prefix that points
    outside that folder is refused: a copied model folder would otherwise
    silently read another checkpoint.

    Raises:
        MissingInputError: if the file does not exist.
        CorruptCheckpointError: if the file is not a text ``CheckpointState``,
            names no checkpoint, or points outside its folder.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_STATE_FILE_BYTES:
            raise CorruptCheckpointError(
                path, f"state file is {size} bytes, too large to be a checkpoint state file"
            )
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MissingInputError(path, "checkpoint state file not found") from None
    except UnicodeDecodeError:
        raise CorruptCheckpointError(path, _garbage("it is not UTF-8 text")) from None
    except OSError as err:
        raise CorruptCheckpointError(path, f"cannot read the state file ({err.strerror})") from err
    message = _parse_state(text, str(path))
    folder = path.parent
    latest = _resolve(path, folder, message.model_checkpoint_path)
    kept = tuple(_resolve(path, folder, p) for p in message.all_model_checkpoint_paths)
    return CheckpointState(path, latest, kept)


def _parse_state(text: str, where: str) -> ckptmap_tf_pb2.CheckpointState:
    """Parse the text of a state file; it must name a checkpoint."""
    from google.protobuf import text_format  # only for folders: listing a prefix skips it

    message = ckptmap_tf_pb2.CheckpointState()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise CorruptCheckpointError(where, _garbage(str(err))) from None
    if not message.model_checkpoint_path:
        raise CorruptCheckpointError(
            where,
            "the state file names no checkpoint (model_checkpoint_path is empty; "
            "pass a checkpoint prefix instead of the folder)",
        )
    return message


def _garbage(reason: str) -> str:
    return (
        f"not a valid checkpoint state file ({reason}; delete it and pass a checkpoint "
        "prefix, or restore it from a backup)"
    )


def _resolve(state_file: Path, folder: Path, stored: str) -> Path:
    """Join a stored prefix with the folder and refuse one that leaves it."""
    candidate = Path(stored)
    if not candidate.is_absolute():
        candidate = folder / candidate
    real_folder = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(candidate))
    if real.parent != real_folder and real_folder not in real.parents:
        raise CorruptCheckpointError(
            state_file,
            f"checkpoint path {stored!r} points outside {folder} (the folder was probably "
            f"moved or copied; make the paths in this file relative, e.g. "
            f"{Path(stored).name!r}, or pass the checkpoint prefix directly)",
        )
    return candidate


def locate_checkpoint(path: str | os.PathLike[str], *, step: int | None = None) -> Path:
    """Return the prefix of the checkpoint that ``path`` names.

    Args:
        path: a model folder (its ``checkpoint`` state file is used; without one,
            the folder's only checkpoint, or a SavedModel's ``variables/variables``),
            the state file itself, a checkpoint prefix, its ``.index`` file or one
            of its data files.
        step: with a folder or prefix, the checkpoint saved at this global step:
            the kept prefix that ends in ``-<step>``.

    Returns:
        The prefix; ``<prefix>.index`` exists.

    Raises:
        MissingInputError: if there is no checkpoint there, or none for ``step``.
        CorruptCheckpointError: if the state file is unusable.
        UsageError: if ``step`` is given with an ``.index`` or data file.

    Example:
        >>> locate_checkpoint("fixtures/ffm_v1", step=50)  # doctest: +SKIP
        PosixPath('fixtures/ffm_v1/model.ckpt-50')
    """
    path = Path(path)
    if path.is_dir():
        return _locate_in_folder(path, step)
    if path.name == STATE_FILE_NAME and path.is_file():
        return _locate_in_folder(path.parent, step)
    name = path.name
    data_match = _DATA_FILE.match(name)
    if name.endswith(INDEX_SUFFIX) or data_match:
        if step is not None:
            kind = "an .index" if data_match is None else "a data"
            raise UsageError(
                f"{path}: a step cannot be used with {kind} file path "
                "(pass the model folder or the prefix with the step)"
            )
        stem = name[: -len(INDEX_SUFFIX)] if data_match is None else data_match["prefix"]
        prefix = path.with_name(stem)
        if path.is_file() and _index_of(prefix).is_file():
            return prefix
    prefix = path if step is None else path.with_name(f"{name}-{step}")
    if _index_of(prefix).is_file():
        return prefix
    if path.exists() or step is not None:
        what = f"no checkpoint for step {step} at {prefix}" if step is not None else None
        raise MissingInputError(
            path,
            (what or "not a checkpoint")
            + " (expected a model folder, a checkpoint prefix, or its .index file)",
        )
    raise MissingInputError(
        path,
        "no such file, folder or checkpoint prefix "
        "(expected a model folder, a checkpoint prefix, or its .index file)",
    )


def _index_of(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + INDEX_SUFFIX)


def _locate_in_folder(folder: Path, step: int | None) -> Path:
    state_file = folder / STATE_FILE_NAME
    if state_file.is_file():
        state = read_state_file(state_file)
        if step is None:
            prefix = state.latest
        else:
            candidates = [p for p in (*state.all, state.latest) if p.name.endswith(f"-{step}")]
            if not candidates:
                steps = sorted({m[1] for p in state.all if (m := _STEP.search(p.name))}, key=int)
                raise MissingInputError(
                    state_file,
                    f"no checkpoint for step {step} (steps kept: {', '.join(steps) or 'none'})",
                )
            prefix = candidates[0]
        if not _index_of(prefix).is_file():
            raise MissingInputError(
                _index_of(prefix),
                f"listed in {state_file} but missing (copy the checkpoint's files "
                "or edit the state file)",
            )
        return prefix
    return _locate_without_state(folder, step)


def _locate_without_state(folder: Path, step: int | None) -> Path:
    """A folder without a state file: its only checkpoint, or a SavedModel's variables."""
    prefixes = sorted(p.with_name(p.name[: -len(INDEX_SUFFIX)]) for p in folder.glob("*.index"))
    if not prefixes:
        saved_model = folder / "variables" / "variables"
        if _index_of(saved_model).is_file() and step is None:
            return saved_model
        raise MissingInputError(
            folder,
            "no checkpoint in this folder (no 'checkpoint' state file and no .index file; "
            "pass a checkpoint prefix or another folder)",
        )
    if step is not None:
        prefixes = [p for p in prefixes if p.name.endswith(f"-{step}")]
        if not prefixes:
            raise MissingInputError(folder, f"no checkpoint for step {step} in this folder")
    if len(prefixes) > 1:
        names = ", ".join(p.name for p in prefixes)
        raise MissingInputError(
            folder,
            f"no 'checkpoint' state file and several checkpoints ({names}); "
            "pass one prefix or --step",
        )
    return prefixes[0]


# -- checkpoints at URLs --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteCheckpointRef:
    """Where a checkpoint at a URL is, found by :func:`locate_remote_checkpoint`.

    Attributes:
        location: the folder holding the checkpoint's files.
        prefix: the checkpoint prefix's name inside that folder (``model.ckpt-100``).
        index: the ``.index`` file's bytes when locating already read them, else ``None``.
    """

    location: Location
    prefix: str
    index: bytes | None = None


def locate_remote_checkpoint(url: str, *, step: int | None = None) -> RemoteCheckpointRef:
    """Find the checkpoint that a URL names, as :func:`locate_checkpoint` does for paths.

    A URL ending in ``/``, or naming no ``<url>.index``, is a model folder: its
    ``checkpoint`` state file is read, or (for stores that can list, not HTTP)
    its only checkpoint is taken. Only the state file and the index are read.

    Raises:
        MissingInputError: if there is no checkpoint at the URL.
        CorruptCheckpointError: if the state file is unusable.
        InputError: if the store cannot be reached or read.
        UsageError: if ``step`` is given with an ``.index`` or data file, or the
            URL scheme is not supported.
    """
    folder, name = open_parent(url)
    if not name or name == STATE_FILE_NAME:
        return _remote_folder(folder, step)
    data_match = _DATA_FILE.match(name)
    if name.endswith(INDEX_SUFFIX) or data_match:
        if step is not None:
            kind = "an .index" if data_match is None else "a data"
            raise UsageError(
                f"{url}: a step cannot be used with {kind} file URL "
                "(pass the model folder or the prefix with the step)"
            )
        stem = name[: -len(INDEX_SUFFIX)] if data_match is None else data_match["prefix"]
        return RemoteCheckpointRef(folder, stem)
    prefix = name if step is None else f"{name}-{step}"
    index = _read_if_present(folder, prefix + INDEX_SUFFIX)
    if index is not None:
        return RemoteCheckpointRef(folder, prefix, index)
    return _remote_folder(folder.child(name), step)


def _read_if_present(location: Location, name: str) -> bytes | None:
    try:
        return location.read_all(name)
    except MissingInputError:
        return None


def _remote_folder(location: Location, step: int | None) -> RemoteCheckpointRef:
    state_where = location.where(STATE_FILE_NAME)
    raw = _read_if_present(location, STATE_FILE_NAME)
    if raw is None:
        return _remote_without_state(location, step)
    if len(raw) > MAX_STATE_FILE_BYTES:
        raise CorruptCheckpointError(
            state_where, f"state file is {len(raw)} bytes, too large to be a checkpoint state file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptCheckpointError(state_where, _garbage("it is not UTF-8 text")) from None
    message = _parse_state(text, state_where)
    latest = _remote_name(state_where, location, message.model_checkpoint_path)
    if step is None:
        return RemoteCheckpointRef(location, latest)
    kept = [_remote_name(state_where, location, p) for p in message.all_model_checkpoint_paths]
    candidates = [p for p in (*kept, latest) if p.endswith(f"-{step}")]
    if not candidates:
        steps = sorted({m[1] for p in kept if (m := _STEP.search(p))}, key=int)
        raise MissingInputError(
            state_where,
            f"no checkpoint for step {step} (steps kept: {', '.join(steps) or 'none'})",
        )
    return RemoteCheckpointRef(location, candidates[0])


def _remote_name(state_where: str, location: Location, stored: str) -> str:
    """A stored prefix as a name in the folder; absolute paths and ``..`` are refused."""
    parts = stored.replace("\\", "/").split("/")
    if stored.startswith("/") or ".." in parts or not parts[-1]:
        raise CorruptCheckpointError(
            state_where,
            f"checkpoint path {stored!r} points outside {location.url} (the folder was copied "
            f"from elsewhere; make the paths in this file relative, e.g. "
            f"{parts[-1] or stored!r}, or pass the checkpoint prefix URL directly)",
        )
    return "/".join(p for p in parts if p not in ("", "."))


def _remote_without_state(location: Location, step: int | None) -> RemoteCheckpointRef:
    names = location.list()
    if names is None:
        raise MissingInputError(
            location.url,
            "no checkpoint here: no <URL>.index and no 'checkpoint' state file in this folder "
            "(this store cannot list folders: give the checkpoint prefix URL)",
        )
    indexes = {n for n in names if n.endswith(INDEX_SUFFIX)}
    prefixes = sorted(n[: -len(INDEX_SUFFIX)] for n in indexes if "/" not in n)
    if not prefixes:
        saved_model = "variables/variables"
        if saved_model + INDEX_SUFFIX in indexes and step is None:
            return RemoteCheckpointRef(location, saved_model)
        raise MissingInputError(
            location.url,
            "no checkpoint here (no 'checkpoint' state file and no .index file; "
            "give a checkpoint prefix URL or another folder)",
        )
    if step is not None:
        prefixes = [p for p in prefixes if p.endswith(f"-{step}")]
        if not prefixes:
            raise MissingInputError(location.url, f"no checkpoint for step {step} in this folder")
    if len(prefixes) > 1:
        raise MissingInputError(
            location.url,
            f"no 'checkpoint' state file and several checkpoints ({', '.join(prefixes)}); "
            "pass one prefix or --step",
        )
    return RemoteCheckpointRef(location, prefixes[0])
