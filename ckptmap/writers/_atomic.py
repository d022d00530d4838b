"""Temporary names, fsync and rename: the small pieces of crash-safe output.

The commit protocol (:mod:`ckptmap.writers.commit`) stages whole outputs; these
helpers serve it and the single files written outside it: a file is written
under a temporary sibling name ``<final>.ckptmap-tmp-<token>...``, flushed and
fsynced, and only then renamed into place (``os.replace`` is atomic within a
folder), after which the folder itself is fsynced so the rename survives a
power cut (:func:`atomic_write_bytes`). Temporary names never end in
``.index`` nor look like ``.data-NNNNN-of-NNNNN``, so nothing half-written can
be mistaken for a checkpoint.

OS errors on output are translated into :class:`~ckptmap.errors.OutputError`
with a one-line message saying what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from ckptmap.errors import OutputError

TEMP_MARKER = ".ckptmap-tmp-"

_HINTS = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EFBIG: "file too large for this file system or process limit (ulimit -f); "
    "write elsewhere or use smaller shards",
    errno.EACCES: "permission denied; check the folder's permissions or write elsewhere",
    errno.EPERM: "operation not permitted; check the folder's permissions or write elsewhere",
    errno.EROFS: "read-only file system; write elsewhere",
    errno.ENOTDIR: "a component of the path is not a folder; choose another output path",
    errno.ENOENT: "the folder does not exist or was removed; choose another output path",
    errno.EISDIR: "a folder is in the way; choose another output path",
    errno.EEXIST: "a file is in the way; choose another output path",
}


def new_token() -> str:
    """A random token for temporary names (12 hex digits)."""
    return os.urandom(6).hex()  # what secrets.token_hex(6) is, without importing it


def temp_path(final: Path, token: str, suffix: str = "") -> Path:
    """``<final>.ckptmap-tmp-<token><suffix>`` in the folder of ``final``."""
    return final.with_name(f"{final.name}{TEMP_MARKER}{token}{suffix}")


def output_error(
    path: str | os.PathLike[str], err: OSError, action: str = "cannot write"
) -> OutputError:
    """Translate an OS error on an output path into a one-line :class:`OutputError`."""
    hint = _HINTS.get(err.errno or 0)
    reason = hint if hint is not None else (err.strerror or str(err))
    return OutputError(f"{os.fspath(path)}: {action}: {reason}")


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that renames and unlinks in it are durable.

    File systems that cannot fsync a folder (``EINVAL``) are tolerated.
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    fd = os.open(folder, flags)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    """Unlink ``path``, ignoring errors (used while cleaning up after a failure)."""
    with contextlib.suppress(OSError):
        path.unlink()


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return the ones created, outermost first.

    Raises:
        OSError: if a folder cannot be created.
    """
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    missing.reverse()
    for path in missing:
        path.mkdir()
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove folders created by :func:`make_folders` (innermost first) if still empty."""
    for path in reversed(folders):
        with contextlib.suppress(OSError):
            path.rmdir()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: temp sibling, fsync, rename, fsync folder.

    On any failure the temporary file is removed and ``path`` is left as it was.

    Raises:
        OutputError: if the file cannot be written.
    """
    tmp = temp_path(path, new_token())
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        remove_quietly(tmp)
        raise output_error(path, err) from err
    except BaseException:
        remove_quietly(tmp)
        raise
