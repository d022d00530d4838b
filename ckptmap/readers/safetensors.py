"""Read safetensors files (one file, or shards with a Hugging Face index) as a checkpoint.

Opening reads the 8-byte size and the JSON header of each file (and the
``model.safetensors.index.json`` of a sharded model), nothing of the data.
Every header is checked before anything is allocated from it: its declared
size against :data:`~ckptmap.formats.array_files.MAX_HEADER_BYTES` and the
file's size, its JSON (an object, no duplicate names), every entry's dtype
against the exact table :data:`~ckptmap.formats.array_files.SAFETENSORS_DTYPES`,
its shape, and its ``data_offsets``: inside the data, ``end - begin`` equal to
the shape's byte size, the entries tiling the data with no gap or overlap. A
damaged or hostile file fails with one :class:`CorruptCheckpointError` line
naming the file. The ``ckptmap`` manifest in ``__metadata__``
(:mod:`ckptmap.formats.array_files`), if present, gives TensorFlow dtypes and
slice layouts.

Example:
    >>> with open_safetensors("model.safetensors") as source:  # doctest: +SKIP
    ...     source.read("dense/kernel").shape
    (64, 32)
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckptmap.dtypes import BY_NAME, DType
from ckptmap.errors import (
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    UnsupportedInputError,
)
from ckptmap.formats.array_files import (
    HEADER_SIZE,
    MANIFEST_KEY,
    MAX_HEADER_BYTES,
    MAX_INDEX_BYTES,
    SAFETENSORS_DTYPES,
    ManifestEntry,
    ManifestError,
    byte_size,
    decode_manifest,
    json_object_no_duplicates,
    stored_dtype,
)
from ckptmap.readers._array_source import ArraySource, StoredArray, local_path, open_array_file
from ckptmap.storage.input_files import resolved_input

__all__ = ["SafetensorsHeader", "find_safetensors", "open_safetensors", "read_header"]

INDEX_SUFFIX = ".safetensors.index.json"
_U64 = struct.Struct("<Q")
_MAX_RANK = 64
_FIX = "the file is damaged or not a safetensors file; copy it again"


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """The parsed header of one safetensors file.

    Attributes:
        path: the file.
        metadata: ``__metadata__`` (strings to strings).
        entries: ``(key, dtype code, shape, begin, end)`` in the header's order.
        data_start: the file offset of the data (8 + header size).
    """

    path: Path
    metadata: dict[str, str]
    entries: tuple[tuple[str, str, tuple[int, ...], int, int], ...]
    data_start: int


def find_safetensors(path: str | os.PathLike[str]) -> Path | None:
    """The safetensors file or index JSON that ``path`` names, or ``None``.

    ``path`` may be a ``.safetensors`` file, a ``*.safetensors.index.json``
    file, or a folder holding ``model.safetensors.index.json``,
    ``model.safetensors``, or exactly one of either kind. Reads no file.
    """
    found = local_path(path)
    if not found.is_dir():  # any kind of file: opening it refuses what is not a regular file
        ok = found.name.endswith((".safetensors", INDEX_SUFFIX))
        return found if ok and (found.exists() or found.is_symlink()) else None
    for pattern in ("model" + INDEX_SUFFIX, "*" + INDEX_SUFFIX, "model.safetensors"):
        matches = sorted(found.glob(pattern))
        if len(matches) == 1:
            return matches[0]
    singles = sorted(found.glob("*.safetensors"))
    return singles[0] if len(singles) == 1 else None


def open_safetensors(path: str | os.PathLike[str]) -> ArraySource:
    """Open a safetensors file, or a sharded model through its index JSON, reading headers only.

    Raises:
        MissingInputError: if there is no safetensors file at ``path``, or a
            shard the index names is missing.
        CorruptCheckpointError: if a header, the index or the manifest is damaged.
        UnsupportedInputError: if a tensor has a dtype TensorFlow lacks.
    """
    text = os.fspath(path)
    found = find_safetensors(path)
    if found is None:
        raise MissingInputError(text, "no .safetensors file or safetensors index here")
    files: dict[Path, set[str] | None] = (
        dict(_read_index(found)) if found.name.endswith(INDEX_SUFFIX) else {found: None}
    )
    arrays: list[StoredArray] = []
    names: set[str] = set()
    manifest_names: set[str] = set()
    for file, listed in files.items():
        header = read_header(file)
        got = {e[0] for e in header.entries}
        if listed is not None and got != listed:
            extra = sorted(got ^ listed)[:3]
            raise CorruptCheckpointError(
                file, f"holds other tensors than the index {found.name} lists ({extra}; {_FIX})"
            )
        clash = got & names
        if clash:
            raise CorruptCheckpointError(file, f"tensor {sorted(clash)[0]!r} is in two shards")
        names |= got
        shard_arrays, manifest_name = _arrays_of(header)
        arrays += shard_arrays
        manifest_names |= {manifest_name} if manifest_name else set()
    stem = found.name.removesuffix(INDEX_SUFFIX).removesuffix(".safetensors")
    name = manifest_names.pop() if len(manifest_names) == 1 else stem
    return ArraySource("safetensors", text, str(found), name, arrays)


def read_header(path: Path) -> SafetensorsHeader:
    """Parse and check the header of one safetensors file (reads the header only).

    Raises:
        MissingInputError: if the file does not exist.
        CorruptCheckpointError: if the header is not a valid safetensors header.
        InputError: if the file cannot be read.
    """
    try:
        with open_array_file(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size < HEADER_SIZE:
                raise CorruptCheckpointError(path, f"is {size} bytes, shorter than a header")
            (length,) = _U64.unpack(file.read(HEADER_SIZE))
            if length > MAX_HEADER_BYTES or HEADER_SIZE + length > size:
                raise CorruptCheckpointError(
                    path,
                    f"declares a {length}-byte header in a {size}-byte file "
                    f"(at most {MAX_HEADER_BYTES}; {_FIX})",
                )
            raw = file.read(length)
    except MissingInputError:
        raise MissingInputError(path, "safetensors file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from err
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=json_object_no_duplicates)
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptCheckpointError(path, f"the header is not JSON ({err}; {_FIX})") from None
    if not isinstance(body, dict):
        raise CorruptCheckpointError(path, f"the header is not a JSON object ({_FIX})")
    metadata = body.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CorruptCheckpointError(path, f"__metadata__ is not strings to strings ({_FIX})")
    data_size = size - HEADER_SIZE - length
    entries = tuple(_entry(path, key, item) for key, item in body.items())
    _check_tiling(path, entries, data_size)
    return SafetensorsHeader(path, metadata, entries, HEADER_SIZE + length)


def _entry(path: Path, key: str, item: Any) -> tuple[str, str, tuple[int, ...], int, int]:
    where = f"tensor {key!r}"
    if not isinstance(item, dict) or set(item) != {"dtype", "shape", "data_offsets"}:
        raise CorruptCheckpointError(
            path, f"{where}: an entry needs exactly dtype, shape and data_offsets ({_FIX})"
        )
    code, shape, offsets = item["dtype"], item["shape"], item["data_offsets"]
    if code not in SAFETENSORS_DTYPES:
        known = ", ".join(SAFETENSORS_DTYPES)
        raise UnsupportedInputError(
            f"{path}: {where} has dtype {code!r}, which TensorFlow has no type for "
            f"(ckptmap reads {known})"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_RANK
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise CorruptCheckpointError(path, f"{where}: bad shape {shape!r} ({_FIX})")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise CorruptCheckpointError(path, f"{where}: bad data_offsets {offsets!r} ({_FIX})")
    dims = tuple(shape)
    need = byte_size(BY_NAME[SAFETENSORS_DTYPES[code]], dims)
    if offsets[1] - offsets[0] != need:
        raise CorruptCheckpointError(
            path,
            f"{where}: data_offsets {offsets} hold {offsets[1] - offsets[0]} bytes, but "
            f"{code} {list(dims)} needs {need} ({_FIX})",
        )
    return key, code, dims, offsets[0], offsets[1]


def _check_tiling(
    path: Path, entries: tuple[tuple[str, str, tuple[int, ...], int, int], ...], data_size: int
) -> None:
    """The entries must cover the data exactly, in order of their offsets."""
    position = 0
    for key, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else "leaves a gap before it"
            raise CorruptCheckpointError(
                path, f"tensor {key!r}: data_offsets start at {begin}, which {what} ({_FIX})"
            )
        position = end
    if position != data_size:
        raise CorruptCheckpointError(
            path,
            f"the header's tensors end at data byte {position}, but the file holds "
            f"{data_size} data bytes ({_FIX})",
        )


def _arrays_of(header: SafetensorsHeader) -> tuple[list[StoredArray], str]:
    """The arrays of one file and the checkpoint name its manifest gives (``""``: none)."""
    stored: dict[str, tuple[DType, tuple[int, ...]]] = {
        key: (BY_NAME[SAFETENSORS_DTYPES[code]], shape) for key, code, shape, _, _ in header.entries
    }
    manifest: dict[str, ManifestEntry] = {}
    name = ""
    text = header.metadata.get(MANIFEST_KEY)
    if text is not None:
        try:
            name, manifest = decode_manifest(text, stored)
        except ManifestError as err:
            raise CorruptCheckpointError(header.path, f"{err} ({_FIX})") from None
    arrays = []
    for key, _, shape, begin, _ in header.entries:
        dtype = stored[key][0]
        described = manifest.get(key)
        arrays.append(
            StoredArray(
                key=key,
                dtype=described.dtype if described else dtype,
                shape=shape,
                slices=described.slices if described else (),
                path=header.path,
                offset=header.data_start + begin,
                stored=stored_dtype(dtype).numpy.str,
            )
        )
    return arrays, name


def _read_index(path: Path) -> dict[Path, set[str]]:
    """The shards an index JSON names, with the keys of each (reads only the index)."""
    try:
        with open_array_file(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_INDEX_BYTES:
                raise CorruptCheckpointError(
                    path, f"is {size} bytes; a safetensors index has at most {MAX_INDEX_BYTES}"
                )
            text = file.read()
        body = json.loads(text, object_pairs_hook=json_object_no_duplicates)
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptCheckpointError(path, f"is not JSON ({err})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from err
    weight_map = body.get("weight_map") if isinstance(body, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CorruptCheckpointError(path, "has no 'weight_map' of tensor names to shard files")
    files: dict[Path, set[str]] = {}
    for key, name in weight_map.items():
        if not isinstance(name, str) or not _plain_name(name):
            raise CorruptCheckpointError(
                path, f"names {name!r} as the shard of {key!r}; shards are files next to the index"
            )
        shard = path.parent / name
        try:
            resolved_input(shard, path.parent)  # a regular file of the folder: checked, not opened
        except MissingInputError:
            raise MissingInputError(
                shard, f"the shard of {key!r} named by {path.name} is missing"
            ) from None
        files.setdefault(shard, set()).add(key)
    return files


def _plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name
