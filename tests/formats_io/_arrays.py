"""Array files written by their own producers (the safetensors package, numpy) from the goldens.

Each helper writes the tensors of a golden fixture (TensorFlow's own reading of
it) that the format can hold, with the ckptmap manifest (TensorFlow dtype,
slice layout taken from the TF-written checkpoint) so the result reads back
with the fixture's dtypes and partitions.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from helpers import Golden

from ckptmap.dtypes import dtype_from_name
from ckptmap.formats.array_files import (
    MANIFEST_KEY,
    NPZ_MANIFEST,
    ManifestEntry,
    encode_manifest,
    safetensors_code,
    stored_dtype,
)
from ckptmap.readers.source import open_source

# numpy (and so safetensors.numpy) can save these ml_dtypes types; the float8 kinds it cannot.
_SAFETENSORS_SAVABLE = {"bfloat16"}


def safetensors_part(golden: Golden) -> Golden:
    """The golden's tensors a safetensors file can hold and ``safetensors.numpy`` can save."""
    kept = []
    for t in golden.tensors:
        dtype = dtype_from_name(t.dtype)
        ml = dtype.numpy_spec.startswith("ml_dtypes:")
        if safetensors_code(dtype) and (not ml or dtype.name in _SAFETENSORS_SAVABLE):
            kept.append(t)
    return Golden(golden.json_path, golden.prefix, kept)


def npz_part(golden: Golden) -> Golden:
    """The golden's tensors an npz archive holds (all but strings)."""
    return Golden(
        golden.json_path, golden.prefix, [t for t in golden.tensors if t.dtype != "string"]
    )


def _manifest(golden: Golden) -> str:
    with open_source(golden.prefix) as source:
        specs = source.specs()
        url, name = source.url, source.name
    entries = [
        (t.name, ManifestEntry(specs[t.name].dtype, specs[t.name].slices)) for t in golden.tensors
    ]
    return encode_manifest(url, name, entries)


def write_safetensors(golden: Golden, path: Path) -> Path:
    from safetensors.numpy import save_file

    tensors = {t.name: np.array(t.value, order="C").view(_plain(t.dtype)) for t in golden.tensors}
    save_file(tensors, path, metadata={MANIFEST_KEY: _manifest(golden)})
    return path


def write_npz(golden: Golden, path: Path, *, compressed: bool = False) -> Path:
    save = np.savez_compressed if compressed else np.savez
    arrays = {
        t.name: np.array(t.value, order="C").view(stored_dtype(dtype_from_name(t.dtype)).numpy)
        for t in golden.tensors
    }
    save(path, **arrays)  # type: ignore[arg-type]
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(NPZ_MANIFEST, _manifest(golden))
    return path


def _plain(name: str) -> np.dtype:
    dtype = dtype_from_name(name)
    if dtype.name == "bfloat16":
        return dtype.numpy
    return stored_dtype(dtype).numpy
