"""Read TensorFlow V2 checkpoints (tensor bundles) without TensorFlow.

A checkpoint is a prefix ``P``: ``P.index`` maps every key to a
``BundleEntryProto`` (tf-checkpoint-format.md §4) and ``P.data-SSSSS-of-NNNNN``
hold the tensor bytes (§5). :func:`open_checkpoint` reads the index only;
shards are memory-mapped on the first read, and numeric tensors come back as
read-only numpy views of the mapping. Everything read from disk is checked
before it is used to allocate or slice.

:class:`Checkpoint` puts together the jobs of the modules under it:
:mod:`~ckptmap.readers._table` (the table format),
:mod:`~ckptmap.readers._bundle_index` (header, entries, slices),
:mod:`~ckptmap.readers._bundle_shards` (data files: memory maps and byte
ranges) and :mod:`~ckptmap.readers._bundle_values` (bytes to arrays, CRCs).

Example:
    >>> with open_checkpoint("fixtures/ffm_v1") as ckpt:  # doctest: +SKIP
    ...     for key in ckpt.keys():
    ...         print(key, ckpt.entry(key).shape)
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ckptmap.errors import MissingInputError, UnsupportedInputError, UsageError
from ckptmap.readers._bundle_index import BundleIndex, TensorEntry
from ckptmap.readers._bundle_shards import ShardFiles
from ckptmap.readers._bundle_values import decode_values, verify_bytes
from ckptmap.readers._table import Table, decode_index
from ckptmap.readers.assets import Asset, list_assets
from ckptmap.readers.source import check_box
from ckptmap.readers.state import INDEX_SUFFIX, CheckpointRef, find_checkpoint
from ckptmap.split import box_of, intersect
from ckptmap.storage.urls import local_input

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.spec import TensorSpec
    from ckptmap.split import SliceSpec
    from ckptmap.storage import Location
    from ckptmap.storage.range_reads import ReadOptions

__all__ = ["Checkpoint", "TensorEntry", "open_checkpoint", "open_found"]


def open_checkpoint(path: str | os.PathLike[str], *, step: int | None = None) -> Checkpoint:
    """Open the checkpoint that ``path`` names, reading only its index.

    Args:
        path: a model folder (its ``checkpoint`` state file picks the latest
            checkpoint), a checkpoint prefix, or its ``.index`` file; a local
            path or a URL (``file://``, ``memory://``, ``http(s)://``, ``gs://``,
            ``s3://``; see :mod:`ckptmap.storage`). At a URL, only the state file
            and the index are read here, and tensors are read by byte range.
        step: with a folder or prefix, open the checkpoint of this global step.

    Returns:
        The open checkpoint; close it, or use it as a context manager.

    Raises:
        MissingInputError: if there is no checkpoint at ``path``.
        CorruptCheckpointError: if the state file or the index is damaged.
        UnsupportedInputError: if the index uses a feature ckptmap cannot read.
        InputError: if a store at a URL cannot be reached or read.
        UsageError: if ``step`` is given with an ``.index`` path, or the URL
            scheme is not supported.

    Example:
        >>> ckpt = open_checkpoint("fixtures/ffm_v1", step=50)  # doctest: +SKIP
        >>> ckpt.read("global_step")  # doctest: +SKIP
        array(50)
    """
    return open_found(find_checkpoint(local_input(path), step=step))


def open_found(ref: CheckpointRef) -> Checkpoint:
    """Open the V2 checkpoint that :func:`~ckptmap.readers.state.find_checkpoint` found.

    Raises:
        MissingInputError: if its index is missing.
        CorruptCheckpointError: if the index is damaged.
        UnsupportedInputError: if it is a V1 checkpoint (read by
            :func:`~ckptmap.readers.source.open_source`) or the index uses a
            feature ckptmap cannot read.
    """
    if ref.v1_files:
        raise UnsupportedInputError(
            f"{ref.location.where(ref.prefix)}: is a TensorFlow V1 checkpoint (one file, no "
            ".index); open it with ckptmap.open_source, which reads V1 as well"
        )
    index_name = ref.prefix + INDEX_SUFFIX
    where = ref.location.where(index_name)
    data = ref.index
    if data is None:
        try:
            data = ref.location.read_all(index_name)
        except MissingInputError:
            raise MissingInputError(where, "checkpoint index file not found") from None
    table = decode_index(data, Path(where), where)
    return Checkpoint(ref.location, ref.prefix, table, notes=ref.notes)


class Checkpoint:
    """An open V2 checkpoint: its index, decoded lazily, and its shards, mapped lazily.

    It is a :class:`ckptmap.readers.source.Source`, and the one whose stored
    bytes can be copied as they are (entries, shards, byte ranges).

    Attributes:
        format: ``"tf"``.
        prefix: the checkpoint prefix (``.../model.ckpt-100``); for a
            checkpoint at a URL, the URL as a path (``url`` is the exact text).
        url: the prefix as the user would write it (a path or a URL).
        where: the ``.index`` file as the user would write it.
        name: the prefix's name in its folder (``model.ckpt-100``).
        location: the folder of the checkpoint's files (local, or a URL).
        index_path: ``<prefix>.index``.
        num_shards: the number of data files.
        byte_order: ``"<"`` or ``">"``, the byte order of numeric data (§5.4).
        assets: the non-tensor files that travel with the checkpoint.
        notes: how it was found, worth telling the user (see ``CheckpointRef.notes``).
    """

    format = "tf"

    def __init__(
        self, location: Location, name: str, table: Table, *, notes: tuple[str, ...] = ()
    ) -> None:
        self.location = location
        self.notes = notes
        self.name = name
        self.url = location.where(name)
        self.prefix = Path(self.url)
        self.where = location.where(name + INDEX_SUFFIX)
        self.index_path = table.path
        self._index = BundleIndex(table, self.where)
        self.num_shards = self._index.num_shards
        self.byte_order = self._index.byte_order
        self._shards = ShardFiles(location, name, self.num_shards, self._index.describe)
        self.assets: list[Asset] = list_assets(location, name)

    # -- the index -----------------------------------------------------------------

    def keys(self) -> list[str]:
        """The tensors' keys, sorted as unsigned bytes like TensorFlow (no slice keys)."""
        return list(self._index.keys)

    def __iter__(self) -> Iterator[str]:
        """Iterate over the keys, like :meth:`keys`."""
        return iter(self._index.keys)

    def __len__(self) -> int:
        """The number of tensors (slice entries not counted)."""
        return len(self._index.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def entry(self, key: str) -> TensorEntry:
        """The index entry of the tensor ``key``.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            CorruptCheckpointError: if its entry is damaged.
            UnsupportedInputError: if its dtype is unknown.
        """
        return self._index.entry(key)

    def specs(self) -> dict[str, TensorSpec]:
        """A :class:`TensorSpec` per key (partitioned tensors with their slices), in key order."""
        return self._index.specs()

    def entries(self) -> Iterator[TensorEntry]:
        """The index entry of every tensor, in key order, each decoded as it is reached.

        Raises:
            CorruptCheckpointError: when the iteration reaches a damaged entry.
            UnsupportedInputError: when it reaches an unknown dtype.
        """
        return self._index.entries()

    def slices(self, key: str) -> tuple[SliceSpec, ...]:
        """The stored slices of ``key`` (empty when it is stored whole).

        Raises:
            TensorNotFoundError: if there is no such tensor.
        """
        return self._index.entry(key).slices

    def slice_entries(self, key: str) -> list[tuple[SliceSpec, TensorEntry]]:
        """The stored slices of the partitioned tensor ``key`` with their entries, in stored order.

        Returns an empty list for a tensor that is not partitioned.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            CorruptCheckpointError: if a slice's entry is missing or disagrees
                with the full entry.
        """
        return self._index.slice_entries(key)

    # -- the data files ------------------------------------------------------------

    def shard_path(self, shard_id: int) -> Path:
        """The data file number ``shard_id``: ``<prefix>.data-SSSSS-of-NNNNN`` (§1.1)."""
        return self._shards.shard_path(shard_id)

    def shard_name(self, shard_id: int) -> str:
        """The name of data file ``shard_id`` in :attr:`location`."""
        return self._shards.shard_name(shard_id)

    def shard_url(self, shard_id: int) -> str:
        """Data file ``shard_id`` as the user would write it (a path or a URL)."""
        return self._shards.shard_url(shard_id)

    def shard_size(self, shard_id: int) -> int | None:
        """The size in bytes of data file ``shard_id``, without opening it.

        At a URL the size is unknown without reading the file: ``None`` (and
        no request is made); a range past the end shows when it is read.

        Raises:
            MissingInputError: if the local file does not exist.
        """
        return self._shards.shard_size(shard_id)

    def check_entry(self, entry: TensorEntry) -> None:
        """Check that the bytes of ``entry`` lie inside its data file, reading no data.

        For the full entry of a partitioned tensor, every slice is checked, and
        the slices must tile the tensor.

        Raises:
            MissingInputError: if the data file is missing.
            CorruptCheckpointError: if the bytes lie past the end of the file, or
                the slices overlap or leave a gap.
        """
        if entry.slices:
            for _, part in self._index.slice_entries(entry.key):
                self._shards.check_bounds(part)
            self._index.check_tiling(entry)
            return
        self._shards.check_bounds(entry)

    def raw_bytes(self, entry: TensorEntry) -> memoryview:
        """The bytes of ``entry`` as stored in its shard (locally a view, no copy).

        Raises:
            UsageError: for the full entry of a partitioned tensor, which has no bytes.
            MissingInputError: if the shard file is missing.
            CorruptCheckpointError: if the bytes lie past the end of the shard.
        """
        return self.fetch([entry])[0]

    def fetch(self, entries: list[TensorEntry]) -> list[memoryview]:
        """The stored bytes of several entries; at a URL, requested concurrently by byte range.

        Locally these are views of the mapped shards, as :meth:`raw_bytes` gives.

        Raises:
            UsageError: for the full entry of a partitioned tensor.
            MissingInputError: if a data file is missing.
            CorruptCheckpointError: if bytes lie past the end of their data file.
            InputError: if the store cannot be read.
        """
        for entry in entries:
            if entry.slices:
                raise UsageError(
                    f"tensor {entry.key!r} is partitioned: its bytes are in its slices "
                    "(use slice_entries)"
                )
        return self._shards.fetch(entries)

    def stream(
        self, entries: list[TensorEntry], options: ReadOptions
    ) -> Generator[memoryview, None, None]:
        """The stored bytes of ``entries`` in order; at a URL planned and fetched ahead.

        Errors as :meth:`fetch`, raised while iterating (see
        :meth:`~ckptmap.readers._bundle_shards.ShardFiles.stream`).
        """
        return self._shards.stream(entries, options)

    # -- values --------------------------------------------------------------------

    def read(self, key: str, *, verify: bool = False) -> np.ndarray:
        """The whole tensor ``key``; partitioned tensors are reassembled from their slices.

        Numeric tensors of a little-endian checkpoint are read-only views of
        the memory-mapped shard; they stay valid after :meth:`close`. Strings
        come back as an ``object`` array of ``bytes``.

        Args:
            key: the tensor's key.
            verify: check the CRC32C of every stored byte read.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            MissingInputError: if a shard file is missing.
            CorruptCheckpointError: on bad offsets, sizes, CRCs, or slices that
                do not tile the tensor.
        """
        import numpy as np

        entry = self.entry(key)
        if not entry.slices:
            return self.read_slice_entry(entry, verify=verify)
        parts = self.slice_entries(key)
        # bounds of every slice are checked (and remote bytes fetched) before allocating
        views = self.fetch([part for _, part in parts])
        self._index.check_tiling(entry)
        out = np.empty(entry.shape, dtype=entry.dtype.numpy)
        for (spec, part), view in zip(parts, views, strict=True):
            out[spec.index()] = self._decode(part, view, verify=verify)
        out.flags.writeable = False
        return out

    def read_box(
        self, key: str, box: Sequence[tuple[int, int]], *, verify: bool = False
    ) -> np.ndarray:
        """The part ``[start, stop)`` per axis of ``key``, reading only the slices it touches.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            UsageError: if the box does not fit the tensor's shape.
            MissingInputError: if a shard file is missing.
            CorruptCheckpointError: on bad offsets, sizes, CRCs, or slices that
                do not tile the tensor.
        """
        import numpy as np

        entry = self.entry(key)
        wanted = check_box(key, box, entry.shape)
        if not entry.slices:
            whole = self.read_slice_entry(entry, verify=verify)
            index: tuple[Any, ...] = (*[slice(a, b) for a, b in wanted], Ellipsis)
            boxed: np.ndarray = whole[index]  # with the Ellipsis, an array even for a scalar
            return boxed
        self._index.check_tiling(entry)
        touched = []
        for spec, part in self.slice_entries(key):
            own = box_of(spec, entry.shape)
            shared = intersect(own, wanted)
            if shared is not None:
                touched.append((own, shared, part))
        views = self.fetch([part for _, _, part in touched])
        out = np.empty(tuple(b - a for a, b in wanted), dtype=entry.dtype.numpy)
        for (own, shared, part), view in zip(touched, views, strict=True):
            values = self._decode(part, view, verify=verify)
            src = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(shared, own, strict=True))
            dst = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(shared, wanted, strict=True))
            out[dst] = values[src]
        out.flags.writeable = False
        return out

    def read_slice_entry(self, entry: TensorEntry, *, verify: bool = False) -> np.ndarray:
        """The tensor stored under one entry (a whole tensor or one stored slice).

        Raises:
            MissingInputError: if the shard file is missing.
            CorruptCheckpointError: on bad offsets, sizes or CRCs.
        """
        if entry.slices:
            return self.read(entry.key, verify=verify)
        return self._decode(entry, self.raw_bytes(entry), verify=verify)

    def decode_entry(
        self, entry: TensorEntry, data: bytes | memoryview, *, verify: bool = False
    ) -> np.ndarray:
        """The tensor of one data entry from its stored bytes (as :meth:`fetch` gives them).

        Raises:
            CorruptCheckpointError: on a bad CRC (with ``verify``) or string layout.
        """
        view = data if isinstance(data, memoryview) else memoryview(data)
        if len(view) != entry.size:
            raise self._shards.past_the_end(entry, None)
        return self._decode(entry, view, verify=verify)

    def _decode(self, entry: TensorEntry, view: memoryview, *, verify: bool) -> np.ndarray:
        return decode_values(entry, view, self.byte_order, self._shards.bad_data, verify=verify)

    def verify(self) -> list[str]:
        """Check the CRC32C of every tensor (every slice of partitioned ones).

        At a URL the byte ranges are fetched as :meth:`stream` does (merged,
        many requests in flight, the default :class:`ReadOptions` budget).

        Returns:
            The keys checked, in key order.

        Raises:
            CorruptCheckpointError: naming the first tensor whose bytes are wrong.
            MissingInputError: if a shard file is missing.
        """
        from ckptmap.storage.range_reads import ReadOptions

        stored: list[TensorEntry] = []
        for key in self._index.keys:
            entry = self.entry(key)
            stored += [part for _, part in self.slice_entries(key)] if entry.slices else [entry]
        # at a URL the ranges are planned together and fetched ahead, in this order
        for part, view in zip(stored, self.stream(stored, ReadOptions()), strict=True):
            self.verify_entry(part, view)
        return self.keys()

    def verify_entry(self, entry: TensorEntry, view: memoryview | None = None) -> None:
        """Check the stored bytes of one data entry: CRC32C, and the layout of strings.

        Args:
            entry: a tensor's entry or one of its slice entries.
            view: its bytes when already fetched; read from its shard otherwise.

        Raises:
            CorruptCheckpointError: naming the shard and the tensor, if they are wrong.
            MissingInputError: if the shard file is missing.
        """
        if view is None:
            view = self.raw_bytes(entry)
        verify_bytes(entry, view, self.byte_order, self._shards.bad_data)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Unmap the shards. Arrays already returned keep their mapping alive."""
        self._shards.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({self.url!r}, {len(self._index.keys)} tensors)"
