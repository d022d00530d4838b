"""What the array-file readers share: a :class:`~ckptmap.readers.source.Source` over stored arrays.

A safetensors file (or a sharded set of them) and an npz archive both come
down to a list of :class:`StoredArray`: a key, its TensorFlow dtype, shape and
original slice layout, and where its bytes lie (a byte range of a local file,
or a compressed archive member). Opening one reads only headers; values are
read when asked for: a whole tensor as a read-only view of the memory-mapped
file where the bytes are stored plainly, a box of one (what ``convert`` and
``diff`` read, block by block) from a read of just the rows it spans, so their
memory stays bounded by a block however large the file.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from ckptmap.errors import (
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    TensorNotFoundError,
    UsageError,
)
from ckptmap.readers.source import check_box
from ckptmap.spec import TensorSpec
from ckptmap.storage.input_files import open_input

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.dtypes import DType
    from ckptmap.readers.assets import Asset
    from ckptmap.split import SliceSpec

__all__ = ["ArraySource", "StoredArray", "open_array_file"]


def open_array_file(path: Path) -> BinaryIO:
    """``path`` opened for reading as a file of its folder (the model folder's trust boundary).

    A regular file, or a link that stays inside the folder; a FIFO, socket,
    device, dangling link or link out of the folder is refused without being
    opened (:mod:`ckptmap.storage.input_files`).

    Raises:
        MissingInputError: if there is no file at ``path``.
        UnsupportedInputError: for anything but a regular file of the folder.
    """
    return os.fdopen(open_input(path, path.parent), "rb")


@dataclass(frozen=True, slots=True)
class StoredArray:
    """One array of an array file, located but not read.

    Attributes:
        key: its key.
        dtype: its TensorFlow dtype.
        shape: its shape.
        slices: its slice layout in the checkpoint it came from (empty: whole).
        path: the file holding its bytes.
        offset: where its bytes start in ``path``; ``None`` for a compressed
            npz member (read through ``load``).
        stored: the numpy dtype string of the stored elements (``"<f4"``,
            ``">i2"``); their item size is ``dtype``'s.
        fortran: the bytes are in Fortran order (an ``.npy`` flag).
    """

    key: str
    dtype: DType
    shape: tuple[int, ...]
    slices: tuple[SliceSpec, ...]
    path: Path
    offset: int | None
    stored: str
    fortran: bool = False


class ArraySource:
    """A :class:`~ckptmap.readers.source.Source` over :class:`StoredArray` s.

    Attributes:
        format: ``"safetensors"`` or ``"npz"``.
        url: the path the user gave.
        where: the file that lists the arrays (the ``.safetensors`` file, the
            shard index JSON, the ``.npz`` archive).
        name: the file name of the checkpoint the arrays were converted from
            (from the manifest), else the file's stem.
        byte_order: ``"<"``: values are returned little-endian.
        assets: always empty.
    """

    byte_order = "<"

    def __init__(
        self,
        format_name: str,
        url: str,
        where: str,
        name: str,
        arrays: Sequence[StoredArray],
        load: Callable[[StoredArray], bytes] | None = None,
    ) -> None:
        self.format = format_name
        self.url = url
        self.where = where
        self.name = name
        self.assets: list[Asset] = []
        self.notes: tuple[str, ...] = ()
        ordered = sorted(arrays, key=lambda a: a.key.encode("utf-8", "surrogateescape"))
        self._arrays = {a.key: a for a in ordered}
        self._load = load
        self._maps: dict[Path, mmap.mmap] = {}
        self._fds: dict[Path, int] = {}  # for the row reads of read_box

    # -- the listing -------------------------------------------------------------

    def keys(self) -> list[str]:
        """The keys, sorted as unsigned bytes like TensorFlow."""
        return list(self._arrays)

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._arrays

    def array(self, key: str) -> StoredArray:
        """Where ``key`` is stored.

        Raises:
            TensorNotFoundError: if there is no such key.
        """
        try:
            return self._arrays[key]
        except KeyError:
            raise TensorNotFoundError(
                self.where,
                key,
                f"no tensor {key!r} in this file (list the keys with `ckptmap inspect`)",
            ) from None

    def specs(self) -> dict[str, TensorSpec]:
        """A :class:`TensorSpec` per key, with the original checkpoint's slices."""
        return {k: TensorSpec(k, a.dtype, a.shape, a.slices) for k, a in self._arrays.items()}

    def slices(self, key: str) -> tuple[SliceSpec, ...]:
        """The slice layout ``key`` had in the checkpoint it came from (empty: whole).

        Raises:
            TensorNotFoundError: if there is no such key.
        """
        return self.array(key).slices

    def verify(self) -> list[str]:
        """Refuse: the format keeps no checksums.

        Raises:
            UsageError: always.
        """
        raise UsageError(
            f"{self.where}: --verify checks the CRC32C of a TensorFlow checkpoint; "
            f"a {self.format} file has none (compare it with its source: `ckptmap diff`)"
        )

    # -- values ------------------------------------------------------------------

    def read(self, key: str) -> np.ndarray:
        """The whole tensor ``key``, read-only.

        Raises:
            TensorNotFoundError: if there is no such key.
            InputError: if the file cannot be read.
            CorruptCheckpointError: if the file is shorter than its header says.
        """
        import numpy as np

        stored = self.array(key)
        count = 1
        for d in stored.shape:
            count *= d
        raw_type = np.dtype(stored.stored)
        if count == 0:
            flat = np.empty(0, raw_type)
        elif stored.offset is None:
            assert self._load is not None  # noqa: S101 -- set by every reader with members
            flat = np.frombuffer(self._load(stored), raw_type, count)
        else:
            try:
                flat = np.frombuffer(self._map(stored.path), raw_type, count, stored.offset)
            except ValueError:
                raise _cut_short(stored) from None
        shape = stored.shape[::-1] if stored.fortran else stored.shape
        out = _values(stored, flat, shape)
        if stored.fortran:
            out = out.T
        out.flags.writeable = False
        return out

    def read_box(self, key: str, box: Sequence[tuple[int, int]]) -> np.ndarray:
        """The part ``[start, stop)`` per axis of ``key``.

        Raises:
            TensorNotFoundError: if there is no such key.
            UsageError: if the box does not fit the tensor's shape.
        """
        stored = self.array(key)
        wanted = check_box(key, box, stored.shape)
        if stored.offset is None or stored.fortran or not wanted:
            index: tuple[Any, ...] = (*[slice(a, b) for a, b in wanted], Ellipsis)
            part: np.ndarray = self.read(key)[index]
            return part
        return self._read_rows(stored, wanted)

    def _read_rows(self, stored: StoredArray, box: Sequence[tuple[int, int]]) -> np.ndarray:
        """The box of a plainly stored C-order array, from a read of just its rows.

        The rows the box spans along the first axis are one byte range of the
        file: reading it (not touching the mapping) keeps the memory of a
        tensor read block by block bounded by one block, however large the file.
        """
        import numpy as np

        assert stored.offset is not None  # noqa: S101 -- read_box sends only these here
        raw_type = np.dtype(stored.stored)
        row = raw_type.itemsize * math.prod(stored.shape[1:])
        (first, stop), rest = box[0], box[1:]
        size = (stop - first) * row
        try:
            data = os.pread(self._fd(stored.path), size, stored.offset + first * row)
        except OSError as err:
            raise InputError(f"{stored.path}: cannot read ({err})") from err
        if len(data) != size:
            raise _cut_short(stored)
        rows = _values(stored, np.frombuffer(data, raw_type), (stop - first, *stored.shape[1:]))
        index: tuple[Any, ...] = (slice(None), *[slice(a, b) for a, b in rest], Ellipsis)
        part: np.ndarray = rows[index]
        part.flags.writeable = False
        return part

    def _map(self, path: Path) -> mmap.mmap:
        found = self._maps.get(path)
        if found is None:
            try:
                with open_array_file(path) as file:
                    found = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            except MissingInputError as err:
                raise CorruptCheckpointError(path, "the file disappeared while open") from err
            except (OSError, ValueError) as err:
                raise InputError(f"{path}: cannot read ({err})") from err
            self._maps[path] = found
        return found

    def _fd(self, path: Path) -> int:
        found = self._fds.get(path)
        if found is None:
            try:
                found = open_input(path, path.parent)
            except MissingInputError as err:
                raise CorruptCheckpointError(path, "the file disappeared while open") from err
            self._fds[path] = found
        return found

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """Drop the file mappings and descriptors; arrays already returned keep theirs alive."""
        self._maps.clear()
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ArraySource({self.format!r}, {self.url!r}, {len(self._arrays)} tensors)"


def _values(stored: StoredArray, flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Stored elements as ``stored``'s dtype in ``shape``, little-endian (a copy only to swap)."""
    if flat.dtype.byteorder == ">":
        flat = flat.astype(flat.dtype.newbyteorder("<"))
    values: np.ndarray = flat.view(stored.dtype.numpy).reshape(shape)
    return values


def _cut_short(stored: StoredArray) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        stored.path,
        f"the bytes of {stored.key!r} lie past the end of the file (it was truncated "
        "after it was opened; copy it again)",
    )


def local_path(path: str | os.PathLike[str]) -> Path:
    """A local path, ``file://`` removed."""
    return Path(os.fspath(path).removeprefix("file://"))
