"""Read an ``.npz`` archive (``numpy.savez``) as a checkpoint.

Opening reads the zip central directory and the ``.npy`` header of each
member, nothing of the data; pickled (``object``) arrays are refused, never
loaded. Each member ``<key>.npy`` is one tensor. A member stored without
compression is read as a read-only view of the memory-mapped archive; a
compressed one (``numpy.savez_compressed``) is inflated when read, after its
declared size was checked against its shape (no zip bomb). The member
``ckptmap.json``, if present, is the manifest of
:mod:`ckptmap.formats.array_files` (TensorFlow dtypes, slice layouts); other
members that are not ``.npy`` files are ignored.

Example:
    >>> with open_npz("model.npz") as source:  # doctest: +SKIP
    ...     source.keys()[:2]
    ['dense/bias', 'dense/kernel']
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap.dtypes import DType, dtype_from_numpy
from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    UnsupportedInputError,
)
from ckptmap.formats.array_files import (
    MAX_INDEX_BYTES,
    NPZ_MANIFEST,
    ManifestError,
    byte_size,
    decode_manifest,
)
from ckptmap.readers._array_source import ArraySource, StoredArray, local_path, open_array_file

if TYPE_CHECKING:
    from ckptmap.formats.array_files import ManifestEntry

__all__ = ["find_npz", "open_npz"]

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_MAX_NPY_HEADER = 10_000  # numpy's own default limit
_FIX = "the archive is damaged or not written by numpy.savez; copy it again"


def find_npz(path: str | os.PathLike[str]) -> Path | None:
    """The local ``.npz`` file ``path`` names, or ``None`` (reads nothing).

    ``path`` may be the file, or a folder holding ``model.npz`` (what ``ckptmap
    convert --to npz`` writes) or exactly one ``.npz`` file.
    """
    found = local_path(path)
    if not found.is_dir():  # any kind of file: opening it refuses what is not a regular file
        named = found.name.endswith(".npz") and (found.exists() or found.is_symlink())
        return found if named else None
    model = found / "model.npz"
    if model.exists() or model.is_symlink():
        return model
    singles = sorted(found.glob("*.npz"))
    return singles[0] if len(singles) == 1 else None


def open_npz(path: str | os.PathLike[str]) -> ArraySource:
    """Open an ``.npz`` archive, reading its directory and ``.npy`` headers only.

    Raises:
        MissingInputError: if there is no ``.npz`` file at ``path``.
        CorruptCheckpointError: if the archive, a member's header or the
            manifest is damaged.
        UnsupportedInputError: for pickled, string, structured or other
            arrays TensorFlow has no type for.
    """
    text = os.fspath(path)
    found = find_npz(path)
    if found is None:
        raise MissingInputError(text, "no .npz file here")
    try:
        with open_array_file(found) as file, zipfile.ZipFile(file) as archive:
            size = os.fstat(file.fileno()).st_size
            with open_array_file(found) as raw:
                headers = [
                    _member(found, archive, raw, info, size)
                    for info in archive.infolist()
                    if info.filename.endswith(".npy")
                ]
            manifest = _manifest(
                found, archive, {h[0].key: (h[0].dtype, h[0].shape) for h in headers}
            )
    except zipfile.BadZipFile as err:
        raise CorruptCheckpointError(found, f"is not a zip archive ({err}; {_FIX})") from None
    except OSError as err:
        raise InputError(f"{found}: cannot read ({err.strerror or err})") from err
    name, described = manifest
    arrays = []
    for stored, member in headers:
        entry = described.get(stored.key)
        if entry is not None:
            stored = StoredArray(
                stored.key,
                entry.dtype,
                stored.shape,
                entry.slices,
                stored.path,
                stored.offset,
                stored.stored,
                stored.fortran,
            )
        arrays.append((stored, member))
    members = {s.key: m for s, m in arrays}

    def load(stored: StoredArray) -> bytes:
        return _inflate(found, members[stored.key], stored)

    return ArraySource(
        "npz",
        text,
        str(found),
        name or found.name.removesuffix(".npz"),
        [a for a, _ in arrays],
        load,
    )


def _member(
    path: Path, archive: zipfile.ZipFile, raw: Any, info: zipfile.ZipInfo, size: int
) -> tuple[StoredArray, tuple[str, int]]:
    """One ``.npy`` member: where its data lie, checked against its declared sizes."""
    import numpy as np

    key = info.filename[: -len(".npy")]
    where = f"member {info.filename!r}"
    if info.flag_bits & 0x1:
        raise UnsupportedInputError(f"{path}: {where} is encrypted")
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                    member, max_header_size=_MAX_NPY_HEADER
                )
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                    member, max_header_size=_MAX_NPY_HEADER
                )
            data_in_member = member.tell()
    except (ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CorruptCheckpointError(path, f"{where}: not a .npy array ({err}; {_FIX})") from None
    tf_dtype = _tf_dtype(path, where, dtype)
    need = byte_size(tf_dtype, shape)
    if info.file_size != data_in_member + need:
        raise CorruptCheckpointError(
            path,
            f"{where}: holds {info.file_size - data_in_member} data bytes, but "
            f"{dtype.str} {list(shape)} needs {need} ({_FIX})",
        )
    offset: int | None = None
    if info.compress_type == zipfile.ZIP_STORED:
        raw.seek(info.header_offset)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        if signature != _LOCAL_SIGNATURE:
            raise CorruptCheckpointError(path, f"{where}: bad local header ({_FIX})")
        offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + data_in_member
        if offset + need > size:
            raise CorruptCheckpointError(
                path, f"{where}: its data end past the end of the archive ({_FIX})"
            )
    stored = StoredArray(
        key, tf_dtype, tuple(int(d) for d in shape), (), path, offset, dtype.str, bool(fortran)
    )
    return stored, (info.filename, data_in_member)


def _tf_dtype(path: Path, where: str, dtype: Any) -> DType:
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsupportedInputError(
            f"{path}: {where} is a {dtype} array, which ckptmap does not read "
            "(numbers and booleans only; pickled arrays are never loaded)"
        )
    try:
        return dtype_from_numpy(dtype)
    except CkptmapError as err:
        raise UnsupportedInputError(f"{path}: {where}: {err}") from None


def _manifest(
    path: Path, archive: zipfile.ZipFile, stored: dict[str, tuple[DType, tuple[int, ...]]]
) -> tuple[str, dict[str, ManifestEntry]]:
    try:
        info = archive.getinfo(NPZ_MANIFEST)
    except KeyError:
        return "", {}
    if info.file_size > MAX_INDEX_BYTES:
        raise CorruptCheckpointError(path, f"{NPZ_MANIFEST} is {info.file_size} bytes ({_FIX})")
    try:
        return decode_manifest(archive.read(info).decode("utf-8"), stored)
    except (ManifestError, UnicodeDecodeError) as err:
        raise CorruptCheckpointError(path, f"{NPZ_MANIFEST}: {err} ({_FIX})") from None


def _inflate(path: Path, member: tuple[str, int], stored: StoredArray) -> bytes:
    """The data bytes of a compressed member (its size was checked at open)."""
    name, skip = member
    need = byte_size(stored.dtype, stored.shape)
    try:
        with (
            open_array_file(path) as raw,
            zipfile.ZipFile(raw) as archive,
            archive.open(name) as file,
        ):
            file.read(skip)
            data = file.read(need)
    except zipfile.BadZipFile as err:
        raise CorruptCheckpointError(path, f"member {name!r}: {err} ({_FIX})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read member {name!r} ({err})") from err
    if len(data) != need:
        raise CorruptCheckpointError(path, f"member {name!r} ends early ({_FIX})")
    return data
