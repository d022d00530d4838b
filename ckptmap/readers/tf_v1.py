"""Read TensorFlow V1 checkpoints (``Saver(write_version=SaverDef.V1)``), read-only.

A V1 checkpoint is one file (``model.ckpt-100``), or one per device for a
sharded Saver (``model.ckpt-100-00000-of-00002``), each a sorted table in the
same format as a V2 ``.index`` (:mod:`~ckptmap.readers._table`; TensorFlow 1.x
wrote its blocks Snappy-compressed). The empty key holds a ``SavedTensorSlices``
whose ``meta`` lists every tensor of the file: name, shape, dtype and the
slices stored. Every other key is the slice key of one stored slice (the same
encoding as V2 slice keys, :mod:`ckptmap.formats.slice_key`; a whole tensor is
one slice with whole-dimension extents) and holds a ``SavedTensorSlices`` whose
``data`` is a ``TensorProto``: the values in the repeated field of its dtype
(``float_val``, ``int_val``, ``string_val``, ...) or in ``tensor_content``.

Opening reads the meta only (the files are memory-mapped, every block's CRC is
checked). A slice is decoded when it is read, and its value count is checked
against its shape before any array of that shape is made. V1 keeps no
checksums of its own beyond the block CRCs, so :meth:`V1Checkpoint.verify`
decodes every slice. A V1 checkpoint cannot be byte-copied into V2
(:func:`~ckptmap.readers.source.can_copy_bytes` is false): remap and convert
assemble it from arrays.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from ckptmap.dtypes import dtype_from_enum
from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    TensorNotFoundError,
    UnsupportedInputError,
)
from ckptmap.formats.slice_key import encode_slice_key, sliced_name
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers._limits import MAX_RANK
from ckptmap.readers._table import decode_index
from ckptmap.readers.assets import Asset, list_assets
from ckptmap.readers.source import check_box
from ckptmap.readers.state import V1_SHARD, CheckpointRef
from ckptmap.spec import TensorSpec
from ckptmap.split import SliceSpec, box_of, intersect
from ckptmap.storage.input_files import open_input

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.dtypes import DType
    from ckptmap.split import Box

__all__ = ["V1Checkpoint", "open_v1"]

_FIX = "the file is corrupt or truncated; copy it again from its source"
_KEEP_DECODED = 8  # slices kept decoded, for reads of several boxes of one slice
# the TensorProto field holding each dtype's values, as the V1 writer fills it
_FIELD = {
    "float32": "float_val",
    "float64": "double_val",
    "int64": "int64_val",
    "bool": "bool_val",
    "complex64": "scomplex_val",
    "complex128": "dcomplex_val",
    "float16": "half_val",
    "bfloat16": "half_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
    "string": "string_val",
    **dict.fromkeys(
        ("int32", "int16", "int8", "uint8", "uint16", "qint8", "quint8", "qint16", "quint16"),
        "int_val",
    ),
    "qint32": "int_val",
}


@dataclass(frozen=True, slots=True)
class _Stored:
    """One tensor of a V1 checkpoint: its listing, and where its slices are."""

    spec: TensorSpec
    parts: tuple[tuple[SliceSpec, int], ...]  # each stored slice and the file holding it


def open_v1(ref: CheckpointRef) -> V1Checkpoint:
    """Open the V1 checkpoint that :func:`~ckptmap.readers.state.find_checkpoint` found.

    Raises:
        MissingInputError: if a shard of a sharded checkpoint is missing.
        CorruptCheckpointError: if a table or its meta is damaged.
        UnsupportedInputError: if a tensor uses a feature ckptmap cannot read.
    """
    return V1Checkpoint(ref)


class V1Checkpoint:
    """An open V1 checkpoint: a :class:`~ckptmap.readers.source.Source`, read-only.

    Attributes:
        format: ``"tf-v1"``.
        url: the prefix as the user would write it (for a sharded checkpoint,
            the pattern ``model.ckpt-100-?????-of-00002``, as TensorFlow names it).
        where: the (first) table file, named in messages about the listing.
        name: the prefix's name without a shard pattern (``model.ckpt-100``).
        files: the table files, in shard order.
        byte_order: ``"<"``: values are returned little-endian.
        assets: the non-tensor files that travel with the checkpoint.
        notes: how it was found (see ``CheckpointRef.notes``).
    """

    format = "tf-v1"
    byte_order = "<"

    def __init__(self, ref: CheckpointRef) -> None:
        location = ref.location
        self.notes = ref.notes
        self.url = location.where(ref.prefix)
        self.name = V1_SHARD.sub("", ref.prefix)
        self.files = [Path(location.where(f)) for f in ref.v1_files]
        self.where = str(self.files[0])
        self.assets: list[Asset] = list_assets(location, self.name)
        _check_shards(self.files)
        self._values: list[dict[bytes, memoryview]] = []
        tensors: dict[str, _Stored] = {}
        for number, path in enumerate(self.files):
            table = decode_index(_map(path, location.where("")), path)
            values = dict(zip(table.keys, table.values, strict=True))
            self._values.append(values)
            for meta in _decode_meta(path, values.get(b"")).tensor:
                _add(tensors, _listing(path, meta, number), path)
        self._tensors = {
            k: _tiled(self.files[tensors[k].parts[0][1]], tensors[k])
            for k in sorted(tensors, key=_raw)
        }
        self._decoded: dict[tuple[str, int], np.ndarray] = {}

    # -- the listing ---------------------------------------------------------------

    def keys(self) -> list[str]:
        """The keys, sorted as unsigned bytes like TensorFlow."""
        return list(self._tensors)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._tensors

    def specs(self) -> dict[str, TensorSpec]:
        """A :class:`TensorSpec` per key, partitioned tensors with their stored slices."""
        return {k: s.spec for k, s in self._tensors.items()}

    def slices(self, key: str) -> tuple[SliceSpec, ...]:
        """The stored slices of ``key``; empty for a tensor stored whole.

        Raises:
            TensorNotFoundError: if there is no such tensor.
        """
        return self._stored(key).spec.slices

    def verify(self) -> list[str]:
        """Decode every stored slice (the tables' block CRCs were checked when opened).

        Returns:
            The keys checked, in key order.

        Raises:
            CorruptCheckpointError: naming the first tensor whose data are damaged.
        """
        for key, stored in self._tensors.items():
            for number in range(len(stored.parts)):
                self._slice(key, stored, number)
            self._decoded.clear()
        return self.keys()

    # -- values ----------------------------------------------------------------------

    def read(self, key: str) -> np.ndarray:
        """The whole tensor ``key``, read-only (strings: an ``object`` array of ``bytes``).

        Raises:
            TensorNotFoundError: if there is no such tensor.
            CorruptCheckpointError: if its records are missing or damaged.
        """
        stored = self._stored(key)
        return self.read_box(key, tuple((0, d) for d in stored.spec.shape))

    def read_box(self, key: str, box: Sequence[tuple[int, int]]) -> np.ndarray:
        """The part ``[start, stop)`` per axis of ``key``, decoding only the slices it touches.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            UsageError: if the box does not fit the tensor's shape.
            CorruptCheckpointError: if a record it needs is missing or damaged.
        """
        import numpy as np

        stored = self._stored(key)
        shape = stored.spec.shape
        wanted = check_box(key, box, shape)
        pieces: list[tuple[Box, np.ndarray]] = []
        for number, (spec, _) in enumerate(stored.parts):
            part_box = box_of(spec, shape)
            common = intersect(part_box, wanted)
            if common is None:
                continue
            values = self._slice(key, stored, number)
            index = _index(common, part_box)
            pieces.append((common, values[index]))
        if len(pieces) == 1 and pieces[0][0] == wanted:
            out: np.ndarray = pieces[0][1]
        else:
            out = np.empty(tuple(b - a for a, b in wanted), stored.spec.dtype.numpy)
            for common, values in pieces:
                out[_index(common, wanted)] = values
        out.flags.writeable = False
        return out

    def _stored(self, key: str) -> _Stored:
        try:
            return self._tensors[key]
        except KeyError:
            raise TensorNotFoundError(
                self.where,
                key,
                f"no tensor {key!r} in this checkpoint (list the keys with `ckptmap inspect`)",
            ) from None

    def _slice(self, key: str, stored: _Stored, number: int) -> np.ndarray:
        """Stored slice ``number`` of ``key``, decoded (a few are kept)."""
        found = self._decoded.get((key, number))
        if found is not None:
            return found
        spec, file_number = stored.parts[number]
        path = self.files[file_number]
        where = f"tensor {sliced_name(key, None if spec.is_full else spec.extents)!r}"
        raw = self._values[file_number].get(encode_slice_key(_raw(key), spec.extents))
        if raw is None:
            raise CorruptCheckpointError(path, f"{where} has no record in the file ({_FIX})")
        values = _decode_record(path, where, raw, key, spec, stored.spec.dtype)
        if len(self._decoded) >= _KEEP_DECODED:
            self._decoded.pop(next(iter(self._decoded)))
        self._decoded[(key, number)] = values
        return values

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        """Drop the tables and decoded slices; arrays already returned stay valid."""
        self._values = [{} for _ in self._values]
        self._decoded.clear()

    def __enter__(self) -> V1Checkpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"V1Checkpoint({self.url!r}, {len(self._tensors)} tensors)"


# -- opening -------------------------------------------------------------------------


def _check_shards(files: list[Path]) -> None:
    """Raise unless a sharded checkpoint's files are all there (their names say how many)."""
    match = V1_SHARD.search(files[0].name)
    if match is None:
        return
    count = int(match[1])
    stem = files[0].name[: match.start()]
    names = {f.name for f in files}
    for shard in range(count):
        name = f"{stem}-{shard:05d}-of-{count:05d}"
        if name not in names:
            raise MissingInputError(
                files[0].parent / name,
                f"shard {shard} of this {count}-file V1 checkpoint is missing (the tensors it "
                "holds are listed only in it; copy every file of the checkpoint)",
            )


def _map(path: Path, root: str) -> memoryview:
    """The whole file, memory-mapped read-only (regular files inside the folder only)."""
    try:
        with os.fdopen(open_input(path, Path(root)), "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    except FileNotFoundError:
        raise MissingInputError(path, "V1 checkpoint file not found") from None
    except OSError as err:
        raise CorruptCheckpointError(path, f"cannot read the file ({err.strerror})") from err


def _decode_meta(path: Path, raw: memoryview | None) -> ckptmap_tf_pb2.SavedTensorSliceMeta:
    if raw is None:
        raise CorruptCheckpointError(
            path, f"this V1 checkpoint table has no meta record (the empty key) ({_FIX})"
        )
    try:
        message = ckptmap_tf_pb2.SavedTensorSlices.FromString(bytes(raw))
    except DecodeError:
        raise CorruptCheckpointError(path, f"the V1 meta record does not parse ({_FIX})") from None
    meta: ckptmap_tf_pb2.SavedTensorSliceMeta = message.meta
    return meta


def _listing(path: Path, meta: ckptmap_tf_pb2.SavedSliceMeta, file_number: int) -> _Stored:
    key = meta.name
    where = f"tensor {key!r}"
    try:
        dtype = dtype_from_enum(int(meta.type))
    except UnsupportedInputError:
        raise UnsupportedInputError(
            f"{path}: V1 checkpoint with a tensor of dtype enum {int(meta.type)} ({key!r}) "
            "is not supported"
        ) from None
    if meta.shape.unknown_rank:
        raise CorruptCheckpointError(path, f"{where} has a shape of unknown rank ({_FIX})")
    if len(meta.shape.dim) > MAX_RANK:
        raise UnsupportedInputError(
            f"{path}: V1 checkpoint with {where} of rank {len(meta.shape.dim)} is not "
            f"supported (at most {MAX_RANK} dimensions, numpy's limit)"
        )
    shape = tuple(int(d.size) for d in meta.shape.dim)
    if any(d < 0 for d in shape):
        raise CorruptCheckpointError(path, f"{where} has a negative dimension {list(shape)}")
    if not meta.slice:
        raise CorruptCheckpointError(path, f"{where} lists no stored slice ({_FIX})")
    specs = []
    for proto in meta.slice:
        extents = tuple(
            (int(e.start), int(e.length) if e.HasField("length") else -1) for e in proto.extent
        )
        try:
            specs.append(SliceSpec(shape, extents))
        except CkptmapError as err:
            raise CorruptCheckpointError(path, f"{where} has an invalid slice: {err}") from None
    parts = tuple((s, file_number) for s in specs)
    return _Stored(TensorSpec(key, dtype, shape), parts)


def _add(tensors: dict[str, _Stored], found: _Stored, path: Path) -> None:
    """Add one file's listing of a tensor (a sharded Saver may store its slices in several)."""
    key = found.spec.key
    known = tensors.get(key)
    if known is None:
        tensors[key] = found
        return
    if (known.spec.dtype, known.spec.shape) != (found.spec.dtype, found.spec.shape):
        raise CorruptCheckpointError(
            path,
            f"tensor {key!r} is {found.spec.dtype.name} {list(found.spec.shape)} here but "
            f"{known.spec.dtype.name} {list(known.spec.shape)} in another shard",
        )
    tensors[key] = _Stored(known.spec, known.parts + found.parts)


def _tiled(path: Path, stored: _Stored) -> _Stored:
    """``stored`` with its slices checked to cover it once; a partitioned one lists them."""
    from ckptmap.split import check_tiling

    spec = stored.spec
    slices = [s for s, _ in stored.parts]
    try:
        check_tiling(slices, spec.shape)
    except CkptmapError as err:
        raise CorruptCheckpointError(path, f"tensor {spec.key!r}: {err}") from None
    if len(slices) == 1 and slices[0].is_full:
        return stored
    return _Stored(TensorSpec(spec.key, spec.dtype, spec.shape, tuple(slices)), stored.parts)


def _index(box: Box, origin: Box) -> tuple[Any, ...]:
    """A numpy index of ``box`` within an array that holds the box ``origin``."""
    return (*[slice(a - o, b - o) for (a, b), (o, _) in zip(box, origin, strict=True)], Ellipsis)


def _raw(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


# -- values --------------------------------------------------------------------------


def _decode_record(
    path: Path, where: str, raw: memoryview, key: str, spec: SliceSpec, dtype: DType
) -> np.ndarray:
    """One slice's values from its record, checked against its key, dtype and shape."""
    import numpy as np

    try:
        record = ckptmap_tf_pb2.SavedTensorSlices.FromString(bytes(raw)).data
    except DecodeError:
        raise CorruptCheckpointError(path, f"{where}: its record does not parse ({_FIX})") from None
    stored_extents = tuple(
        (int(e.start), int(e.length) if e.HasField("length") else -1) for e in record.slice.extent
    )
    if record.name != key or stored_extents != spec.extents:
        raise CorruptCheckpointError(
            path,
            f"{where}: its record names {sliced_name(record.name, stored_extents)!r} ({_FIX})",
        )
    proto = record.data
    if proto.dtype not in (0, dtype.enum):
        raise CorruptCheckpointError(
            path, f"{where}: its record holds dtype enum {proto.dtype}, not {dtype.name} ({_FIX})"
        )
    shape = spec.shape
    count = 1
    for d in shape:
        count *= d
    content = proto.tensor_content
    if content:
        if dtype.is_string or len(content) != count * dtype.itemsize:
            raise CorruptCheckpointError(
                path,
                f"{where}: tensor_content of {len(content)} bytes does not fit "
                f"{_what(dtype, shape)} ({_FIX})",
            )
        flat = np.frombuffer(content, dtype.numpy)
    else:
        field = _FIELD.get(dtype.name)
        if field is None:
            raise UnsupportedInputError(
                f"{path}: V1 checkpoint with {dtype.name} tensors is not supported ({where})"
            )
        stored = getattr(proto, field)
        per_element = 2 if dtype.name.startswith("complex") else 1
        if len(stored) != count * per_element:
            raise CorruptCheckpointError(
                path,
                f"{where}: its record holds {len(stored)} values, {_what(dtype, shape)} "
                f"needs {count * per_element} ({_FIX})",
            )
        flat = _from_field(stored, dtype)
    values: np.ndarray = flat.reshape(shape)
    values.flags.writeable = False
    return values


def _what(dtype: DType, shape: tuple[int, ...]) -> str:
    return f"a {dtype.name} slice of shape {list(shape)}"


def _from_field(stored: Any, dtype: DType) -> np.ndarray:
    """The values of a TensorProto's repeated field as an array of ``dtype``."""
    import numpy as np

    target = dtype.numpy
    if dtype.is_string:
        out = np.empty(len(stored), object)
        out[:] = [bytes(s) for s in stored]
        return out
    if dtype.name in ("float16", "bfloat16"):  # half_val holds the 16 bits in an int32
        return np.asarray(stored, np.int64).astype(np.uint16).view(target)
    if dtype.name.startswith("complex"):
        parts = np.asarray(stored, np.float32 if dtype.name == "complex64" else np.float64)
        return parts.view(target)
    return np.asarray(stored).astype(target)  # int_val widens int8..uint16 and quantized


def v1_at_url(err: MissingInputError) -> UnsupportedInputError | None:
    """For a missing ``<prefix>.index`` at a URL: the error to raise if ``<prefix>`` is V1.

    ckptmap reads V1 checkpoints (one table file per shard, no ``.index``)
    from local files only. A sharded V1 Saver's name pattern
    (``-?????-of-NNNNN``), or a file at the prefix itself, marks one; the check
    is one existence request.
    """
    from ckptmap.storage.location import open_parent
    from ckptmap.storage.urls import is_url

    where = str(err.path)
    if not is_url(where) or not where.endswith((".index", "/")):
        return None  # "/": a prefix URL was looked for as a folder too
    prefix = where.removesuffix(".index").rstrip("/")
    if not V1_SHARD.search(prefix):
        try:
            location, name = open_parent(prefix)
            if not location.exists(name):
                return None
        except InputError:
            return None
    return UnsupportedInputError(
        f"{prefix}: a V1 checkpoint (no .index) at a URL is not supported; ckptmap reads V1"
        " checkpoints from local files only: download its files (and the checkpoint state"
        " file) into a folder and pass that folder"
    )
