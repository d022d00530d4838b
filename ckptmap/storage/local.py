"""Plain OS files: the fast path (memory maps and kernel copies stay with their users)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from ckptmap.errors import InputError, MissingInputError, OutputError, RangeError
from ckptmap.storage.input_files import open_input, resolved_input
from ckptmap.storage.location import Location

__all__ = ["LocalLocation"]


class LocalLocation(Location):
    """A local folder; files are read with ``pread``.

    The checkpoint reader and writer keep their own fast paths (memory maps,
    ``copy_file_range``) for local files and use :meth:`path` to reach them.
    """

    is_local = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"LocalLocation({self.url!r})"

    def path(self, name: str) -> Path:
        """The OS path of file ``name``."""
        return self.root / name if name else self.root

    def where(self, name: str) -> str:
        return str(self.path(name))

    def child(self, name: str) -> LocalLocation:
        return LocalLocation(self.path(name))

    def exists(self, name: str) -> bool:
        # anything but a folder: a FIFO or a link out is refused when opened, by name
        path = self.path(name)
        return path.is_symlink() or (path.exists() and not path.is_dir())

    def size(self, name: str) -> int:
        try:
            return resolved_input(self.path(name), self.root).stat().st_size
        except FileNotFoundError:
            raise MissingInputError(self.path(name), "no such file") from None
        except OSError as err:
            raise InputError(f"{self.path(name)}: cannot read ({err.strerror})") from err

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        path = self.path(name)
        try:
            with os.fdopen(open_input(path, self.root), "rb") as file:
                size = os.fstat(file.fileno()).st_size
                out = []
                for offset, length in ranges:
                    if offset < 0 or length < 0 or offset + length > size:
                        raise RangeError(
                            str(path),
                            size,
                            f"bytes {offset}..{offset + length} lie past the end of the "
                            f"file ({size} bytes)",
                            offset,
                        )
                    out.append(os.pread(file.fileno(), length, offset))
                return out
        except FileNotFoundError:
            raise MissingInputError(path, "no such file") from None
        except IsADirectoryError:
            raise MissingInputError(path, "is a folder, not a file") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err.strerror})") from err

    def read_all(self, name: str, *, max_bytes: int | None = None) -> bytes:
        path = self.path(name)
        if max_bytes is not None and self.size(name) > max_bytes:
            raise InputError(f"{path}: larger than {max_bytes} bytes, too large for this file")
        try:
            with os.fdopen(open_input(path, self.root), "rb") as file:
                return file.read()
        except FileNotFoundError:
            raise MissingInputError(path, "no such file") from None
        except IsADirectoryError:
            raise MissingInputError(path, "is a folder, not a file") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err.strerror})") from err

    def list(self, prefix: str = "") -> list[str]:
        folder = prefix.rpartition("/")[0]
        base = self.path(folder) if folder else self.root
        if not base.is_dir():
            return []
        names = []
        for path in base.rglob("*"):
            name = path.relative_to(self.root).as_posix()
            # not only regular files: what else is there is refused when opened
            if name.startswith(prefix) and (path.is_symlink() or not path.is_dir()):
                names.append(name)
        return sorted(names)

    def write(self, name: str, data: bytes | memoryview) -> None:
        path = self.path(name)
        tmp = path.with_name(f"{path.name}.ckptmap-tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutputError(f"{path}: cannot write ({err.strerror})") from err

    def delete(self, name: str) -> None:
        with contextlib.suppress(OSError):
            self.path(name).unlink()
