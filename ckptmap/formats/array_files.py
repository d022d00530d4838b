"""Facts of the array-file formats ckptmap reads and writes: safetensors and npz.

Both formats hold plain arrays under string keys. What a TensorFlow checkpoint
knows beyond that (the TensorFlow dtype where two share one stored type, such
as ``qint8`` and ``int8``, and the slice layout of a partitioned variable) is
kept in a *manifest*, so that a round trip back to a TensorFlow checkpoint is
exact (docs/formats.md):

* safetensors: the JSON string ``__metadata__["ckptmap"]`` of the header (of
  every shard, for a sharded output);
* npz: the member ``ckptmap.json`` of the archive.

The manifest is optional on reading: a file written by another program is
read with the dtypes its header or ``.npy`` headers give, stored whole.

safetensors layout (https://github.com/huggingface/safetensors, README "Format"):
8 bytes little-endian ``u64`` header size ``N``, ``N`` bytes of UTF-8 JSON (an
object: ``"__metadata__"`` mapping strings to strings, and one entry
``{"dtype", "shape", "data_offsets": [begin, end]}`` per tensor, offsets
relative to the byte after the header), then the data. Numbers are
little-endian, C order; the entries tile the data exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ckptmap.dtypes import BY_NAME, DType
from ckptmap.errors import SliceSpecError
from ckptmap.split import SliceSpec

__all__ = [
    "HEADER_SIZE",
    "MANIFEST_FORMAT",
    "MANIFEST_KEY",
    "MAX_HEADER_BYTES",
    "MAX_INDEX_BYTES",
    "NPZ_MANIFEST",
    "SAFETENSORS_DTYPES",
    "ManifestEntry",
    "ManifestError",
    "decode_manifest",
    "encode_manifest",
    "safetensors_code",
    "shard_names",
    "stored_dtype",
]

HEADER_SIZE = 8  # the little-endian u64 before the JSON header
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on N
MAX_INDEX_BYTES = 100_000_000  # a sharded model's index JSON
MANIFEST_KEY = "ckptmap"  # in safetensors' __metadata__
NPZ_MANIFEST = "ckptmap.json"  # the member of an npz archive
MANIFEST_FORMAT = "ckptmap-arrays/1"

# safetensors dtype code -> the TensorFlow dtype read by default (one itemsize each).
SAFETENSORS_DTYPES: Mapping[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "F16": "float16",
    "BF16": "bfloat16",
    "U32": "uint32",
    "I32": "int32",
    "F32": "float32",
    "U64": "uint64",
    "I64": "int64",
    "F64": "float64",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
}
# TensorFlow dtypes stored as another one with the same bytes (the manifest names them).
_SAME_BYTES: Mapping[str, str] = {
    "qint8": "int8",
    "quint8": "uint8",
    "qint16": "int16",
    "quint16": "uint16",
    "qint32": "int32",
}
_CODE_OF = {tf: code for code, tf in SAFETENSORS_DTYPES.items()}


class ManifestError(ValueError):
    """The manifest is not one ckptmap wrote (the reader names the file)."""


def safetensors_code(dtype: DType) -> str | None:
    """The safetensors dtype code that stores ``dtype``'s bytes exactly; ``None`` if none does.

    Strings, complex numbers, the 4- and 2-bit types and the ``fnuz`` float8
    kinds have none.
    """
    return _CODE_OF.get(_SAME_BYTES.get(dtype.name, dtype.name))


def stored_dtype(dtype: DType) -> DType:
    """The dtype whose numpy form holds ``dtype``'s bytes in an ``.npy`` member.

    numpy's own types are stored as they are (``qint8`` as ``int8``); the
    ml_dtypes types (``bfloat16``, float8, ``int4``...) as the unsigned integer
    of their size, so any numpy can load them.
    """
    if dtype.numpy_spec.startswith("ml_dtypes:"):
        return BY_NAME[f"uint{8 * dtype.itemsize}"]
    return BY_NAME[_SAME_BYTES.get(dtype.name, dtype.name)]


def shard_names(stem: str, count: int) -> list[str]:
    """Hugging Face style shard names: ``model-00001-of-00003.safetensors``, ..."""
    return [f"{stem}-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


# -- the manifest -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What the manifest says about one key.

    Attributes:
        dtype: the TensorFlow dtype of the tensor.
        slices: its slice layout in the checkpoint it came from (empty: whole).
    """

    dtype: DType
    slices: tuple[SliceSpec, ...] = ()


