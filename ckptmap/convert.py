"""Export a TensorFlow checkpoint to a zarr v3 store (optionally inside OCDBT).

Every checkpoint key becomes one node directly under the store's root (named by
:func:`ckptmap.readers.zarr_store.array_paths`); partitioned tensors are merged
into one array, dtypes are kept (bfloat16 stays bfloat16), and the original
key, TensorFlow dtype, full shape, slice layout and source checkpoint are
stored as attributes of each node and in a manifest on the root group. The
layout and the read side are in :mod:`ckptmap.readers.zarr_store` and
``docs/convert.md``.

Streaming: data are read from the checkpoint's shard files with ``pread`` into
one reused buffer, one block of at most ``block_bytes`` per write (block
boundaries fall on chunk boundaries where the slice layout allows), so peak
memory is about one block plus tensorstore's encoding buffers, never the
checkpoint. The CRC32C of every stored tensor is checked on the way; a
mismatch aborts the conversion before anything is committed. String tensors
are read whole (they are small in practice).

Commit: a local output (a path or ``file://`` URL) is written into a temporary
sibling folder ``<out>.ckptmap-tmp-<token>`` and renamed into place at the end.
For other URLs a marker key ``ckptmap-incomplete`` is written first, the
arrays next, the root ``zarr.json`` with the manifest last, and the marker is
removed: a store is complete exactly when its manifest exists.

Example:
    >>> result = convert("fixtures/ffm_v1", "/tmp/ffm_v1.zarr")  # doctest: +SKIP
    >>> result.arrays
    28
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap._format import crc32c, mask_crc
from ckptmap.dtypes import DType
from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    OutputError,
    OutputExistsError,
    UsageError,
)
from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry, open_checkpoint
from ckptmap.readers.zarr_store import (
    FORMAT,
    INCOMPLETE_MARKER,
    OCDBT_MANIFEST,
    ROOT_METADATA,
    STORAGE_BYTES,
    STORAGE_NATIVE,
    STORAGE_STRINGS,
    STRING_DATA,
    STRING_LENGTHS,
    StoreLocation,
    array_paths,
    encode_key,
    is_zarr_store,
    local_kvstore,
    shared_context,
    store_location,
)
from ckptmap.split import slice_box
from ckptmap.writers._atomic import fsync_dir, make_folders, new_token, output_error, temp_path

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "TARGETS",
    "ZARR3_DATA_TYPES",
    "ConvertResult",
    "chunk_shape",
    "convert",
    "plan_blocks",
    "zarr_metadata",
]

log = logging.getLogger(__name__)

TARGETS = ("zarr3",)
MIB = 1024 * 1024
# A zarr chunk holds at most this many bytes (unless one element of the first axis is larger).
DEFAULT_CHUNK_BYTES = 8 * MIB
DEFAULT_BLOCK_BYTES = 16 * MIB  # one write moves at most this many bytes
MAX_IN_FLIGHT = 4  # writes running at once: memory is bounded by this many blocks
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

Box = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """What :func:`convert` wrote.

    Attributes:
        source: the checkpoint prefix that was converted.
        out: the store's location, as given.
        to: the store format (``zarr3``).
        ocdbt: whether the store is an OCDBT database.
        arrays: how many keys were written (one node each).
        tensor_bytes: bytes of tensor data read from the checkpoint.
        store_bytes: bytes the store takes on disk (local outputs), else ``None``.
        keys: the keys written, in key order, with their node paths.
    """

    source: Path
    out: str
    to: str
    ocdbt: bool
    arrays: int
    tensor_bytes: int
    store_bytes: int | None
    keys: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` report (docs/convert.md)."""
        return {
            "source": str(self.source),
            "out": self.out,
            "to": self.to,
            "ocdbt": self.ocdbt,
            "arrays": self.arrays,
            "tensor_bytes": self.tensor_bytes,
            "store_bytes": self.store_bytes,
            "paths": {key: path for key, path in self.keys},
        }


# -- pure layout helpers ----------------------------------------------------------


