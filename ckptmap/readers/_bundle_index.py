"""The index of a tensor bundle: its header, its entries, the slices of partitioned tensors.

The decoded table (:mod:`ckptmap.readers._table`) maps every key to a
serialized proto. :class:`BundleIndex` decodes the header (§4.1) when opened
and each ``BundleEntryProto`` (§4.2) on first use, and checks every field that
will later size an allocation or a read before anything trusts it. A
partitioned tensor's slices are found under their slice keys (§6.4) and must
tile the tensor. Nothing here reads a data file; errors name the index.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ckptmap._fast_new import fast_constructor
from ckptmap.dtypes import REF_OFFSET, DType, dtype_from_enum
from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    PartitionError,
    SliceSpecError,
    TensorNotFoundError,
    UnsupportedInputError,
)
from ckptmap.formats.bundle_entry import (
    PlainEntry,
    PlainExtents,
    plain_entry_fields,
    plain_shape_dims,
    plain_sliced_entry,
)
from ckptmap.formats.bundle_header import plain_header_fields
from ckptmap.formats.slice_key import (
    SLICE_KEY_START,
    encode_slice_key,
    is_slice_key,
    key_label,
    slice_key_tensor,
)
from ckptmap.formats.string_layout import LENGTH_CHECKSUM_SIZE
from ckptmap.formats.table import BUNDLE_VERSION
from ckptmap.readers._limits import MAX_RANK as NUMPY_MAX_RANK
from ckptmap.readers._table import Table
from ckptmap.split import SliceSpec, check_tiling

if TYPE_CHECKING:
    from ckptmap.proto import ckptmap_tf_pb2
    from ckptmap.spec import TensorSpec

HEADER_KEY = b""  # §4: the header is stored under the empty key
MAX_SHARDS = 99_999  # shard numbers are written with 5 digits (§1.1)
MAX_RANK = 254  # TensorShape::MaxDimensions()
BIG_ENDIAN = 1  # BundleHeaderProto.Endianness.BIG (§4.1)
FIX_INDEX = "the index is corrupt; copy the checkpoint again from its source"
_PAST_SLICE_KEYS = bytes([SLICE_KEY_START + 1])  # the least key above every slice key


class _Header(NamedTuple):
    """The fields of the bundle header that the reader uses (§4.1)."""

    num_shards: int
    endianness: int
    producer: int
    min_consumer: int
    bad_consumers: tuple[int, ...]


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


_make_entry = fast_constructor(TensorEntry)  # the same entries, built faster


def _raw(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


class BundleIndex:
    """The entries of one ``.index`` file, decoded lazily.

    Attributes:
        where: the index file as the user would write it (named in every error).
        num_shards: the number of data files (from the header).
        byte_order: ``"<"`` or ``">"``, the byte order of the data (§5.4).
        keys: the tensors' keys in index order (no slice keys).
    """

    def __init__(self, table: Table, where: str) -> None:
        self.where = where
        self._values = dict(zip(table.keys, table.values, strict=True))
        header = self._decode_header(table)
        self.num_shards: int = header.num_shards
        self.byte_order: str = ">" if header.endianness == BIG_ENDIAN else "<"
        # The keys are strictly increasing (the table checks it), so the header's
        # empty key comes first, then the slice keys (00 ...), then the tensors.
        tensors_at = bisect.bisect_left(table.keys, _PAST_SLICE_KEYS)
        self._raw_keys = table.keys[tensors_at:]
        self.keys = [k.decode("utf-8", "surrogateescape") for k in self._raw_keys]
        self._check_slice_owners(table.keys[1:tensors_at])
        self._entries: dict[bytes, TensorEntry] = {}
        self._slices: dict[str, tuple[tuple[SliceSpec, TensorEntry], ...]] = {}
        self._tiled: set[str] = set()  # partitioned keys whose slices tile them
        # (dtype enum, raw shape bytes) of a plain entry -> its checked dtype and shape,
        # and the size in bytes its data must have (-1 for strings, whose size varies)
        self._kinds: dict[tuple[int, bytes], tuple[DType, tuple[int, ...], int]] = {}

    def corrupt(self, detail: str) -> CorruptCheckpointError:
        """An error naming the index, ``detail`` and what to do."""
        return CorruptCheckpointError(self.where, f"{detail} ({FIX_INDEX})")

    # -- the header (§4.1) ---------------------------------------------------------

    def _decode_header(self, table: Table) -> _Header:
        if not table.keys or table.keys[0] != HEADER_KEY:
            raise CorruptCheckpointError(
                self.where,
                f"the index has no header entry (the first key is not empty; {FIX_INDEX})",
            )
        plain = plain_header_fields(bytes(table.values[0]))
        header = self._decode_header_proto(table) if plain is None else _Header(*plain, 0, ())
        if not 1 <= header.num_shards <= MAX_SHARDS:
            raise self.corrupt(f"the header's shard count {header.num_shards} is out of range")
        if header.endianness not in (0, BIG_ENDIAN):
            raise self.corrupt(f"the header's endianness {header.endianness} is unknown")
        if header.producer < 0:
            raise self.corrupt(f"the header's producer version {header.producer} is negative")
        if header.min_consumer > BUNDLE_VERSION:
            raise UnsupportedInputError(
                f"{self.where}: the checkpoint needs bundle format version "
                f"{header.min_consumer} or later, newer than {BUNDLE_VERSION} which ckptmap reads "
                "(re-save it with the TensorFlow version that trains the new model)"
            )
        if BUNDLE_VERSION in header.bad_consumers:
            raise UnsupportedInputError(
                f"{self.where}: the checkpoint says readers of bundle format version "
                f"{BUNDLE_VERSION}, like ckptmap, must not read it (re-save it with the "
                "TensorFlow version that trains the new model)"
            )
        return header

    def _decode_header_proto(self, table: Table) -> _Header:
        """The header as protobuf decodes it (any layout TensorFlow does not write)."""
        from google.protobuf.message import DecodeError

        from ckptmap.proto import ckptmap_tf_pb2

        try:
            proto = ckptmap_tf_pb2.BundleHeaderProto.FromString(table.values[0])
        except DecodeError as err:
            raise CorruptCheckpointError(
                self.where, f"the bundle header cannot be decoded ({err}; {FIX_INDEX})"
            ) from err
        version = proto.version
        return _Header(
            proto.num_shards,
            proto.endianness,
            version.producer,
            version.min_consumer,
            tuple(version.bad_consumers),
        )

    def _check_slice_owners(self, slice_keys: list[bytes]) -> None:
        """Require every stored slice to belong to a tensor of the index (§6.4).

        A slice whose tensor has no full entry would be invisible to every
        listing and plan: the checkpoint is damaged, for every command.
        """
        for raw in slice_keys:
            owner = slice_key_tensor(raw)
            if owner is None:
                raise self.corrupt(f"the slice key {raw[:40].hex()} cannot be decoded")
            if not owner or owner not in self._values:
                name = owner.decode("utf-8", "surrogateescape")
                raise self.corrupt(
                    f"a slice of tensor {name!r} is stored, but the tensor has no full "
                    "entry in the index"
                )

    # -- entries (§4.2) ------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        raw = _raw(key)
        return bool(raw) and not is_slice_key(raw) and raw in self._values

    def entry(self, key: str) -> TensorEntry:
        """The entry of the tensor ``key``.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            CorruptCheckpointError: if its entry is damaged.
            UnsupportedInputError: if its dtype is unknown.
        """
        raw = _raw(key) if isinstance(key, str) else b""
        cached = self._entries.get(raw)  # a tensor's entry, or a slice's (raw starts with 00)
        if cached is not None and not is_slice_key(raw):
            return cached
        if not raw or is_slice_key(raw) or raw not in self._values:  # `key not in self`
            import difflib  # only for the message

            close = difflib.get_close_matches(key, self.keys, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TensorNotFoundError(
                self.where,
                key,
                f"no tensor {key!r} in this checkpoint "
                f"({hint}list the keys with `ckptmap inspect`)",
            )
        return self._entry(raw)

    def specs(self) -> dict[str, TensorSpec]:
        """A :class:`TensorSpec` per key (partitioned tensors with their slices), in key order."""
        from ckptmap.spec import make_tensor_spec  # the model's side: not for a listing

        return {
            key: make_tensor_spec(key, entry.dtype, entry.shape, entry.slices)
            for key, entry in zip(self.keys, self.entries(), strict=True)
        }

    def entries(self) -> Iterator[TensorEntry]:
        """The entry of every tensor, in key order, each decoded as it is reached.

        Raises:
            CorruptCheckpointError: when the iteration reaches a damaged entry.
            UnsupportedInputError: when it reaches an unknown dtype.
        """
        cache = self._entries
        values = self._values
        for key, raw in zip(self.keys, self._raw_keys, strict=True):
            entry = cache.get(raw)
            if entry is None:
                entry = cache[raw] = self._decode_entry(raw, values[raw], None, key)
            yield entry

    def describe(self, entry: TensorEntry) -> str:
        """The user's name for an entry: its key, or its tensor and slice for a slice entry."""
        return repr(key_label(entry.key))

    def _entry(self, raw: bytes, where: str | None = None) -> TensorEntry:
        """The decoded entry under ``raw``; ``where`` names it in messages (default: its key)."""
        cached = self._entries.get(raw)
        if cached is None:
            cached = self._decode_entry(raw, self._values[raw], where)
            self._entries[raw] = cached
        return cached

    def _decode_entry(
        self, raw: bytes, value: memoryview, where: str | None, key: str | None = None
    ) -> TensorEntry:
        """Decode the entry ``value`` of ``raw`` (``key``: ``raw`` decoded, when known)."""
        if key is None:
            key = raw.decode("utf-8", "surrogateescape")
        data = bytes(value)
        fields = plain_entry_fields(data)
        if fields is None:  # slices, or a layout TensorFlow does not write
            return self._decode_sliced(key, data, where or f"tensor {key_label(raw)!r}")
        enum, shape_raw, shard_id, offset, size, crc32c = fields
        kind = self._kinds.get((enum, shape_raw))
        if kind is None:  # the first entry of this dtype and shape: checked in full
            entry = self._decode_first_of_kind(
                key, data, fields, where or f"tensor {key_label(raw)!r}"
            )
            dtype = entry.dtype
            plain_size = -1 if dtype.is_string else entry.num_elements * dtype.itemsize
            self._kinds[(enum, shape_raw)] = (dtype, entry.shape, plain_size)
            return entry
        entry = _make_entry(key, kind[0], kind[1], shard_id, offset, size, crc32c)
        # shard_id, offset and size are unsigned here (varints below 2**63)
        if shard_id >= self.num_shards or size != kind[2]:
            # not plainly valid: the full check says what is wrong, if anything
            self._check_data_entry(entry, where or f"tensor {key_label(raw)!r}")
        return entry

    def _decode_first_of_kind(
        self, key: str, data: bytes, fields: PlainEntry, where: str
    ) -> TensorEntry:
        """An entry of TensorFlow's layout, checked in full as :meth:`_decode_proto` does."""
        enum, shape_raw, shard_id, offset, size, crc32c = fields
        dims = plain_shape_dims(shape_raw)
        if dims is None:  # a shape in a layout TensorFlow does not write: protobuf decides
            return self._decode_proto(key, data, where)
        dtype = self._checked_dtype(enum, where)
        shape = self._checked_shape(dims, where)
        entry = TensorEntry(key, dtype, shape, shard_id, offset, size, crc32c, ())
        self._check_data_entry(entry, where)
        return entry

    def _decode_sliced(self, key: str, data: bytes, where: str) -> TensorEntry:
        """A partitioned tensor's entry in TensorFlow's layout (as :meth:`_decode_proto` would)."""
        plain = plain_sliced_entry(data)
        dims = None if plain is None else plain_shape_dims(plain[1])
        if plain is None or dims is None:  # a layout TensorFlow does not write: protobuf decides
            return self._decode_proto(key, data, where)
        dtype = self._checked_dtype(plain[0], where)
        shape = self._checked_shape(dims, where)
        slices = tuple(self._slice(extents, shape, where) for extents in plain[2])
        if not shape:
            raise self.corrupt(f"{where} is a scalar but has slices")
        return TensorEntry(key, dtype, shape, 0, 0, 0, 0, slices)

    def _decode_proto(self, key: str, value: bytes, where: str) -> TensorEntry:
        from google.protobuf.message import DecodeError

        from ckptmap.proto import ckptmap_tf_pb2

        try:
            proto = ckptmap_tf_pb2.BundleEntryProto.FromString(value)
        except DecodeError as err:
            raise self.corrupt(f"the entry of {where} cannot be decoded ({err})") from err
        dtype = self._checked_dtype(proto.dtype, where)
        shape = self._decode_shape(proto.shape, where)
        slices = tuple(self._decode_slice(s, shape, where) for s in proto.slices)
        entry = TensorEntry(
            key, dtype, shape, proto.shard_id, proto.offset, proto.size, proto.crc32c, slices
        )
        if not slices:
            self._check_data_entry(entry, where)
        elif not shape:
            raise self.corrupt(f"{where} is a scalar but has slices")
        return entry

    def _checked_dtype(self, enum: int, where: str) -> DType:
        if enum > REF_OFFSET:
            raise UnsupportedInputError(
                f"{self.where}: {where} has reference dtype enum {enum}, "
                f"which is never stored in a checkpoint ({FIX_INDEX})"
            )
        return dtype_from_enum(enum, where=f"{self.where}: {where}")

    def _decode_shape(self, proto: ckptmap_tf_pb2.TensorShapeProto, where: str) -> tuple[int, ...]:
        if proto.unknown_rank:
            raise self.corrupt(f"{where} has a shape of unknown rank")
        if len(proto.dim) > MAX_RANK:  # checked before the sizes are converted
            raise self.corrupt(f"{where} has rank {len(proto.dim)}, more than {MAX_RANK}")
        return self._checked_shape(tuple(int(d.size) for d in proto.dim), where)

    def _checked_shape(self, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
        if len(shape) > MAX_RANK:
            raise self.corrupt(f"{where} has rank {len(shape)}, more than {MAX_RANK}")
        if len(shape) > NUMPY_MAX_RANK:
            # TensorFlow can store it, but no array (numpy's) can hold it: refused
            # here, for every command, before any plan or read is made from it.
            raise UnsupportedInputError(
                f"{self.where}: {where} has rank {len(shape)}, more than the "
                f"{NUMPY_MAX_RANK} dimensions ckptmap supports (numpy's limit)"
            )
        if any(d < 0 for d in shape):
            raise self.corrupt(f"{where} has a negative dimension in its shape {list(shape)}")
        return shape

    def _decode_slice(
        self, proto: ckptmap_tf_pb2.TensorSliceProto, shape: tuple[int, ...], where: str
    ) -> SliceSpec:
        extents = tuple(
            (int(e.start), int(e.length) if e.HasField("length") else -1) for e in proto.extent
        )
        return self._slice(extents, shape, where)

    def _slice(self, extents: PlainExtents, shape: tuple[int, ...], where: str) -> SliceSpec:
        try:
            return SliceSpec(shape, extents)
        except CkptmapError as err:
            raise self.corrupt(f"{where} has an invalid slice: {err}") from err

    def _check_data_entry(self, entry: TensorEntry, where: str) -> None:
        """Validate an entry that holds bytes, before anything is read or allocated."""
        if not 0 <= entry.shard_id < self.num_shards:
            raise self.corrupt(
                f"{where} is in shard {entry.shard_id}, but the checkpoint has {self.num_shards}"
            )
        if entry.offset < 0 or entry.size < 0:
            raise self.corrupt(f"{where} has a negative offset or size")
        count = entry.num_elements
        if entry.dtype.is_string:
            if entry.size < count + LENGTH_CHECKSUM_SIZE and not (count == 0 == entry.size):
                raise self.corrupt(
                    f"{where} stores {entry.size} bytes, too few for {count} strings"
                )
        elif entry.size != count * entry.dtype.itemsize:
            raise self.corrupt(
                f"{where} stores {entry.size} bytes, but shape {list(entry.shape)} of "
                f"{entry.dtype.name} needs {count * entry.dtype.itemsize}"
            )

    # -- slices of partitioned tensors (§6) ----------------------------------------

    def slice_entries(self, key: str) -> list[tuple[SliceSpec, TensorEntry]]:
        """The stored slices of the partitioned tensor ``key``, in stored order.

        Returns an empty list for a tensor that is not partitioned.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            CorruptCheckpointError: if a slice's entry is missing or disagrees
                with the full entry.
        """
        cached = self._slices.get(key)
        if cached is not None:
            return list(cached)
        full = self.entry(key)
        raw = _raw(key)
        parts: list[tuple[SliceSpec, TensorEntry]] = []
        for spec in full.slices:  # messages name a slice as key_label does: 'key[spec]'
            slice_key = encode_slice_key(raw, spec.extents)
            if slice_key not in self._values:
                raise self.corrupt(f"tensor {key_label(slice_key)!r} has no entry in the index")
            part = self._entry(slice_key)
            if part.slices or part.dtype != full.dtype or part.shape != spec.shape:
                raise self.corrupt(
                    f"tensor {key_label(slice_key)!r} is stored as {part.dtype.name} "
                    f"{list(part.shape)}, expected {full.dtype.name} {list(spec.shape)}"
                )
            parts.append((spec, part))
        self._slices[key] = tuple(parts)
        return parts

    def check_tiling(self, entry: TensorEntry) -> None:
        """Require the stored slices to cover the tensor exactly once (checked once per tensor).

        Raises:
            CorruptCheckpointError: naming the tensor, if two slices overlap or
                the slices leave a gap.
        """
        if entry.key in self._tiled:
            return
        specs = [spec for spec, _ in self.slice_entries(entry.key)]
        try:
            check_tiling(specs, entry.shape)
        except (PartitionError, SliceSpecError) as err:
            raise self.corrupt(f"tensor {entry.key!r}: {err}") from None
        self._tiled.add(entry.key)
