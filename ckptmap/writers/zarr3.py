"""Write a checkpoint as a zarr v3 store (optionally inside OCDBT): the zarr3 writer.

Every key becomes one node directly under the store's root; partitioned
tensors are merged into one array, dtypes are kept (bfloat16 stays bfloat16),
and each node and the root's manifest carry the original key, TensorFlow
dtype, full shape, slice layout and source (the layout, shared with the
reader, is :mod:`ckptmap.formats.zarr_layout`; docs/convert.md describes it).

Streaming: a TensorFlow checkpoint's stored bytes are read one block of at
most ``block_bytes`` at a time (block boundaries fall on chunk boundaries
where the slice layout allows) and the CRC32C of every stored tensor is
checked on the way, so a damaged checkpoint never becomes a store; any other
source is read block by block as arrays. At most ``MAX_IN_FLIGHT`` writes run
at once, so peak memory is a few blocks plus tensorstore's encoding buffers,
never the checkpoint. String tensors are read whole (they are small in
practice).

The writer writes into a location it is given; making the result appear
atomically (a temporary folder, or a marker key at a URL) is the caller's job
(:mod:`ckptmap.convert`). The manifest is always written last.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ckptmap.defaults import ZARR_BLOCK_BYTES as DEFAULT_BLOCK_BYTES
from ckptmap.defaults import ZARR_CHUNK_BYTES as DEFAULT_CHUNK_BYTES
from ckptmap.errors import CkptmapError, CorruptCheckpointError, OutputError
from ckptmap.formats.crc import crc32c, mask_crc
from ckptmap.formats.slice_key import key_label
from ckptmap.formats.zarr_layout import (
    ROOT_METADATA,
    STORAGE_STRINGS,
    STRING_DATA,
    STRING_LENGTHS,
    ZarrArrayInfo,
    array_paths,
    expected_layout,
    group_metadata,
    manifest_metadata,
)
from ckptmap.readers.source import can_copy_bytes
from ckptmap.readers.zarr_store import StoreLocation, shared_context
from ckptmap.split import box_of

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.readers.source import Source
    from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "Zarr3Writer",
    "chunk_shape",
    "open_kvstore",
    "plan_blocks",
    "tensorstore_result",
    "zarr_metadata",
]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MAX_IN_FLIGHT = 4  # writes running at once: memory is bounded by this many blocks

Box = tuple[tuple[int, int], ...]


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


# -- tensorstore ---------------------------------------------------------------------


def open_kvstore(location: StoreLocation, context: Any) -> Any:
    """The kvstore at the root of the store ``location`` (an OCDBT database if it is one).

    Raises:
        OutputError: if tensorstore cannot open it.
    """
    import tensorstore as ts

    return tensorstore_result(
        ts.KvStore.open(location.kvstore(), context=context), location.text, "cannot open"
    )


def tensorstore_result(future: Any, where: str, action: str) -> Any:
    """Wait for a tensorstore future, turning its errors into :class:`OutputError`."""
    try:
        return future.result()
    except ValueError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OutputError(f"{where}: {action} ({message})") from err


# -- the writer ----------------------------------------------------------------------


class Zarr3Writer:
    """Writes every tensor of one source into a zarr v3 store, then the manifest.

    Attributes:
        source: the checkpoint being written.
        paths: the node path of every key, in key order.
        tensor_bytes: bytes of tensor data read so far.
    """

    def __init__(self, source: Source, chunk_bytes: int, block_bytes: int) -> None:
        self.source = source
        self.chunk_bytes = chunk_bytes
        self.block_bytes = block_bytes
        self.paths = array_paths(source.keys())
        self.tensor_bytes = 0
        self._pending: collections.deque[tuple[Any, str]] = collections.deque()
        self._context: Any = None

    def write(self, location: StoreLocation, context: Any = None) -> None:
        """Write every tensor, then the manifest; ``context`` defaults to a fresh one.

        Raises:
            CorruptCheckpointError, MissingInputError: if the source's data are
                damaged or missing (nothing is committed then: no manifest).
            OutputError: if the store cannot be written.
        """
        self._context = context or shared_context()  # one for all arrays: they share OCDBT state
        root = open_kvstore(location, self._context)
        specs = self.source.specs()
        infos = []
        try:
            for key, spec in specs.items():
                info = ZarrArrayInfo.of(key, self.paths[key], spec.dtype, spec.shape, spec.slices)
                log.debug("converting %r to %s", key, info.path)
                if info.storage == STORAGE_STRINGS:
                    self._write_strings(location, root, info)
                else:
                    self._write_numeric(location, info)
                infos.append(info)
            self._drain(quiet=False)
        finally:
            self._drain(quiet=True)
        tensorstore_result(
            root.write(ROOT_METADATA, manifest_metadata(self.source.url, infos)),
            location.text,
            "cannot write the manifest",
        )

    # -- numeric tensors -------------------------------------------------------

    def _write_numeric(self, location: StoreLocation, info: ZarrArrayInfo) -> None:
        _, data_type = expected_layout(info, info.path)
        attributes = info.attributes(self.source.url)
        meta = zarr_metadata(
            info.shape, data_type, self.chunk_bytes, info.dtype.itemsize, attributes
        )
        array = self._create(location, info.path, meta)
        chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
        source = self.source
        if can_copy_bytes(source):
            entry = source.entry(info.key)
            source.check_entry(entry)  # every slice inside its data file, slices tile the tensor
            pieces = source.slice_entries(info.key) if entry.slices else [(None, entry)]
            for spec, part in pieces:
                box = box_of(spec, info.shape)
                self._copy_piece(location, source, array, part, box, chunk, data_type)
        else:
            for spec in info.slices or (None,):
                self._write_piece(location, info, array, box_of(spec, info.shape), chunk, data_type)

    def _copy_piece(
        self,
        location: StoreLocation,
        ckpt: Checkpoint,
        array: Any,
        part: TensorEntry,
        box: Box,
        chunk: Sequence[int],
        data_type: str,
    ) -> None:
        """Stream the stored bytes of one entry, checking its CRC32C on the way."""
        import numpy as np

        itemsize = part.dtype.itemsize
        target = np.dtype(part.dtype.numpy if data_type != "uint8" else np.uint8)
        unit = itemsize // 2 if part.dtype.numpy.kind == "c" else itemsize
        swap = ckpt.byte_order == ">" and unit > 1
        shard = ckpt.shard_name(part.shard_id)
        crc = 0
        label = key_label(part.key)  # a slice entry as name[slice spec]
        for block, offset, size in plan_blocks(box, itemsize, self.block_bytes, chunk):
            data = ckpt.location.read(shard, part.offset + offset, size)
            crc = crc32c(data, crc)
            values: np.ndarray = np.frombuffer(data, dtype=np.uint8)
            if swap:
                values = values.view(f">u{unit}").byteswap().view(np.uint8)
            self._write_block(array, block, values.view(target), f"{location.text}: {label!r}")
            self.tensor_bytes += size
        if part.num_elements and mask_crc(crc) != part.crc32c:
            raise CorruptCheckpointError(
                ckpt.shard_url(part.shard_id),
                f"tensor {label!r}: CRC32C mismatch: stored 0x{part.crc32c:08x}, computed "
                f"0x{mask_crc(crc):08x} (the data file is corrupt; copy it again from its source)",
            )

    def _write_piece(
        self,
        location: StoreLocation,
        info: ZarrArrayInfo,
        array: Any,
        box: Box,
        chunk: Sequence[int],
        data_type: str,
    ) -> None:
        """Copy one stored piece of a source that is read as arrays, block by block."""
        import numpy as np

        target = np.dtype(info.dtype.numpy if data_type != "uint8" else np.uint8)
        for block, _, size in plan_blocks(box, info.dtype.itemsize, self.block_bytes, chunk):
            values = np.ascontiguousarray(self.source.read_box(info.key, block)).reshape(-1)
            self._write_block(array, block, values.view(target), f"{location.text}: {info.key!r}")
            self.tensor_bytes += size

    def _write_block(self, array: Any, block: Box, values: np.ndarray, where: str) -> None:
        shaped = values.reshape([b - a for a, b in block])
        index = tuple(slice(a, b) for a, b in block)
        self._submit(array[index].write(shaped), where)

    def _submit(self, future: Any, where: str) -> None:
        """Keep up to ``MAX_IN_FLIGHT`` writes going (their fsyncs overlap)."""
        self._pending.append((future, where))
        while len(self._pending) >= MAX_IN_FLIGHT:
            self._wait_one()

    def _wait_one(self) -> None:
        future, where = self._pending.popleft()
        tensorstore_result(future, where, "cannot write")

    def _drain(self, *, quiet: bool) -> None:
        """Wait for every write in flight; ``quiet`` ignores their errors (cleaning up)."""
        while self._pending:
            if quiet:
                with contextlib.suppress(CkptmapError):
                    self._wait_one()
            else:
                self._wait_one()

    # -- strings ------------------------------------------------------------

    def _write_strings(self, location: StoreLocation, root: Any, info: ZarrArrayInfo) -> None:
        import numpy as np

        source = self.source
        if can_copy_bytes(source):
            values = source.read(info.key, verify=True)
            stored: int | None = source.entry(info.key).size  # lengths, checksum, strings
        else:
            values = source.read(info.key)
            stored = None
        items = [bytes(v) for v in values.reshape(-1).tolist()]
        lengths_type = expected_layout(info, f"{info.path}/{STRING_LENGTHS}")[1]
        data_type = expected_layout(info, f"{info.path}/{STRING_DATA}")[1]
        lengths = np.array([len(v) for v in items], dtype=lengths_type).reshape(info.shape)
        data = np.frombuffer(b"".join(items), dtype=data_type)
        group = group_metadata(info.attributes(source.url))
        where = f"cannot write {info.key!r}"
        tensorstore_result(root.write(f"{info.path}/{ROOT_METADATA}", group), location.text, where)
        for name, array in ((STRING_LENGTHS, lengths), (STRING_DATA, data)):
            meta = zarr_metadata(
                array.shape, array.dtype.name, self.chunk_bytes, array.dtype.itemsize, {}
            )
            node = self._create(location, f"{info.path}/{name}", meta)
            if array.size:
                tensorstore_result(node.write(array), location.text, where)
        self.tensor_bytes += data.size if stored is None else stored

    def _create(self, location: StoreLocation, path: str, meta: dict[str, Any]) -> Any:
        import tensorstore as ts

        spec = {"driver": "zarr3", "kvstore": location.node(path), "metadata": meta}
        return tensorstore_result(
            ts.open(spec, create=True, context=self._context),
            location.text,
            f"cannot create the array {path!r}",
        )
