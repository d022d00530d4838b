"""The layout of a zarr v3 store written by ``ckptmap convert``: its one codec.

The writer (:mod:`ckptmap.writers.zarr3`) and the reader
(:mod:`ckptmap.readers.zarr_store`) both take every fact about the store from
here (docs/convert.md):

* the root of the store is a zarr group whose ``zarr.json`` carries the
  manifest in ``attributes["ckptmap"]`` (:func:`manifest_metadata`,
  :func:`parse_manifest`): the format, the source checkpoint and one entry per
  key (:class:`ZarrArrayInfo`); it is written last, so its presence means the
  store is complete; a marker key (:data:`INCOMPLETE_MARKER`) stands while a
  store at a URL is being written;
* one node per key sits directly under the root, named by
  :func:`array_paths`, and carries its entry (without ``path``) plus
  ``format`` and ``source`` in its attributes (:meth:`ZarrArrayInfo.attributes`);
* the node is a zarr array of the key's dtype (``storage: "native"``), a
  ``uint8`` array of the bytes as TensorFlow stores them for dtypes
  tensorstore's zarr3 driver lacks (``storage: "bytes"``), or, for strings, a
  group with a ``lengths`` array (``uint64``, the tensor's shape) and a
  ``data`` array (``uint8``, every element's bytes in C order;
  ``storage: "strings"``) (:func:`storage_of`, :func:`expected_layout`).

Nothing here opens a store or imports tensorstore.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ckptmap.dtypes import DType, dtype_from_name
from ckptmap.errors import CkptmapError, CorruptCheckpointError
from ckptmap.split import SliceSpec

__all__ = [
    "FIX_STORE",
    "FORMAT",
    "INCOMPLETE_MARKER",
    "MAX_NAME_BYTES",
    "OCDBT_MANIFEST",
    "ROOT_METADATA",
    "STORAGE_BYTES",
    "STORAGE_NATIVE",
    "STORAGE_STRINGS",
    "STRING_DATA",
    "STRING_LENGTHS",
    "ZARR3_DATA_TYPES",
    "Manifest",
    "ZarrArrayInfo",
    "array_path",
    "array_paths",
    "decode_key",
    "encode_key",
    "expected_layout",
    "group_metadata",
    "manifest_metadata",
    "parse_manifest",
    "storage_of",
]

FORMAT = "ckptmap-zarr3/1"  # attributes["ckptmap"]["format"] of the root group
ROOT_METADATA = "zarr.json"  # zarr v3: a node's metadata document
OCDBT_MANIFEST = "manifest.ocdbt"  # the file at the root of an OCDBT database
INCOMPLETE_MARKER = "ckptmap-incomplete"  # written first, removed after the manifest
STORAGE_NATIVE = "native"
STORAGE_BYTES = "bytes"
STORAGE_STRINGS = "strings"
STRING_LENGTHS = "lengths"
STRING_DATA = "data"
MAX_NAME_BYTES = 200  # node names stay well below the 255-byte file-name limit
FIX_STORE = "the store is damaged or was not written by `ckptmap convert`; convert again"
# The data types tensorstore's zarr3 driver accepts (tensorstore 0.1.86); a TF dtype
# whose numpy name is not here is stored as its raw bytes (``storage: "bytes"``).
ZARR3_DATA_TYPES = frozenset(
    {
        "bool", "int2", "int4", "int8", "uint8", "int16", "uint16", "int32", "uint32",
        "int64", "uint64", "float8_e3m4", "float8_e4m3fn", "float8_e4m3fnuz",
        "float8_e4m3b11fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
        "float4_e2m1fn", "float16", "bfloat16", "float32", "float64", "complex64",
        "complex128",
    }
)  # fmt: skip
_HASH_CHARS = 16
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_RESERVED = frozenset({ROOT_METADATA, OCDBT_MANIFEST, INCOMPLETE_MARKER, "c", "d"})
_STORAGES = (STORAGE_NATIVE, STORAGE_BYTES, STORAGE_STRINGS)


# -- node paths ------------------------------------------------------------------


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:_HASH_CHARS]


def array_path(key: str) -> str:
    """The node name of ``key`` before collisions are resolved (:func:`array_paths`).

    ``/`` becomes ``.``; every byte outside ``[A-Za-z0-9_-]`` (``.`` and ``%``
    included) becomes ``%XX``, so the name is a single, portable path
    component. A name longer than ``MAX_NAME_BYTES`` is cut and ends in ``~``
    and a hash of the key.

    Example:
        >>> array_path("ffm/dense_1/kernel/Adam")
        'ffm.dense_1.kernel.Adam'
        >>> array_path("a.b/c d")
        'a%2Eb.c%20d'
    """
    out: list[str] = []
    for byte in key.encode("utf-8", "surrogateescape"):
        if byte in _SAFE:
            out.append(chr(byte))
        elif byte == 0x2F:  # "/"
            out.append(".")
        else:
            out.append(f"%{byte:02X}")
    name = "".join(out)
    if name.startswith(".") or name.startswith("__"):  # hidden, or reserved by zarr
        first = "%2F" if name[0] == "." else "%5F"
        name = first + name[1:]
    if len(name) > MAX_NAME_BYTES or name in _RESERVED:
        name = f"{name[: MAX_NAME_BYTES - _HASH_CHARS - 1]}~{_key_hash(key)}"
    return name


def array_paths(keys: Sequence[str]) -> dict[str, str]:
    """The node name of every key: :func:`array_path`, made unique ignoring case.

    Keys whose names differ only in case (``case/Kernel``, ``case/kernel``)
    all get ``~`` and a hash of the key appended, so a case-insensitive file
    system keeps them apart.
    """
    names = {key: array_path(key) for key in keys}
    folded: dict[str, int] = {}
    for name in names.values():
        folded[name.lower()] = folded.get(name.lower(), 0) + 1
    return {
        key: name if folded[name.lower()] == 1 else f"{name}~{_key_hash(key)}"
        for key, name in names.items()
    }


# -- keys and dtypes ----------------------------------------------------------------


def encode_key(key: str) -> dict[str, str]:
    """A key as JSON: ``{"key": ...}``, or ``{"key_hex": ...}`` for non-UTF-8 bytes."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return {"key_hex": key.encode("utf-8", "surrogateescape").hex()}
    return {"key": key}


