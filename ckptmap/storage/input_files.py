"""The model folder is a trust boundary: which local input files ckptmap will open.

A checkpoint comes from someone else. Before ckptmap opens a file of it (index,
data shard, state file, asset, hash filter) the file is looked at with
``lstat``:

* a regular file is read;
* a symbolic link is followed only when the file it resolves to lies inside the
  model folder (the folder that holds the checkpoint), so a hostile
  ``hash_filter_1 -> ../../secret.txt`` is never read nor carried into an output;
* a FIFO, socket or device is refused without being opened (opening a FIFO with
  no writer blocks forever), as is a dangling link.

:func:`open_input` then opens with ``O_NONBLOCK`` (a file swapped for a FIFO
between the check and the open cannot hang the open) and checks the opened
descriptor again with ``fstat``, so the check and the open cannot disagree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ckptmap.errors import MissingInputError, UnsupportedInputError

__all__ = ["check_tree", "open_input", "resolved_input"]

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}
_FIX = "ckptmap reads only regular files of a checkpoint"


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _inside(target: Path, folder: Path) -> bool:
    return target == folder or folder in target.parents


def resolved_input(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None) -> Path:
    """The regular file ``path`` names, after checking it may be read as part of ``folder``.

    Args:
        path: a file of the checkpoint.
        folder: the model folder; a symbolic link must resolve inside it. ``None``
            for a file the user named (a graph, a spec): links are followed
            anywhere, but only to a regular file.

    Returns:
        ``path`` itself, or for a link the file it resolves to (inside ``folder``).

    Raises:
        MissingInputError: if nothing is at ``path``.
        UnsupportedInputError: for a link out of the folder, a dangling link, or a
            FIFO, socket, device or folder.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise MissingInputError(path, "no such file") from None
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        home = Path(os.path.realpath(folder if folder is not None else target.parent))
        if not _inside(target, home):
            raise UnsupportedInputError(
                f"{path}: is a symbolic link to {target}, outside the model folder {home}; "
                "ckptmap follows links only inside it (copy the file into the folder)"
            )
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise UnsupportedInputError(
                f"{path}: is a dangling symbolic link (to {os.readlink(path)})"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedInputError(f"{path}: links to {_kind(st.st_mode)}; {_FIX}")
        return target
    if not stat.S_ISREG(st.st_mode):
        raise UnsupportedInputError(f"{path}: is {_kind(st.st_mode)}; {_FIX}")
    return path


def open_input(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None) -> int:
    """Open a checkpoint file for reading after :func:`resolved_input`'s checks.

    Returns:
        A file descriptor (the caller closes it) of a regular file.

    Raises:
        MissingInputError, UnsupportedInputError: as :func:`resolved_input`, also when
            the file was replaced by something else between the check and the open.
    """
    target = resolved_input(path, folder)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)  # target is no link: a link now is a swap
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        raise MissingInputError(path, "no such file") from None
    except OSError as err:
        raise UnsupportedInputError(f"{path}: cannot be opened safely ({err.strerror})") from err
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsupportedInputError(f"{path}: is {_kind(mode)}; {_FIX}")
    return fd


def check_tree(folder: str | os.PathLike[str]) -> None:
    """Check every file under ``folder`` before a library that opens files itself reads it.

    tensorstore opens a local zarr3 store's files on its own, so ckptmap cannot
    open them through :func:`open_input`. Instead the whole store is looked at
    with ``lstat`` first: folders and regular files pass, a link must resolve
    inside ``folder`` (to a regular file or folder), anything else is refused.
    The walk never follows a link, so a link loop cannot hang it.

    Raises:
        UnsupportedInputError: naming the first file that may not be read.
    """
    home = Path(os.path.realpath(folder))
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode) and os.path.isdir(path):
                target = Path(os.path.realpath(path))
                if not _inside(target, home):
                    raise UnsupportedInputError(
                        f"{path}: is a symbolic link to {target}, outside the store {home}; "
                        "ckptmap follows links only inside it (copy the files into the store)"
                    )
                continue
            resolved_input(path, home)
