"""Write a checkpoint as an ``.npz`` archive (what ``numpy.savez`` writes, ``np.load`` reads).

Every key becomes the member ``<key>.npy`` (stored, not compressed, so the
archive can be read as memory maps); partitioned variables are merged. Each
member holds its elements little-endian: numpy's own types as they are
(``qint8`` as ``int8``, complex numbers too), the ml_dtypes types
(``bfloat16``, float8, ``int4``...) as the unsigned integer of their size
(:func:`~ckptmap.formats.array_files.stored_dtype`), so any numpy loads them.
The member ``ckptmap.json`` is the manifest (TF dtype, slice layout, source) that
makes a round trip back to a TensorFlow checkpoint exact. Strings are refused,
or left out with ``skip_unsupported``.

Streaming: each member is written as its ``.npy`` header followed by the
tensor's bytes, one block at a time
(:class:`~ckptmap.writers._tensor_bytes.TensorBytes`, CRC32C of TensorFlow
sources checked); zip64 records are used where sizes need them. The archive is
staged in a :class:`~ckptmap.writers._protocol.Commit`; the caller commits.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import TYPE_CHECKING

from ckptmap.errors import OutputError
from ckptmap.formats.array_files import NPZ_MANIFEST, byte_size, stored_dtype
from ckptmap.writers._array_output import ArrayFileResult, manifest_of, supported_specs
from ckptmap.writers._tensor_bytes import DEFAULT_BLOCK_BYTES, TensorBytes

if TYPE_CHECKING:
    from ckptmap.readers.source import Source
    from ckptmap.spec import TensorSpec
    from ckptmap.writers._protocol import Commit

__all__ = ["npy_header", "write_npz"]

_ZIP64_FROM = 1 << 31  # members this large get zip64 sizes from the start


def npy_header(spec: TensorSpec) -> bytes:
    """The ``.npy`` header of the member holding ``spec`` (C order, little-endian)."""
    import numpy as np

    stored = np.dtype(stored_dtype(spec.dtype).numpy)
    if stored.itemsize > 1:
        stored = stored.newbyteorder("<")
    header = {
        "descr": np.lib.format.dtype_to_descr(stored),
        "fortran_order": False,
        "shape": tuple(spec.shape),
    }
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue()


def write_npz(
    source: Source,
    output: Commit,
    name: str,
    *,
    skip_unsupported: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> ArrayFileResult:
    """Stage ``source`` as the npz archive ``name`` in ``output``.

    Raises:
        UnsupportedInputError: for string tensors (without ``skip_unsupported``).
        CorruptCheckpointError, MissingInputError: if the source is damaged.
        OutputError: if the archive cannot be written.
    """
    specs, skipped = supported_specs(
        source.specs(),
        lambda d: not d.is_string,
        format_name="npz",
        where=source.where,
        skip_unsupported=skip_unsupported,
    )
    result = ArrayFileResult(skipped=skipped, files=[name])
    path = output.stage_path(name)
    stream = TensorBytes(source, block_bytes)
    try:
        with open(path, "wb") as file:
            with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for key, spec in specs.items():
                    _write_member(archive, key, spec, stream, result)
                    result.paths[key] = name
                archive.writestr(NPZ_MANIFEST, manifest_of(source.url, source.name, specs))
            file.flush()
            os.fsync(file.fileno())
            result.file_bytes = file.tell()
    except OSError as err:
        raise OutputError(f"{output.where(name)}: cannot write ({err.strerror or err})") from err
    finally:
        stream.close()
    result.tensor_bytes = stream.tensor_bytes
    return result


def _write_member(
    archive: zipfile.ZipFile,
    key: str,
    spec: TensorSpec,
    stream: TensorBytes,
    result: ArrayFileResult,
) -> None:
    head = npy_header(spec)
    size = len(head) + byte_size(spec.dtype, spec.shape)
    info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    if stream.byte_copied(key):
        result.byte_copied += 1
    else:
        result.assembled += 1
    with archive.open(info, "w", force_zip64=size >= _ZIP64_FROM) as member:
        member.write(head)
        for block in stream.blocks(key):
            member.write(block)