def decode_key(attrs: dict[str, Any]) -> str:
    """The key stored in a manifest entry or array attributes (``key`` or ``key_hex``)."""
    if "key_hex" in attrs:
        return bytes.fromhex(attrs["key_hex"]).decode("utf-8", "surrogateescape")
    key = attrs["key"]
    if not isinstance(key, str):
        raise TypeError("key is not a string")
    return key


def storage_of(dtype: DType) -> str:
    """How a TF dtype is stored: ``native``, ``bytes`` (no zarr3 type) or ``strings``."""
    if dtype.is_string:
        return STORAGE_STRINGS
    return STORAGE_NATIVE if dtype.numpy.name in ZARR3_DATA_TYPES else STORAGE_BYTES


# -- the manifest -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZarrArrayInfo:
    """What the manifest says about one key.

    Attributes:
        key: the checkpoint key.
        path: the node under the store's root.
        dtype: the TensorFlow dtype.
        shape: the full shape.
        slices: the slice layout of the original checkpoint (empty: not sliced).
        storage: ``native``, ``bytes`` or ``strings`` (see the module docstring).
    """

    key: str
    path: str
    dtype: DType
    shape: tuple[int, ...]
    slices: tuple[SliceSpec, ...]
    storage: str

    @classmethod
    def of(
        cls, key: str, path: str, dtype: DType, shape: Sequence[int], slices: Sequence[SliceSpec]
    ) -> ZarrArrayInfo:
        """The entry of a tensor about to be written (its storage follows its dtype)."""
        return cls(key, path, dtype, tuple(int(d) for d in shape), tuple(slices), storage_of(dtype))

    def _described(self) -> dict[str, Any]:
        return {
            **encode_key(self.key),
            "dtype": self.dtype.name,
            "shape": list(self.shape),
            "slices": [spec.format() for spec in self.slices],
            "storage": self.storage,
        }

    def to_json(self) -> dict[str, Any]:
        """The entry as it appears in the manifest's ``arrays``."""
        return {**self._described(), "path": self.path}

    def attributes(self, source: str) -> dict[str, Any]:
        """The ``attributes`` of the key's node: its entry without ``path``, format, source."""
        return {"ckptmap": {**self._described(), "format": FORMAT, "source": source}}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> ZarrArrayInfo:
        """Parse one manifest entry.

        Raises:
            ValueError, KeyError, TypeError, CkptmapError: if it is malformed
                (:func:`parse_manifest` reports them as a damaged store).
        """
        shape = tuple(int(d) for d in entry["shape"])
        slices = tuple(SliceSpec.parse(s) for s in entry["slices"])
        if any(s.full_shape != shape for s in slices):
            raise ValueError(
                f"a slice of {entry.get('key')!r} does not belong to shape {list(shape)}"
            )
        storage = entry["storage"]
        if storage not in _STORAGES:
            raise ValueError(f"unknown storage {storage!r}")
        path = str(entry["path"])
        if not path or path.startswith(".") or any(c in path for c in "/\\\x00"):
            # array_path writes one name inside the store's root, never a path out of it
            raise ValueError(
                f"the node {path!r} of {entry.get('key')!r} is not a name in the store"
            )
        return cls(
            decode_key(entry),
            path,
            dtype_from_name(entry["dtype"]),
            shape,
            slices,
            storage,
        )