def chunk_shape(shape: Sequence[int], itemsize: int, chunk_bytes: int) -> tuple[int, ...]:
    """A chunk shape of at most ``chunk_bytes`` (when one element fits), cut on the first axes.

    A tensor that fits is one chunk. Otherwise the first axis whose inner
    block fits in ``chunk_bytes`` is cut into runs, leading axes get 1 and
    trailing axes stay whole. Zero-size dimensions get chunk length 1.

    Example:
        >>> chunk_shape((3276800, 64), 4, 8 * 1024 * 1024)
        (32768, 64)
    """
    shape = tuple(int(d) for d in shape)
    chunk = [max(1, d) for d in shape]
    for axis in range(len(shape)):
        inner = math.prod(chunk[axis + 1 :]) * itemsize
        if inner <= chunk_bytes:
            chunk[axis] = max(1, min(chunk[axis], chunk_bytes // max(1, inner)))
            break
        chunk[axis] = 1
    return tuple(chunk)


def plan_blocks(
    box: Box, itemsize: int, block_bytes: int, chunk: Sequence[int]
) -> Iterator[tuple[Box, int, int]]:
    """Cut the stored piece ``box`` (C order) into contiguous blocks of at most ``block_bytes``.

    Yields ``(block box, byte offset in the piece, byte count)``. Blocks are
    runs along the first axis whose inner part fits; along that axis they end
    on multiples of the chunk length where the block size allows, so whole
    chunks are written at once. A single element larger than ``block_bytes``
    is not possible (``itemsize <= 16``).
    """
    shape = [stop - start for start, stop in box]
    if not box or math.prod(shape) == 0:
        if not box:
            yield (), 0, itemsize
        return
    axis = next(a for a in range(len(shape)) if math.prod(shape[a + 1 :]) * itemsize <= block_bytes)
    inner = math.prod(shape[axis + 1 :]) * itemsize
    run = max(1, block_bytes // inner)
    step = run // chunk[axis] * chunk[axis] if run >= chunk[axis] else run
    start, stop = box[axis]
    cuts = [start]
    while cuts[-1] < stop:
        cuts.append(min(stop, (cuts[-1] // step + 1) * step))
    strides = [math.prod(shape[a + 1 :]) * itemsize for a in range(len(shape))]
    for outer in itertools.product(*(range(n) for n in shape[:axis])):
        base = sum(i * s for i, s in zip(outer, strides, strict=False))
        head = tuple((box[a][0] + i, box[a][0] + i + 1) for a, i in enumerate(outer))
        tail = box[axis + 1 :]
        for a, b in itertools.pairwise(cuts):
            offset = base + (a - start) * strides[axis]
            yield (*head, (a, b), *tail), offset, (b - a) * inner


def storage_of(dtype: DType) -> str:
    """How a TF dtype is stored: ``native``, ``bytes`` (no zarr3 type) or ``strings``."""
    if dtype.is_string:
        return STORAGE_STRINGS
    return STORAGE_NATIVE if dtype.numpy.name in ZARR3_DATA_TYPES else STORAGE_BYTES


def zarr_metadata(
    shape: Sequence[int],
    data_type: str,
    chunk_bytes: int,
    itemsize: int,
    attributes: dict[str, Any],
) -> dict[str, Any]:
    """The ``metadata`` of a zarr3 array spec (uncompressed, regular chunks)."""
    return {
        "shape": [int(d) for d in shape],
        "data_type": data_type,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": list(chunk_shape(shape, itemsize, chunk_bytes))},
        },
        "attributes": attributes,
    }


# -- the conversion ------------------------------------------------------------------


def convert(
    old: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str = "zarr3",
    ocdbt: bool = False,
    step: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    force: bool = False,
) -> ConvertResult:
    """Write the checkpoint ``old`` as a zarr v3 store at ``out``.

    Args:
        old: a model folder, checkpoint prefix or ``.index`` file.
        out: a local folder, a ``file://`` URL or another tensorstore kvstore
            URL (``memory://``, ``gs://``, ``s3://``).
        to: the store format; only ``"zarr3"``.
        ocdbt: put the arrays inside one OCDBT database at ``out``.
        step: with a model folder, convert the checkpoint of this global step.
        chunk_bytes: the largest zarr chunk, in bytes.
        block_bytes: the most bytes moved by one write (bounds memory).
        force: replace an existing store at ``out``.

    Returns:
        What was written.

    Raises:
        UsageError: for an unknown ``to`` or bad sizes.
        MissingInputError, CorruptCheckpointError, UnsupportedInputError: for
            a missing or damaged checkpoint (CRCs are checked while copying).
        OutputExistsError: if ``out`` exists and ``force`` is false.
        OutputError: if the store cannot be written, or ``out`` is a URL
            tensorstore does not understand.

    Example:
        >>> convert("fixtures/dtype_zoo/zoo", "/tmp/zoo.zarr", ocdbt=True)  # doctest: +SKIP
    """
    if to not in TARGETS:
        raise UsageError(f"unknown store format {to!r} (expected one of: {', '.join(TARGETS)})")
    if chunk_bytes < 1 or block_bytes < 1:
        raise UsageError("chunk_bytes and block_bytes must be positive numbers of bytes")
    try:
        location = store_location(out, ocdbt=ocdbt)
    except UsageError as err:
        raise OutputError(str(err)) from err
    with open_checkpoint(old, step=step) as ckpt:
        writer = _StoreWriter(ckpt, chunk_bytes, block_bytes)
        if location.local is not None:
            store_bytes: int | None = _convert_local(writer, location, force=force)
        else:
            _convert_url(writer, location, force=force)
            store_bytes = None
        return ConvertResult(
            source=ckpt.prefix,
            out=location.text,
            to=to,
            ocdbt=ocdbt,
            arrays=len(writer.paths),
            tensor_bytes=writer.tensor_bytes,
            store_bytes=store_bytes,
            keys=tuple(writer.paths.items()),
        )


def _convert_local(writer: _StoreWriter, location: StoreLocation, *, force: bool) -> int:
    """Write into a temporary sibling folder, then rename it to ``location.local``."""
    final = location.local
    assert final is not None  # noqa: S101 -- the caller checked; not input validation
    exists = final.exists() or final.is_symlink()
    if exists and not force:
        raise OutputExistsError(final, "already exists (pass --force to replace it)")
    if exists and not _replaceable(final):
        raise OutputError(
            f"{final}: is not a zarr store; refusing to replace it with --force "
            "(remove it yourself or choose another output path)"
        )
    token = new_token()
    tmp = temp_path(final, token)
    try:
        created = make_folders(final.parent)
    except OSError as err:
        raise output_error(final.parent, err, "cannot create the folder") from err
    try:
        writer.write(StoreLocation(location.text, tmp, local_kvstore(tmp), location.ocdbt))
        store_bytes = _folder_bytes(tmp)
        _swap_into_place(tmp, final, token, exists=exists)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            from ckptmap.writers._atomic import remove_empty_folders

            remove_empty_folders(created)
        raise
    return store_bytes


def _replaceable(path: Path) -> bool:
    """Whether ``--force`` may replace ``path``: a zarr store or an empty folder."""
    if path.is_dir() and not path.is_symlink():
        return is_zarr_store(path) or not any(path.iterdir())
    return False


def _swap_into_place(tmp: Path, final: Path, token: str, *, exists: bool) -> None:
    old = temp_path(final, token, ".old")
    try:
        if exists:
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            if exists:
                os.replace(old, final)
            raise
        fsync_dir(final.parent)
    except OSError as err:
        raise output_error(final, err, "cannot move the finished store into place") from err
    if exists:
        shutil.rmtree(old, ignore_errors=True)


def _folder_bytes(folder: Path) -> int:
    return sum(
        (Path(root) / name).stat().st_size for root, _, names in os.walk(folder) for name in names
    )


def _convert_url(writer: _StoreWriter, location: StoreLocation, *, force: bool) -> None:
    """Write in place: marker first, arrays, manifest last, then remove the marker."""
    found = _existing_state(location)
    if found is not None:
        if not force:
            raise OutputExistsError(location.text, f"{found} (pass --force to replace it)")
        if found == _OTHER_DATA:
            raise OutputError(
                f"{location.text}: holds data that is not a ckptmap store; refusing to "
                "replace it with --force (choose another location)"
            )
        plain = _kvstore(location.with_ocdbt(False), shared_context())
        _ts_run(plain.delete_range(_all_keys()), location.text, "cannot remove the old store")
    context = shared_context()
    root = _kvstore(location, context)
    _ts_run(root.write(INCOMPLETE_MARKER, b"ckptmap convert in progress\n"), location.text,
            "cannot write")  # fmt: skip
    writer.write(location, context)
    _ts_run(root.delete_range(_one_key(INCOMPLETE_MARKER)), location.text,
            "cannot remove the in-progress marker")  # fmt: skip


_OTHER_DATA = "holds other data"


def _existing_state(location: StoreLocation) -> str | None:
    """``None`` if nothing is at ``location``; else what is there, for messages."""
    context = shared_context()  # a probe: its caches are dropped before writing
    plain = _kvstore(location.with_ocdbt(False), context)
    names = (ROOT_METADATA, INCOMPLETE_MARKER, OCDBT_MANIFEST)
    present = {name for name in names if _exists(plain, name, location)}
    if OCDBT_MANIFEST in present:
        database = _kvstore(location.with_ocdbt(True), context)
        present |= {name for name in names[:2] if _exists(database, name, location)}
    if ROOT_METADATA in present:
        return "a store already exists here"
    if INCOMPLETE_MARKER in present:
        return "an interrupted conversion left an incomplete store here"
    with contextlib.suppress(CkptmapError):  # drivers that cannot list (http) are read-only anyway
        if _ts_run(plain.list(), location.text, "cannot list"):
            return _OTHER_DATA
    return None


def _exists(store: Any, key: str, location: StoreLocation) -> bool:
    return bool(_ts_run(store.read(key), location.text, "cannot read").state == "value")


def _all_keys() -> Any:
    import tensorstore as ts

    return ts.KvStore.KeyRange()


def _one_key(key: str) -> Any:
    import tensorstore as ts

    return ts.KvStore.KeyRange(key, key + "\0")


def _kvstore(location: StoreLocation, context: Any) -> Any:
    import tensorstore as ts

    return _ts_run(
        ts.KvStore.open(location.kvstore(), context=context), location.text, "cannot open"
    )


def _ts_run(future: Any, where: str, action: str) -> Any:
    """Wait for a tensorstore future, turning its errors into :class:`OutputError`."""
    try:
        return future.result()
    except ValueError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OutputError(f"{where}: {action} ({message})") from err


class _StoreWriter:
    """Writes every tensor of one checkpoint into a store, then the manifest."""

    def __init__(self, ckpt: Checkpoint, chunk_bytes: int, block_bytes: int) -> None:
        self.ckpt = ckpt
        self.chunk_bytes = chunk_bytes
        self.block_bytes = block_bytes
        self.paths = array_paths(ckpt.keys())
        self.tensor_bytes = 0
        self._pending: collections.deque[tuple[Any, str]] = collections.deque()
        self._files: dict[int, int] = {}
        self.context: Any = None

    def write(self, location: StoreLocation, context: Any = None) -> None:
        """Write every tensor, then the manifest; ``context`` defaults to a fresh one."""
        self.context = context or shared_context()  # one for all arrays: they share OCDBT state
        root = _kvstore(location, self.context)
        try:
            entries = [self._write_key(location, root, key) for key in self.ckpt]
            self._drain(quiet=False)
        finally:
            self._drain(quiet=True)
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()
        manifest = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {
                "ckptmap": {"format": FORMAT, "source": str(self.ckpt.prefix), "arrays": entries}
            },
        }
        data = json.dumps(manifest, indent=1).encode()
        _ts_run(root.write(ROOT_METADATA, data), location.text, "cannot write the manifest")

    def _write_key(self, location: StoreLocation, root: Any, key: str) -> dict[str, Any]:
        entry = self.ckpt.entry(key)
        path = self.paths[key]
        storage = storage_of(entry.dtype)
        described = {
            **encode_key(key),
            "dtype": entry.dtype.name,
            "shape": list(entry.shape),
            "slices": [spec.format() for spec in entry.slices],
            "storage": storage,
        }
        attributes = {"ckptmap": {**described, "format": FORMAT, "source": str(self.ckpt.prefix)}}
        log.debug("converting %r to %s", key, path)
        if storage == STORAGE_STRINGS:
            self._write_strings(location, root, entry, path, attributes)
        else:
            self._write_numeric(location, entry, path, storage, attributes)
        return {**described, "path": path}

    # -- numeric tensors -------------------------------------------------------

    def _write_numeric(
        self,
        location: StoreLocation,
        entry: TensorEntry,
        path: str,
        storage: str,
        attributes: dict[str, Any],
    ) -> None:
        dtype = entry.dtype
        data_type = dtype.numpy.name if storage == STORAGE_NATIVE else "uint8"
        meta = zarr_metadata(entry.shape, data_type, self.chunk_bytes, dtype.itemsize, attributes)
        array = self._create(location, path, meta)
        chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
        if entry.slices:
            pieces = [(slice_box(spec), part) for spec, part in self.ckpt.slice_entries(entry.key)]
        else:
            pieces = [(tuple((0, d) for d in entry.shape), entry)]
        for box, part in pieces:
            self.ckpt.check_entry(part)
            self._copy_piece(location, array, part, box, chunk, data_type)

    def _copy_piece(
        self,
        location: StoreLocation,
        array: Any,
        part: TensorEntry,
        box: Box,
        chunk: Sequence[int],
        data_type: str,
    ) -> None:
        import numpy as np

        itemsize = part.dtype.itemsize
        target = np.dtype(part.dtype.numpy if data_type != "uint8" else np.uint8)
        unit = itemsize // 2 if part.dtype.numpy.kind == "c" else itemsize
        swap = self.ckpt.byte_order == ">" and unit > 1
        fd = self._fd(part.shard_id)
        crc = 0
        for block, offset, size in plan_blocks(box, itemsize, self.block_bytes, chunk):
            view = self._read(fd, part, part.offset + offset, size)
            crc = crc32c(view, crc)
            values: np.ndarray = np.frombuffer(view, dtype=np.uint8)
            if swap:
                values = values.view(f">u{unit}").byteswap().view(np.uint8)
            shaped = values.view(target).reshape([b - a for a, b in block])
            index = tuple(slice(a, b) for a, b in block)
            self._submit(array[index].write(shaped), f"{location.text}: {part.key!r}")
            self.tensor_bytes += size
        if part.num_elements and mask_crc(crc) != part.crc32c:
            raise CorruptCheckpointError(
                self.ckpt.shard_path(part.shard_id),
                f"tensor {part.key!r}: CRC32C mismatch: stored 0x{part.crc32c:08x}, computed "
                f"0x{mask_crc(crc):08x} (the data file is corrupt; copy it again from its source)",
            )

    def _fd(self, shard_id: int) -> int:
        fd = self._files.get(shard_id)
        if fd is None:
            path = self.ckpt.shard_path(shard_id)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as err:
                raise CorruptCheckpointError(
                    path, f"cannot read the data file ({err.strerror})"
                ) from err
            self._files[shard_id] = fd
        return fd

    def _submit(self, future: Any, where: str) -> None:
        """Keep up to ``MAX_IN_FLIGHT`` writes going (their fsyncs overlap)."""
        self._pending.append((future, where))
        while len(self._pending) >= MAX_IN_FLIGHT:
            self._wait_one()

    def _wait_one(self) -> None:
        future, where = self._pending.popleft()
        _ts_run(future, where, "cannot write")

    def _drain(self, *, quiet: bool) -> None:
        """Wait for every write in flight; ``quiet`` ignores their errors (cleaning up)."""
        while self._pending:
            if quiet:
                with contextlib.suppress(CkptmapError):
                    self._wait_one()
            else:
                self._wait_one()

    def _read(self, fd: int, part: TensorEntry, offset: int, size: int) -> memoryview:
        # a fresh buffer per block: tensorstore may still be copying from the previous ones
        view = memoryview(bytearray(size))
        done = 0
        while done < size:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n <= 0:
                raise CorruptCheckpointError(
                    self.ckpt.shard_path(part.shard_id),
                    f"tensor {part.key!r}: the data file ends early (it is truncated; copy it "
                    "again from its source)",
                )
            done += n
        return view

    # -- strings ------------------------------------------------------------

    def _write_strings(
        self,
        location: StoreLocation,
        root: Any,
        entry: TensorEntry,
        path: str,
        attributes: dict[str, Any],
    ) -> None:
        import numpy as np

        values = self.ckpt.read(entry.key, verify=True).reshape(-1)
        items = [bytes(v) for v in values.tolist()]
        lengths = np.array([len(v) for v in items], dtype=np.uint64).reshape(entry.shape)
        data = np.frombuffer(b"".join(items), dtype=np.uint8)
        group = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
        _ts_run(
            root.write(f"{path}/{ROOT_METADATA}", json.dumps(group).encode()),
            location.text,
            f"cannot write {entry.key!r}",
        )
        for name, array, itemsize in ((STRING_LENGTHS, lengths, 8), (STRING_DATA, data, 1)):
            meta = zarr_metadata(array.shape, array.dtype.name, self.chunk_bytes, itemsize, {})
            node = self._create(location, f"{path}/{name}", meta)
            if array.size:
                _ts_run(node.write(array), location.text, f"cannot write {entry.key!r}")
        self.tensor_bytes += entry.size

    def _create(self, location: StoreLocation, path: str, meta: dict[str, Any]) -> Any:
        import tensorstore as ts

        spec = {"driver": "zarr3", "kvstore": location.node(path), "metadata": meta}
        return _ts_run(
            ts.open(spec, create=True, context=self.context),
            location.text,
            f"cannot create the array {path!r}",
        )