def encode_manifest(source: str, name: str, entries: Iterable[tuple[str, ManifestEntry]]) -> str:
    """The manifest as compact JSON text.

    Args:
        source: the checkpoint the arrays came from, as the user wrote it.
        name: that checkpoint's file name (``model.ckpt-100``).
        entries: ``(key, entry)`` per array.
    """
    tensors = {
        key: {"dtype": e.dtype.name, "slices": [s.format() for s in e.slices]} for key, e in entries
    }
    body = {"format": MANIFEST_FORMAT, "source": source, "name": name, "tensors": tensors}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


_NAME = re.compile(r"[^/\\\x00]{0,255}")


def decode_manifest(
    text: str, stored: Mapping[str, tuple[DType, tuple[int, ...]]]
) -> tuple[str, dict[str, ManifestEntry]]:
    """Parse and check a manifest against the arrays actually stored.

    Args:
        text: the manifest's JSON text.
        stored: per key, the stored dtype and shape.

    Returns:
        The original checkpoint's name (``""`` if unknown) and an entry per
        key the manifest describes.

    Raises:
        ManifestError: if it is not a manifest, names a key that is not
            stored, gives a dtype whose bytes differ from the stored ones, or a
            slice layout that does not tile the stored shape.
    """
    from ckptmap.split import check_tiling

    try:
        body = json.loads(text)
    except ValueError as err:
        raise ManifestError(f"the ckptmap manifest is not JSON ({err})") from None
    if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"the ckptmap manifest is not of format {MANIFEST_FORMAT!r}")
    name, tensors = body.get("name", ""), body.get("tensors")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or not isinstance(tensors, dict):
        raise ManifestError("the ckptmap manifest has no valid 'name' and 'tensors'")
    out: dict[str, ManifestEntry] = {}
    for key, item in tensors.items():
        if key not in stored:
            raise ManifestError(f"the ckptmap manifest names {key!r}, which is not stored")
        if not isinstance(item, dict):
            raise ManifestError(f"the ckptmap manifest entry of {key!r} is not an object")
        dtype, shape = stored[key]
        out[key] = ManifestEntry(_manifest_dtype(key, item.get("dtype"), dtype), ())
        raw_slices = item.get("slices", [])
        if not isinstance(raw_slices, list) or not all(isinstance(s, str) for s in raw_slices):
            raise ManifestError(f"the ckptmap manifest gives bad slices for {key!r}")
        try:
            slices = tuple(SliceSpec.parse(s) for s in raw_slices)
            if slices:
                check_tiling(slices, shape)
        except SliceSpecError as err:
            raise ManifestError(f"the slices of {key!r} in the ckptmap manifest: {err}") from None
        out[key] = ManifestEntry(out[key].dtype, slices)
    return name, out


def _manifest_dtype(key: str, name: object, stored: DType) -> DType:
    """The manifest's dtype for ``key``, accepted only if its bytes are the stored ones."""
    dtype = BY_NAME.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise ManifestError(f"the ckptmap manifest gives {key!r} an unknown dtype {name!r}")
    if dtype != stored and stored not in (stored_dtype(dtype), _plain(dtype)):
        raise ManifestError(
            f"the ckptmap manifest says {key!r} is {dtype.name}, but it is stored as {stored.name}"
        )
    return dtype


def _plain(dtype: DType) -> DType:
    return BY_NAME[_SAME_BYTES.get(dtype.name, dtype.name)]


def byte_size(dtype: DType, shape: Iterable[int]) -> int:
    """Bytes of a dense tensor: elements times the item size."""
    return math.prod(int(d) for d in shape) * dtype.itemsize


def json_object_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` that refuses duplicate names."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ManifestError(f"the name {key!r} appears twice in one JSON object")
        out[key] = value
    return out