def expected_layout(info: ZarrArrayInfo, path: str) -> tuple[tuple[int, ...] | None, str]:
    """The shape (``None``: any length) and zarr data type of the node ``path`` of ``info``.

    ``path`` is ``info.path`` for the key's array, or ``info.path`` followed by
    ``/lengths`` or ``/data`` for the two arrays of a string tensor.
    """
    if info.storage == STORAGE_STRINGS:
        if path.endswith(f"/{STRING_LENGTHS}"):
            return info.shape, "uint64"
        return None, "uint8"
    if info.storage == STORAGE_BYTES:
        return info.shape, "uint8"
    return info.shape, info.dtype.numpy.name


def group_metadata(attributes: dict[str, Any]) -> bytes:
    """The ``zarr.json`` of a string tensor's node: a group carrying the key's attributes."""
    return json.dumps(_group(attributes)).encode()


def manifest_metadata(source: str, arrays: Sequence[ZarrArrayInfo]) -> bytes:
    """The root ``zarr.json``: a group whose attributes hold the manifest."""
    manifest = {"format": FORMAT, "source": source, "arrays": [a.to_json() for a in arrays]}
    return json.dumps(_group({"ckptmap": manifest}), indent=1).encode()


def _group(attributes: dict[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest.

    Attributes:
        source: the checkpoint the store was converted from (``""`` if not recorded).
        arrays: the entry of every key, by key.
    """

    source: str
    arrays: dict[str, ZarrArrayInfo]


def parse_manifest(where: str, raw: bytes) -> Manifest:
    """Parse the root ``zarr.json`` found at ``where``.

    Raises:
        CorruptCheckpointError: if it is not a manifest of this format.
    """
    try:
        manifest = json.loads(raw)["attributes"]["ckptmap"]
        _check_format(where, manifest["format"])
        infos = [ZarrArrayInfo.from_json(entry) for entry in manifest["arrays"]]
        source = str(manifest.get("source", ""))
    except CorruptCheckpointError:
        raise
    except CkptmapError as err:
        raise CorruptCheckpointError(
            where, f"the manifest is invalid: {err} ({FIX_STORE})"
        ) from err
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CorruptCheckpointError(
            where, f"the manifest is missing or invalid ({type(err).__name__}: {err}; {FIX_STORE})"
        ) from err
    return Manifest(source, {info.key: info for info in infos})


def _check_format(where: str, found: object) -> None:
    if found != FORMAT:
        raise CorruptCheckpointError(
            where, f"unknown store format {found!r}, expected {FORMAT!r} (upgrade ckptmap)"
        )
