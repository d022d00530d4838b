"""Read TensorFlow V2 checkpoints (tensor bundles) without TensorFlow.

A checkpoint is a prefix ``P``: ``P.index`` maps every key to a
``BundleEntryProto`` (tf-checkpoint-format.md §4) and ``P.data-SSSSS-of-NNNNN``
hold the tensor bytes (§5). :func:`open_checkpoint` reads the index only;
shards are memory-mapped on the first read, and numeric tensors come back as
read-only numpy views of the mapping. Everything read from disk is checked
before it is used to allocate or slice.

Example:
    >>> with open_checkpoint("fixtures/ffm_v1") as ckpt:  # doctest: +SKIP
    ...     for key in ckpt.keys():
    ...         print(key, ckpt.entry(key).shape)
"""

from __future__ import annotations

import contextlib
import difflib
import math
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from google.protobuf.message import DecodeError

from ckptmap._format import BUNDLE_VERSION, encode_slice_key, mask_crc
from ckptmap.dtypes import REF_OFFSET, DType, dtype_from_enum
from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    MissingInputError,
    RangeError,
    TensorNotFoundError,
    UnsupportedInputError,
    UsageError,
)
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers._table import Table, crc32c_of, decode_index, read_table
from ckptmap.readers.assets import Asset, list_assets, list_remote_assets
from ckptmap.readers.source import check_box
from ckptmap.readers.state import locate_checkpoint, locate_remote_checkpoint
from ckptmap.spec import TensorSpec
from ckptmap.split import (
    PartitionError,
    SliceSpec,
    SliceSpecError,
    box_of,
    check_tiling,
    intersect,
)
from ckptmap.storage import LocalLocation, Location, is_url, location_text

if TYPE_CHECKING:
    import numpy as np

