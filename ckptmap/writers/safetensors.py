"""Write a checkpoint as safetensors: one file, or shards with a Hugging Face index.

Every key becomes one tensor under the same name (``/`` stays: safetensors
keys are any string); partitioned variables are merged, dtypes are mapped
exactly (:func:`~ckptmap.formats.array_files.safetensors_code`: ``bfloat16`` is
``BF16``, ``float8_e4m3fn`` is ``F8_E4M3``, ``qint8`` is ``I8``...). Strings,
complex numbers and the types safetensors has no code for are refused, or
left out with ``skip_unsupported``.

Up to ``max_shard_size`` bytes of tensors go into ``<stem>.safetensors``;
beyond that the tensors are cut, in key order, into
``<stem>-00001-of-0000N.safetensors`` shards plus
``<stem>.safetensors.index.json`` (``{"metadata": {"total_size": ...},
"weight_map": {key: shard}}``); a tensor larger than the limit gets a shard of
its own. Each file's ``__metadata__`` holds ``"format": "pt"`` (what Hugging Face
loaders expect) and the ckptmap manifest of its own keys (TF dtype, slice
layout, source; :mod:`ckptmap.formats.array_files`), so a round trip back to a
TensorFlow checkpoint is exact.

Streaming: sizes are known from the source's index, so each file's header is
written first and the tensors' bytes are copied after it
(:class:`~ckptmap.writers._tensor_bytes.TensorBytes`: kernel copies of the
stored bytes where the layout and byte order allow, CRC32C checked). Files are
staged in a :class:`~ckptmap.writers._protocol.Commit`; the caller commits.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ckptmap.errors import OutputError, UnsupportedInputError
from ckptmap.formats.array_files import (
    HEADER_SIZE,
    MANIFEST_KEY,
    byte_size,
    safetensors_code,
    shard_names,
)
from ckptmap.writers._array_output import ArrayFileResult, manifest_of, supported_specs
from ckptmap.writers._tensor_bytes import (
    DEFAULT_BLOCK_BYTES,
    TensorBytes,
    Writeback,
    pwrite_all,
)
from ckptmap.writers.shard_cut import starts_new_shard

if TYPE_CHECKING:
    from ckptmap.readers.source import Source
    from ckptmap.spec import TensorSpec
    from ckptmap.writers._protocol import Commit

__all__ = ["DEFAULT_MAX_SHARD_SIZE", "INDEX_SUFFIX", "plan_shards", "write_safetensors"]

DEFAULT_MAX_SHARD_SIZE = 5 * 1000**3  # 5 GB, as Hugging Face's save_pretrained
INDEX_SUFFIX = ".safetensors.index.json"
_METADATA = "__metadata__"
# The page cache keeps big files in folios of up to 2 MiB; a kernel copy whose source and
# output offsets agree modulo that moves whole folios, ~1.4x faster (bench/README.md).
_COPY_ALIGN = 2 * 1024 * 1024
_ALIGN_FROM = 256 * 1024 * 1024  # pad only a file of this many kernel-copied bytes: <= 0.8%


def plan_shards(sizes: Mapping[str, int], max_shard_size: int) -> list[list[str]]:
    """Keys cut into shards in their order, each at most ``max_shard_size`` bytes of tensors.

    A tensor larger than the limit is a shard of its own; no keys: one empty shard.

    Example:
        >>> plan_shards({"a": 6, "b": 5, "c": 4, "d": 20}, 10)
        [['a'], ['b', 'c'], ['d']]
    """
    shards: list[list[str]] = [[]]
    used = 0
    for key, size in sizes.items():
        if starts_new_shard(used, size, max_shard_size):
            shards.append([])
            used = 0
        shards[-1].append(key)
        used += size
    return shards


def write_safetensors(
    source: Source,
    output: Commit,
    stem: str,
    *,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    skip_unsupported: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> ArrayFileResult:
    """Stage ``source`` as safetensors file(s) named after ``stem`` in ``output``.

    Raises:
        UnsupportedInputError: for tensors safetensors cannot hold (without
            ``skip_unsupported``), or a key named ``__metadata__``.
        CorruptCheckpointError, MissingInputError: if the source is damaged.
        OutputError: if a file cannot be written.
    """
    specs, skipped = supported_specs(
        source.specs(),
        lambda d: safetensors_code(d) is not None,
        format_name="safetensors",
        where=source.where,
        skip_unsupported=skip_unsupported,
    )
    if _METADATA in specs:
        raise UnsupportedInputError(
            f"{source.where}: a tensor is named {_METADATA!r}, which safetensors reserves"
        )
    sizes = {k: byte_size(s.dtype, s.shape) for k, s in specs.items()}
    shards = plan_shards(sizes, max_shard_size)
    names = [f"{stem}.safetensors"] if len(shards) == 1 else shard_names(stem, len(shards))
    result = ArrayFileResult(skipped=skipped)
    stream = TensorBytes(source, block_bytes)
    try:
        for name, keys in zip(names, shards, strict=True):
            part = {k: specs[k] for k in keys}
            result.file_bytes += _write_file(source, output, name, part, stream, result)
            result.paths.update(dict.fromkeys(keys, name))
            result.files.append(name)
        stream.finish()  # every stored CRC32C checked before anything can be committed
    finally:
        stream.close()
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": sum(sizes.values())},
            "weight_map": dict(sorted(result.paths.items())),
        }
        raw = (json.dumps(index, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        output.add_bytes(stem + INDEX_SUFFIX, raw)
        result.files.append(stem + INDEX_SUFFIX)
        result.file_bytes += len(raw)
    result.tensor_bytes = stream.tensor_bytes
    return result


def header_bytes(source: Source, specs: Mapping[str, TensorSpec]) -> tuple[bytes, dict[str, int]]:
    """The 8-byte size and JSON header of one file, padded to 8 bytes; each key's data offset."""
    header: dict[str, object] = {
        _METADATA: {"format": "pt", MANIFEST_KEY: manifest_of(source.url, source.name, specs)}
    }
    offsets: dict[str, int] = {}
    position = 0
    for key, spec in specs.items():
        code = safetensors_code(spec.dtype)
        size = byte_size(spec.dtype, spec.shape)
        header[key] = {
            "dtype": code,
            "shape": list(spec.shape),
            "data_offsets": [position, position + size],
        }
        offsets[key] = position
        position += size
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(HEADER_SIZE, "little") + raw, offsets


