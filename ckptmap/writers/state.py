"""The ``checkpoint`` state file that tells TensorFlow which checkpoint is the latest.

It is a protobuf text-format ``CheckpointState`` (tf-checkpoint-format.md §1.2).
Like ``tf.train.CheckpointManager`` (and ``Saver(save_relative_paths=True)``) we
store prefixes relative to the folder holding the file when they lie inside it,
so the folder can be moved. The file is replaced atomically; write it only after
the checkpoint itself is committed (the commit protocol,
:mod:`ckptmap.writers.commit`, does: the state file is its last step).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ckptmap.errors import CorruptCheckpointError, OutputError, UsageError
from ckptmap.formats.state_file import (
    STATE_FILE_NAME,
    StateFields,
    StateFileError,
    decode_state,
    encode_state,
)
from ckptmap.writers._atomic import atomic_write_bytes

__all__ = ["state_file_bytes", "write_state_file"]


def write_state_file(
    model_dir: str | os.PathLike[str],
    prefix: str | os.PathLike[str],
    *,
    keep_existing: bool = True,
    timestamp: float | None = None,
) -> Path:
    """Record ``prefix`` as the latest checkpoint in ``model_dir/checkpoint``.

    ``prefix`` becomes ``model_checkpoint_path`` and the last entry of
    ``all_model_checkpoint_paths``. It is written relative to ``model_dir`` when
    it lies inside it, absolute otherwise (a relative ``prefix`` argument is
    taken relative to the current directory, like any path).

    Args:
        model_dir: the folder of the state file (must exist).
        prefix: the checkpoint prefix just committed.
        keep_existing: keep the paths already listed in an existing state file
            (an earlier entry for the same checkpoint is moved to the end). If
            that file lists timestamps (``CheckpointManager`` does), one is
            added for the new path. With ``False`` the file lists only
            ``prefix``.
        timestamp: the Unix time recorded with the new path when timestamps are
            kept (default: now).

    Returns:
        The path of the state file.

    Raises:
        OutputError: if ``model_dir`` is not a folder or the file cannot be written.
        CorruptCheckpointError: if ``keep_existing`` and the existing file does
            not parse (pass ``keep_existing=False`` to replace it).
        UsageError: if the path cannot be stored (not valid UTF-8).

    Example:
        >>> write_state_file("out", "out/model.ckpt-100")  # doctest: +SKIP
        PosixPath('/abs/out/checkpoint')
    """
    folder = Path(os.path.abspath(model_dir))
    data = state_file_bytes(folder, prefix, keep_existing=keep_existing, timestamp=timestamp)
    state_path = folder / STATE_FILE_NAME
    atomic_write_bytes(state_path, data)
    return state_path


def state_file_bytes(
    model_dir: str | os.PathLike[str],
    prefix: str | os.PathLike[str],
    *,
    keep_existing: bool = True,
    timestamp: float | None = None,
) -> bytes:
    """The bytes :func:`write_state_file` would write (arguments and errors as there).

    The commit protocol prepares the state file in its staging folder with
    this, before the checkpoint is committed, and moves it into place last.
    """
    folder = Path(os.path.abspath(model_dir))
    if not folder.is_dir():
        raise OutputError(f"{folder}: not an existing folder; create it or choose another one")
    target = Path(os.path.abspath(prefix))
    stored = os.path.relpath(target, folder) if folder in target.parents else str(target)
    state_path = folder / STATE_FILE_NAME
    paths: list[str] = []
    stamps: list[float] = []
    preserved = 0.0
    if keep_existing and state_path.exists():
        old = _read_state(state_path)
        old_stamps = old.all_model_checkpoint_timestamps
        with_stamps = bool(old_stamps) and len(old_stamps) == len(old.all_model_checkpoint_paths)
        kept = [
            (i, p)
            for i, p in enumerate(old.all_model_checkpoint_paths)
            if Path(os.path.abspath(folder / p)) != target
        ]
        paths = [p for _, p in kept]
        if with_stamps:
            stamps = [old_stamps[i] for i, _ in kept]
            stamps.append(time.time() if timestamp is None else timestamp)
        preserved = old.last_preserved_timestamp
    state = StateFields(stored, (*paths, stored), tuple(stamps), preserved)
    try:
        return encode_state(state)
    except ValueError as err:
        raise UsageError(f"{target}: the checkpoint path is not valid UTF-8: {err}") from None


def _read_state(path: Path) -> StateFields:
    try:
        return decode_state(path.read_bytes())
    except (OSError, StateFileError) as err:
        raise CorruptCheckpointError(
            path,
            f"not a readable checkpoint state file ({err}); "
            "fix or delete it, or write with keep_existing=False",
        ) from None