HEADER_KEY = b""  # §4: the header is stored under the empty key
SLICE_KEY_START = 0x00  # §6.4: every slice key begins with NumIncreasing(0) = 00
MAX_SHARDS = 99_999  # shard numbers are written with 5 digits (§1.1)
MAX_RANK = 254  # TensorShape::MaxDimensions()
_BIG_ENDIAN = 1  # BundleHeaderProto.Endianness.BIG (§4.1)
_LENGTH_CHECKSUM_SIZE = 4  # §5.2
_MAX_LENGTH_VARINT_BYTES = 9  # a 10-byte varint would be a string of 2**63 bytes or more
_U32_MAX = 0xFFFFFFFF
# §5.2, §5.4: the string-length checksum is a uint32 in the bundle's byte order
_CHECKSUM = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
_FIX_INDEX = "the index is corrupt; copy the checkpoint again from its source"
_FIX_DATA = "the data file is corrupt or truncated; copy it again from its source"


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One entry of the index: where a tensor (or one stored slice) lies (§4.2).

    Attributes:
        key: the key, decoded as UTF-8 with ``errors="surrogateescape"`` so that
            any bytes round-trip (``key.encode("utf-8", "surrogateescape")``).
        dtype: the tensor's dtype.
        shape: its shape (the full shape for a partitioned tensor).
        shard_id: the data file holding its bytes.
        offset: where its bytes start in that file.
        size: how many bytes it takes.
        crc32c: the stored, masked CRC32C of its bytes (§5).
        slices: on the full entry of a partitioned tensor, its stored slices
            (in stored order, extents spelled as stored); empty otherwise.
    """

    key: str
    dtype: DType
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    slices: tuple[SliceSpec, ...] = ()

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def is_sliced(self) -> bool:
        """True for the full entry of a partitioned tensor (its data are in slices)."""
        return bool(self.slices)


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
    text = location_text(path)
    if is_url(text):
        return _open_remote(text, step)
    prefix = locate_checkpoint(path, step=step)
    table = read_table(prefix.with_name(prefix.name + ".index"))
    return Checkpoint(prefix, table)


def _open_remote(url: str, step: int | None) -> Checkpoint:
    ref = locate_remote_checkpoint(url, step=step)
    index_name = ref.prefix + ".index"
    where = ref.location.where(index_name)
    data = ref.index
    if data is None:
        try:
            data = ref.location.read_all(index_name)
        except MissingInputError:
            raise MissingInputError(where, "checkpoint index file not found") from None
    table = decode_index(data, Path(where), where)
    prefix = Path(ref.location.where(ref.prefix))
    return Checkpoint(prefix, table, location=ref.location, name=ref.prefix)


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
        name: the prefix's file name (``model.ckpt-100``).
        location: the folder of the checkpoint's files (local, or a URL).
        index_path: ``<prefix>.index``.
        num_shards: the number of data files.
        byte_order: ``"<"`` or ``">"``, the byte order of numeric data (§5.4).
        assets: the non-tensor files that travel with the checkpoint.
    """

    format = "tf"

    def __init__(
        self,
        prefix: Path,
        table: Table,
        *,
        location: Location | None = None,
        name: str | None = None,
    ) -> None:
        self.prefix = prefix
        self.location: Location = location or LocalLocation(prefix.parent)
        self._name = name if name is not None else prefix.name
        self._remote = not self.location.is_local
        self.url = self.location.where(self._name) if self._remote else str(prefix)
        self.index_path = table.path
        self._index_where = table_where(self.location, self._name, table, remote=self._remote)
        self.where = self._index_where
        self.name = self._name
        self._values = dict(zip(table.keys, table.values, strict=True))
        header = self._decode_header(table)
        self.num_shards: int = header.num_shards
        self.byte_order: str = ">" if header.endianness == _BIG_ENDIAN else "<"
        self._keys = [
            k.decode("utf-8", "surrogateescape")
            for k in table.keys
            if k and k[0] != SLICE_KEY_START
        ]
        self._entries: dict[bytes, TensorEntry] = {}
        self._slice_cache: dict[str, tuple[tuple[SliceSpec, TensorEntry], ...]] = {}
        self._slice_names: dict[bytes, str] = {}  # slice key -> "'key' (slice spec)"
        self._tiled: set[str] = set()  # partitioned keys whose slices tile them
        self._shards: dict[int, memoryview] = {}
        self._shard_sizes: dict[int, int] = {}
        self._maps: list[mmap.mmap] = []
        self.assets: list[Asset] = (
            list_remote_assets(self.location, self._name) if self._remote else list_assets(prefix)
        )

    # -- the index ---------------------------------------------------------

    def _decode_header(self, table: Table) -> ckptmap_tf_pb2.BundleHeaderProto:
        if not table.keys or table.keys[0] != HEADER_KEY:
            raise CorruptCheckpointError(
                self._index_where,
                f"the index has no header entry (the first key is not empty; {_FIX_INDEX})",
            )
        try:
            header: ckptmap_tf_pb2.BundleHeaderProto = ckptmap_tf_pb2.BundleHeaderProto.FromString(
                table.values[0]
            )
        except DecodeError as err:
            raise CorruptCheckpointError(
                self._index_where, f"the bundle header cannot be decoded ({err}; {_FIX_INDEX})"
            ) from err
        if not 1 <= header.num_shards <= MAX_SHARDS:
            raise CorruptCheckpointError(
                self._index_where,
                f"the header's shard count {header.num_shards} is out of range ({_FIX_INDEX})",
            )
        if header.endianness not in (0, _BIG_ENDIAN):
            raise CorruptCheckpointError(
                self._index_where,
                f"the header's endianness {header.endianness} is unknown ({_FIX_INDEX})",
            )
        version = header.version
        if version.producer < 0:
            raise CorruptCheckpointError(
                self._index_where,
                f"the header's producer version {version.producer} is negative ({_FIX_INDEX})",
            )
        if version.min_consumer > BUNDLE_VERSION:
            raise UnsupportedInputError(
                f"{self._index_where}: the checkpoint needs bundle format version "
                f"{version.min_consumer} or later, newer than {BUNDLE_VERSION} which ckptmap reads "
                "(re-save it with the TensorFlow version that trains the new model)"
            )
        if BUNDLE_VERSION in version.bad_consumers:
            raise UnsupportedInputError(
                f"{self._index_where}: the checkpoint says readers of bundle format version "
                f"{BUNDLE_VERSION}, like ckptmap, must not read it (re-save it with the "
                "TensorFlow version that trains the new model)"
            )
        return header

    def keys(self) -> list[str]:
        """The tensors' keys, sorted as unsigned bytes like TensorFlow (no slice keys)."""
        return list(self._keys)

    def __iter__(self) -> Iterator[str]:
        """Iterate over the keys, like :meth:`keys`."""
        return iter(self._keys)

    def __len__(self) -> int:
        """The number of tensors (slice entries not counted)."""
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        raw = key.encode("utf-8", "surrogateescape")
        return bool(raw) and raw[0] != SLICE_KEY_START and raw in self._values

    def entry(self, key: str) -> TensorEntry:
        """The index entry of the tensor ``key``.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            CorruptCheckpointError: if its entry is damaged.
            UnsupportedInputError: if its dtype is unknown.
        """
        raw = key.encode("utf-8", "surrogateescape")
        if key not in self:
            raise self._not_found(key)
        return self._entry(raw)

    def _not_found(self, key: str) -> TensorNotFoundError:
        close = difflib.get_close_matches(key, self._keys, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return TensorNotFoundError(
            self._index_where,
            key,
            f"no tensor {key!r} in this checkpoint ({hint}list the keys with `ckptmap inspect`)",
        )

    def _entry(self, raw: bytes, where: str | None = None) -> TensorEntry:
        """The decoded entry under ``raw``; ``where`` names it in messages (default: its key)."""
        cached = self._entries.get(raw)
        if cached is None:
            cached = self._decode_entry(raw, self._values[raw], where)
            self._entries[raw] = cached
        return cached

    def _decode_entry(self, raw: bytes, value: memoryview, where: str | None) -> TensorEntry:
        key = raw.decode("utf-8", "surrogateescape")
        where = where or f"tensor {key!r}"
        try:
            proto = ckptmap_tf_pb2.BundleEntryProto.FromString(value)
        except DecodeError as err:
            raise self._corrupt(f"the entry of {where} cannot be decoded ({err})") from err
        if proto.dtype > REF_OFFSET:
            raise UnsupportedInputError(
                f"{self._index_where}: {where} has reference dtype enum {proto.dtype}, "
                f"which is never stored in a checkpoint ({_FIX_INDEX})"
            )
        dtype = dtype_from_enum(proto.dtype, where=f"{self._index_where}: {where}")
        shape = self._decode_shape(proto.shape, where)
        slices = tuple(self._decode_slice(s, shape, where) for s in proto.slices)
        entry = TensorEntry(
            key, dtype, shape, proto.shard_id, proto.offset, proto.size, proto.crc32c, slices
        )
        if not slices:
            self._check_data_entry(entry, where)
        elif not shape:
            raise self._corrupt(f"{where} is a scalar but has slices")
        return entry

    def _corrupt(self, detail: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(self._index_where, f"{detail} ({_FIX_INDEX})")

    def _decode_shape(self, proto: ckptmap_tf_pb2.TensorShapeProto, where: str) -> tuple[int, ...]:
        if proto.unknown_rank:
            raise self._corrupt(f"{where} has a shape of unknown rank")
        if len(proto.dim) > MAX_RANK:
            raise self._corrupt(f"{where} has rank {len(proto.dim)}, more than {MAX_RANK}")
        shape = tuple(int(d.size) for d in proto.dim)
        if any(d < 0 for d in shape):
            raise self._corrupt(f"{where} has a negative dimension in its shape {list(shape)}")
        return shape

    def _decode_slice(
        self, proto: ckptmap_tf_pb2.TensorSliceProto, shape: tuple[int, ...], where: str
    ) -> SliceSpec:
        extents = tuple(
            (int(e.start), int(e.length) if e.HasField("length") else -1) for e in proto.extent
        )
        try:
            return SliceSpec(shape, extents)
        except CkptmapError as err:
            raise self._corrupt(f"{where} has an invalid slice: {err}") from err

    def _check_data_entry(self, entry: TensorEntry, where: str) -> None:
        """Validate an entry that holds bytes, before anything is read or allocated."""
        if not 0 <= entry.shard_id < self.num_shards:
            raise self._corrupt(
                f"{where} is in shard {entry.shard_id}, but the checkpoint has {self.num_shards}"
            )
        if entry.offset < 0 or entry.size < 0:
            raise self._corrupt(f"{where} has a negative offset or size")
        count = entry.num_elements
        if entry.dtype.is_string:
            if entry.size < count + _LENGTH_CHECKSUM_SIZE and not (count == 0 == entry.size):
                raise self._corrupt(
                    f"{where} stores {entry.size} bytes, too few for {count} strings"
                )
        elif entry.size != count * entry.dtype.itemsize:
            raise self._corrupt(
                f"{where} stores {entry.size} bytes, but shape {list(entry.shape)} of "
                f"{entry.dtype.name} needs {count * entry.dtype.itemsize}"
            )

    def specs(self) -> dict[str, TensorSpec]:
        """A :class:`TensorSpec` per key (partitioned tensors with their slices), in key order."""
        specs: dict[str, TensorSpec] = {}
        for key in self._keys:
            entry = self._entry(key.encode("utf-8", "surrogateescape"))
            specs[key] = TensorSpec(key, entry.dtype, entry.shape, entry.slices)
        return specs

    def slice_entries(self, key: str) -> list[tuple[SliceSpec, TensorEntry]]:
        """The stored slices of the partitioned tensor ``key``, in stored order.

        Returns an empty list for a tensor that is not partitioned.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            CorruptCheckpointError: if a slice's entry is missing or disagrees
                with the full entry.
        """
        cached = self._slice_cache.get(key)
        if cached is not None:
            return list(cached)
        full = self.entry(key)
        raw = key.encode("utf-8", "surrogateescape")
        parts: list[tuple[SliceSpec, TensorEntry]] = []
        for spec in full.slices:
            where = f"tensor {key!r} slice {spec}"
            slice_key = encode_slice_key(raw, spec.extents)
            if slice_key not in self._values:
                raise self._corrupt(f"{where} has no entry in the index")
            self._slice_names.setdefault(slice_key, f"{key!r} (slice {spec})")
            part = self._entry(slice_key, where)
            if part.slices or part.dtype != full.dtype or part.shape != spec.shape:
                raise self._corrupt(
                    f"{where} is stored as {part.dtype.name} {list(part.shape)}, expected "
                    f"{full.dtype.name} {list(spec.shape)}"
                )
            parts.append((spec, part))
        self._slice_cache[key] = tuple(parts)
        return parts

    def slices(self, key: str) -> tuple[SliceSpec, ...]:
        """The stored slices of ``key`` (empty when it is stored whole).

        Raises:
            TensorNotFoundError: if there is no such tensor.
        """
        return self.entry(key).slices

    # -- the data ----------------------------------------------------------

    def shard_path(self, shard_id: int) -> Path:
        """The data file number ``shard_id``: ``<prefix>.data-SSSSS-of-NNNNN`` (§1.1)."""
        return self.prefix.with_name(
            f"{self.prefix.name}.data-{shard_id:05d}-of-{self.num_shards:05d}"
        )

    def shard_name(self, shard_id: int) -> str:
        """The name of data file ``shard_id`` in :attr:`location`."""
        return f"{self._name}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def shard_url(self, shard_id: int) -> str:
        """Data file ``shard_id`` as the user would write it (a path or a URL)."""
        return (
            self.location.where(self.shard_name(shard_id))
            if self._remote
            else str(self.shard_path(shard_id))
        )

    def shard_size(self, shard_id: int) -> int | None:
        """The size in bytes of data file ``shard_id``, without opening it.

        At a URL the size is unknown without reading the file: ``None`` (and
        no request is made); a range past the end shows when it is read.

        Raises:
            MissingInputError: if the local file does not exist.
        """
        if self._remote:
            return None
        size = self._shard_sizes.get(shard_id)
        if size is None:
            path = self.shard_path(shard_id)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise self._missing_shard(path) from None
            self._shard_sizes[shard_id] = size
        return size

    def _missing_shard(self, path: str | os.PathLike[str]) -> MissingInputError:
        return MissingInputError(
            path,
            "data file of this checkpoint is missing (copy every "
            f"{self.prefix.name}.data-* file together with the .index)",
        )

    def _shard(self, shard_id: int) -> memoryview:
        """The bytes of data file ``shard_id``, memory-mapped on first use."""
        view = self._shards.get(shard_id)
        if view is not None:
            return view
        path = self.shard_path(shard_id)
        try:
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_size == 0:
                    view = memoryview(b"")  # an empty file cannot be mapped
                else:
                    mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
                    self._maps.append(mapped)
                    view = memoryview(mapped)
        except FileNotFoundError:
            raise self._missing_shard(path) from None
        except OSError as err:
            raise CorruptCheckpointError(
                path, f"cannot read the data file ({err.strerror})"
            ) from err
        self._shards[shard_id] = view
        return view

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
            parts = self.slice_entries(entry.key)
            for _, part in parts:
                self.check_entry(part)
            self._check_tiling(entry, [spec for spec, _ in parts])
            return
        size = self.shard_size(entry.shard_id)
        if size is not None:
            self._check_bounds(entry, size)

    def _check_bounds(self, entry: TensorEntry, shard_size: int) -> None:
        if entry.offset + entry.size > shard_size:
            raise self._bounds_error(entry, shard_size)

    def _bounds_error(self, entry: TensorEntry, shard_size: int | None) -> CorruptCheckpointError:
        known = f"{shard_size} bytes; " if shard_size is not None else ""
        return CorruptCheckpointError(
            self.shard_url(entry.shard_id),
            f"tensor {self._describe(entry)} at offset {entry.offset} with size "
            f"{entry.size} runs past the end of the data file ({known}the data file is "
            "truncated or belongs to another index; copy the checkpoint again)",
        )

    def raw_bytes(self, entry: TensorEntry) -> memoryview:
        """The bytes of ``entry`` as stored in its shard (a view, no copy).

        Raises:
            UsageError: for the full entry of a partitioned tensor, which has no bytes.
            MissingInputError: if the shard file is missing.
            CorruptCheckpointError: if the bytes lie past the end of the shard.
        """
        if entry.slices:
            raise UsageError(
                f"tensor {entry.key!r} is partitioned: its bytes are in its slices "
                "(use slice_entries)"
            )
        if self._remote:
            return self.fetch([entry])[0]
        shard = self._shard(entry.shard_id)
        self._check_bounds(entry, len(shard))
        return shard[entry.offset : entry.offset + entry.size]

    def fetch(self, entries: list[TensorEntry]) -> list[memoryview]:
        """The stored bytes of several entries; at a URL, requested concurrently by byte range.

        Locally these are views of the mapped shards, as :meth:`raw_bytes` gives.

        Raises:
            MissingInputError: if a data file is missing.
            CorruptCheckpointError: if bytes lie past the end of their data file.
            InputError: if the store cannot be read.
        """
        if not self._remote:
            return [self.raw_bytes(entry) for entry in entries]
        out: list[memoryview] = [memoryview(b"")] * len(entries)
        by_shard: dict[int, list[int]] = {}
        for number, entry in enumerate(entries):
            if entry.slices:
                self.raw_bytes(entry)  # raises the UsageError
            by_shard.setdefault(entry.shard_id, []).append(number)
        for shard_id, numbers in by_shard.items():
            ranges = [(entries[n].offset, entries[n].size) for n in numbers]
            try:
                datas = self.location.read_ranges(self.shard_name(shard_id), ranges)
            except MissingInputError:
                raise self._missing_shard(self.shard_url(shard_id)) from None
            except RangeError as err:
                at = err.offset or 0
                bad = next(
                    (
                        e
                        for e in (entries[n] for n in numbers)
                        if e.offset <= at < e.offset + e.size
                    ),
                    entries[numbers[0]],
                )
                raise self._bounds_error(bad, err.size) from None
            for n, data in zip(numbers, datas, strict=True):
                out[n] = memoryview(data)
        return out

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
        self._check_tiling(entry, [spec for spec, _ in parts])
        out = np.empty(entry.shape, dtype=entry.dtype.numpy)
        for (spec, part), view in zip(parts, views, strict=True):
            out[spec.index()] = self._decode_bytes(part, view, verify=verify)
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
            return whole[tuple(slice(a, b) for a, b in wanted)]
        parts = self.slice_entries(key)
        self._check_tiling(entry, [spec for spec, _ in parts])
        touched = []
        for spec, part in parts:
            own = box_of(spec, entry.shape)
            shared = intersect(own, wanted)
            if shared is not None:
                touched.append((own, shared, part))
        views = self.fetch([part for _, _, part in touched])
        out = np.empty(tuple(b - a for a, b in wanted), dtype=entry.dtype.numpy)
        for (own, shared, part), view in zip(touched, views, strict=True):
            values = self._decode_bytes(part, view, verify=verify)
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
        return self._decode_bytes(entry, self.raw_bytes(entry), verify=verify)

    def decode_entry(
        self, entry: TensorEntry, data: bytes | memoryview, *, verify: bool = False
    ) -> np.ndarray:
        """The tensor of one data entry from its stored bytes (as :meth:`fetch` gives them).

        Raises:
            CorruptCheckpointError: on a bad CRC (with ``verify``) or string layout.
        """
        view = data if isinstance(data, memoryview) else memoryview(data)
        if len(view) != entry.size:
            raise self._bounds_error(entry, None)
        return self._decode_bytes(entry, view, verify=verify)

    def _decode_bytes(self, entry: TensorEntry, view: memoryview, *, verify: bool) -> np.ndarray:
        if entry.dtype.is_string:
            return self._read_strings(entry, view, verify=verify)
        if verify:
            self._check_crc(entry, crc32c_of(view))
        return self._read_numeric(entry, view)

    def _read_numeric(self, entry: TensorEntry, view: memoryview) -> np.ndarray:
        import numpy as np

        dtype = entry.dtype.numpy
        count = entry.num_elements
        if count == 0:
            empty = np.empty(entry.shape, dtype=dtype)
            empty.flags.writeable = False
            return empty
        unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
        if self.byte_order == "<" or unit == 1:
            return np.frombuffer(view, dtype=dtype, count=count).reshape(entry.shape)
        # §5.4: a big-endian bundle; swap every scalar (each half of a complex).
        swapped = np.frombuffer(view, dtype=np.dtype(f">u{unit}")).astype(f"<u{unit}")
        array = swapped.view(dtype).reshape(entry.shape)
        array.flags.writeable = False
        return array

    def _check_crc(self, entry: TensorEntry, actual: int) -> None:
        if mask_crc(actual) != entry.crc32c:
            raise self._bad_data(
                entry,
                f"CRC32C mismatch: stored 0x{entry.crc32c:08x}, computed 0x{mask_crc(actual):08x}",
            )

    def _describe(self, entry: TensorEntry) -> str:
        """The user's name for an entry: its key, or its tensor and slice for a slice entry."""
        raw = entry.key.encode("utf-8", "surrogateescape")
        return self._slice_names.get(raw, repr(entry.key))

    def _bad_data(self, entry: TensorEntry, detail: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            self.shard_url(entry.shard_id),
            f"tensor {self._describe(entry)}: {detail} ({_FIX_DATA})",
        )

    # -- strings (§5.2) ----------------------------------------------------

    def _string_layout(self, entry: TensorEntry, view: memoryview) -> tuple[np.ndarray, int, int]:
        """Decode and check the lengths of a string tensor (§5.2).

        The varint lengths are decoded with numpy, not byte by byte.

        Returns:
            ``(lengths, data_start, length_crc)``: the element lengths (uint64),
            where the string bytes start, and the unmasked CRC of the lengths.
        """
        import numpy as np

        count = entry.num_elements
        size = len(view)
        if size == 0:  # only for zero elements, checked when the entry was decoded
            return np.zeros(0, dtype=np.uint64), 0, 0
        data = np.frombuffer(view, dtype=np.uint8)
        scan = data[: min(size - _LENGTH_CHECKSUM_SIZE, _MAX_LENGTH_VARINT_BYTES * count)]
        ends = np.flatnonzero(scan < 0x80)[:count]
        if len(ends) < count:
            raise self._bad_data(entry, "its string lengths are truncated")
        lengths = np.zeros(0, dtype=np.uint64)
        lengths_end = 0
        if count:
            starts = np.empty(count, dtype=np.int64)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            widths = ends - starts + 1
            if int(widths.max()) > _MAX_LENGTH_VARINT_BYTES:
                raise self._bad_data(entry, "a string length is an over-long varint")
            lengths_end = int(ends[-1]) + 1
            digit = np.arange(lengths_end, dtype=np.int64) - np.repeat(starts, widths)
            groups = (scan[:lengths_end] & 0x7F).astype(np.uint64) << (7 * digit).astype(np.uint64)
            lengths = np.add.reduceat(groups, starts)
        data_start = lengths_end + _LENGTH_CHECKSUM_SIZE
        stored_bytes = size - data_start
        # compare in float first: the exact uint64 sum of hostile lengths could wrap around
        if count and (
            int(lengths.max()) > stored_bytes
            or float(lengths.sum(dtype=np.float64)) > stored_bytes + 1
            or int(lengths.sum()) != stored_bytes
        ):
            raise self._bad_data(
                entry, f"its string lengths do not add up to the {stored_bytes} bytes stored"
            )
        if not count and stored_bytes:
            raise self._bad_data(entry, f"{stored_bytes} bytes follow an empty string tensor")
        length_crc = crc32c_of(memoryview(self._length_bytes(lengths)))
        (stored,) = _CHECKSUM[self.byte_order].unpack_from(view, lengths_end)
        if stored != mask_crc(length_crc):
            raise self._bad_data(entry, "the checksum of its string lengths does not match")
        return lengths, data_start, length_crc

    def _length_bytes(self, lengths: np.ndarray) -> bytes:
        """The lengths as TF feeds them to the CRC: uint32 each, uint64 when larger (§5.2)."""
        order = self.byte_order
        if not len(lengths) or int(lengths.max()) <= _U32_MAX:
            return lengths.astype(f"{order}u4").tobytes()
        byteorder: Literal["little", "big"] = "little" if order == "<" else "big"
        return b"".join(
            int(n).to_bytes(4 if n <= _U32_MAX else 8, byteorder) for n in lengths.tolist()
        )

    def _read_strings(self, entry: TensorEntry, view: memoryview, *, verify: bool) -> np.ndarray:
        import numpy as np

        lengths, data_start, length_crc = self._string_layout(entry, view)
        if verify:
            self._check_string_crc(entry, view, data_start, length_crc)
        blob = bytes(view[data_start:])
        stops = np.cumsum(lengths, dtype=np.uint64).tolist()
        starts = [0, *stops[:-1]]
        out = np.empty(len(stops), dtype=object)
        out[:] = [blob[a:b] for a, b in zip(starts, stops, strict=True)] if stops else []
        result = out.reshape(entry.shape)
        result.flags.writeable = False
        return result

    def _check_string_crc(
        self, entry: TensorEntry, view: memoryview, data_start: int, length_crc: int
    ) -> None:
        if len(view) == 0:
            self._check_crc(entry, 0)
            return
        crc = crc32c_of(view[data_start - _LENGTH_CHECKSUM_SIZE : data_start], length_crc)
        self._check_crc(entry, crc32c_of(view[data_start:], crc))

    # -- whole-checkpoint checks -------------------------------------------

    def verify(self) -> list[str]:
        """Check the CRC32C of every tensor (every slice of partitioned ones).

        Returns:
            The keys checked, in key order.

        Raises:
            CorruptCheckpointError: naming the first tensor whose bytes are wrong.
            MissingInputError: if a shard file is missing.
        """
        for key in self._keys:
            entry = self.entry(key)
            stored = [part for _, part in self.slice_entries(key)] if entry.slices else [entry]
            for part in stored:
                self._verify_entry(part)
        return list(self._keys)

    def _verify_entry(self, entry: TensorEntry) -> None:
        view = self.raw_bytes(entry)
        if entry.dtype.is_string:
            _, data_start, length_crc = self._string_layout(entry, view)
            self._check_string_crc(entry, view, data_start, length_crc)
        else:
            self._check_crc(entry, crc32c_of(view))

    def _check_tiling(self, entry: TensorEntry, specs: list[SliceSpec]) -> None:
        """Require the slices to cover the tensor exactly once (checked once per tensor)."""
        if entry.key in self._tiled:
            return
        try:
            check_tiling(specs, entry.shape)
        except (PartitionError, SliceSpecError) as err:
            raise self._corrupt(f"tensor {entry.key!r}: {err}") from None
        self._tiled.add(entry.key)

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Unmap the shards. Arrays already returned keep their mapping alive."""
        # An array still using a mapping makes release/close fail with BufferError;
        # that mapping is then unmapped when the last such array is garbage.
        for view in self._shards.values():
            with contextlib.suppress(BufferError):
                view.release()
        for mapped in self._maps:
            with contextlib.suppress(BufferError):
                mapped.close()
        self._shards.clear()
        self._maps.clear()

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
        return f"Checkpoint({self.url!r}, {len(self._keys)} tensors)"


def table_where(location: Location, name: str, table: Table, *, remote: bool) -> str:
    """The index file of a checkpoint as the user would write it, for messages."""
    return location.where(name + ".index") if remote else str(table.path)