def _write_file(
    source: Source,
    output: Commit,
    name: str,
    specs: Mapping[str, TensorSpec],
    stream: TensorBytes,
    result: ArrayFileResult,
) -> int:
    """Stage one safetensors file: header first, then each tensor's bytes; its size."""
    head, offsets = header_bytes(source, specs)
    head = _padded_for_copies(head, offsets, stream)
    sizes = {k: byte_size(s.dtype, s.shape) for k, s in specs.items()}
    total = len(head) + sum(sizes.values())
    path = output.stage_path(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as err:
        raise OutputError(f"{output.where(name)}: cannot write ({err.strerror or err})") from err
    try:
        pwrite_all(fd, memoryview(head), 0)
        os.ftruncate(fd, total)
        with Writeback(fd) as writeback:  # the disk writes each tensor while the next is copied
            for key, offset in offsets.items():
                if stream.byte_copied(key):
                    result.byte_copied += 1
                else:
                    result.assembled += 1
                stream.copy_into(key, fd, len(head) + offset)
                writeback.start(len(head) + offset, sizes[key])
        os.fsync(fd)  # waits only for the writes still in flight
    except OSError as err:
        raise OutputError(f"{output.where(name)}: cannot write ({err.strerror or err})") from err
    finally:
        os.close(fd)
    return total


def _padded_for_copies(head: bytes, offsets: Mapping[str, int], stream: TensorBytes) -> bytes:
    """``head`` padded with spaces so most kernel-copied bytes keep their offset mod 2 MiB.

    A TensorFlow data file holds the tensors back to back in key order, as
    safetensors does, so one padding usually aligns every copy. The padding
    keeps the data 8-byte aligned and is at most 2 MiB, added only to files of
    at least 256 MiB of kernel-copied tensors; the safetensors format allows
    trailing spaces in the header.
    """
    weight: Counter[int] = Counter()
    for key, offset in offsets.items():
        for stored_at, tensor_at, size in stream.kernel_runs(key) or ():
            weight[(stored_at - offset - tensor_at) % _COPY_ALIGN] += size
    if weight.total() < _ALIGN_FROM:
        return head
    want = weight.most_common(1)[0][0]  # the data's start, mod _COPY_ALIGN
    pad = (want - len(head)) % _COPY_ALIGN
    if pad % 8:
        return head  # the stored offsets are not 8-byte aligned: keep the data aligned instead
    raw = head[HEADER_SIZE:] + b" " * pad
    return len(raw).to_bytes(HEADER_SIZE, "little") + raw
