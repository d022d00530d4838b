"""Carrying out a plan: the bytes of each output piece, from the old source.

One algorithm, :func:`write_tensor`, writes every planned tensor into a
:class:`~ckptmap.writers.tf_bundle.BundleWriter`; where the old bytes come
from is a :class:`PieceBytes`:

- :class:`LocalBytes`: a TensorFlow checkpoint on a local disk — unchanged
  pieces are kernel copies, cut pieces copy byte runs (their source CRCs
  checked in one pass by :class:`~ckptmap.migration.source_crcs.SourceCrcs`),
  and ``--link`` points entries into hard-linked old shards;
- :class:`FetchedBytes`: a TensorFlow checkpoint at a URL — the stored pieces a
  tensor needs are fetched by byte range, checked, and written as bytes;
- :class:`ArrayBytes`: a source with no raw bytes to copy (a zarr3 store):
  every piece is read as an array.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import google_crc32c

from ckptmap.errors import CorruptCheckpointError
from ckptmap.formats.crc import crc32c_combine, unmask_crc
from ckptmap.migration.pieces import Method, PiecePlan, TensorPlan
from ckptmap.migration.source_crcs import SourceCrcs, piece_label, stored_entry
from ckptmap.migration.transforms import old_box
from ckptmap.readers.tf_bundle import Checkpoint
from ckptmap.split import PartitionError, assemble_slice, box_of
from ckptmap.storage.range_reads import ReadOptions
from ckptmap.writers.tf_bundle import BundleWriter, slice_entry_key

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.readers._bundle_index import TensorEntry
    from ckptmap.readers.source import Source

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


class PieceBytes:
    """Where the bytes of a plan's pieces come from; the default assembles from arrays."""

    def prepare(self, tensor: TensorPlan) -> None:
        """Called before the pieces of ``tensor`` are written."""

    def copy(self, writer: BundleWriter, key: str, tensor: TensorPlan, piece: PiecePlan) -> int:
        """Write a ``copy`` piece (equal to one stored piece); return the bytes written."""
        return self._write_array(writer, key, tensor, piece)

    def ranges(self, writer: BundleWriter, key: str, tensor: TensorPlan, piece: PiecePlan) -> int:
        """Write a ``ranges`` piece (byte runs of stored pieces); return the bytes written."""
        return self._write_array(writer, key, tensor, piece)

    def assemble(self, tensor: TensorPlan, piece: PiecePlan) -> np.ndarray:
        """The values of one piece, built from the stored pieces that feed it."""
        import numpy as np

        feed = piece.feed
        if feed is None or not feed.pieces:
            return np.empty(piece.shape, dtype=tensor.dtype.numpy)
        arrays = {p.index: self.stored_array(tensor, p.index) for p in feed.pieces}
        try:
            return assemble_slice(feed, arrays)
        except PartitionError as err:  # the stored arrays disagree with the index
            raise CorruptCheckpointError(
                self.where, f"tensor {tensor.source!r}: {err} (the old checkpoint is corrupt)"
            ) from None

    def stored_array(self, tensor: TensorPlan, index: int) -> np.ndarray:
        """The decoded values of stored piece ``index`` of the old key."""
        raise NotImplementedError

    def old_box(self, key: str, box: tuple[tuple[int, int], ...]) -> np.ndarray:
        """The values of ``box`` of the old key ``key`` (CRCs checked where stored)."""
        raise NotImplementedError

    def transposed(self, tensor: TensorPlan, piece: PiecePlan) -> np.ndarray:
        """One piece of a transposed key: the old key's matching box, transposed."""
        import numpy as np

        perm = tensor.transpose
        assert perm is not None  # noqa: S101 -- write_tensor calls this for transposed keys only
        box = old_box(box_of(piece.slice, tensor.shape), perm)
        return np.ascontiguousarray(self.old_box(tensor.source, box).transpose(perm))

    @property
    def where(self) -> str:
        """The old source, for messages."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`prepare` started. Idempotent."""

    def _write_array(
        self, writer: BundleWriter, key: str, tensor: TensorPlan, piece: PiecePlan
    ) -> int:
        array = self.assemble(tensor, piece)
        writer.add_array(key, array, dtype=tensor.dtype)
        return 0 if tensor.dtype.is_string else int(array.nbytes)


class LocalBytes(PieceBytes):
    """A TensorFlow checkpoint on a local disk: kernel copies and byte runs."""

    def __init__(self, ckpt: Checkpoint, *, verify: bool, linker: Linker | None = None) -> None:
        self.ckpt = ckpt
        self.verify = verify
        self.linker = linker
        self.crcs = SourceCrcs(ckpt, verify)

    @property
    def where(self) -> str:
        return str(self.ckpt.index_path)

    def old_box(self, key: str, box: tuple[tuple[int, int], ...]) -> np.ndarray:
        return self.ckpt.read_box(key, box, verify=True)

    def prepare(self, tensor: TensorPlan) -> None:
        self.crcs.prepare(tensor)

    def copy(self, writer: BundleWriter, key: str, tensor: TensorPlan, piece: PiecePlan) -> int:
        assert piece.source is not None
        entry = stored_entry(self.ckpt, tensor.source, piece.source)
        if self.verify:  # every source range is checked before it can be published
            if tensor.dtype.is_string:
                self.ckpt.verify_entry(entry)  # the layout and the CRC, as inspect --verify
            else:
                self.crcs.check(piece.source)
        if self.linker is not None:
            self.linker.reference(
                writer,
                key,
                tensor,
                piece,
                entry.shard_id,
                entry.offset,
                entry.size,
                unmask_crc(entry.crc32c),
            )
            return 0  # linked, not written
        writer.add_copy(
            key,
            self.ckpt.shard_path(entry.shard_id),
            entry.offset,
            entry.size,
            dtype=tensor.dtype,
            shape=piece.shape,
            # Checked above (with verify): the copy keeps the stored CRC.
            expected_crc32c=unmask_crc(entry.crc32c),
            verify=False,
        )
        return entry.size

    def ranges(self, writer: BundleWriter, key: str, tensor: TensorPlan, piece: PiecePlan) -> int:
        if self.linker is not None and len(piece.runs) == 1:
            run = piece.runs[0]
            entry, crc = self.crcs.run_crc(run)
            self.linker.reference(
                writer, key, tensor, piece, entry.shard_id, entry.offset + run.offset, run.size, crc
            )
            return 0  # linked, not written
        ranges: list[tuple[Path, int, int]] = []
        crc = 0
        for run in piece.runs:
            entry, run_crc = self.crcs.run_crc(run)
            crc = crc32c_combine(crc, run_crc, run.size)
            ranges.append(
                (self.ckpt.shard_path(entry.shard_id), entry.offset + run.offset, run.size)
            )
        writer.add_ranges(key, None, ranges, dtype=tensor.dtype, shape=piece.shape, crc32c=crc)
        return piece.nbytes

    def stored_array(self, tensor: TensorPlan, index: int) -> np.ndarray:
        entry = stored_entry(self.ckpt, tensor.source, tensor.stored[index])
        return self.ckpt.read_slice_entry(entry, verify=self.verify)

    def close(self) -> None:
        self.crcs.close()


class FetchedBytes(PieceBytes):
    """A TensorFlow checkpoint at a URL: a tensor's stored pieces fetched by byte range.

    With the plan's ``tensors`` (in the order they will be written) every range
    they need is planned up front and fetched ahead: nearby ranges merged, many
    requests in flight within the byte budget of ``reads``
    (:mod:`ckptmap.storage.range_reads`). A tensor written out of that order is
    fetched on its own. Every fetched piece that is written or cut is checked
    against its stored CRC32C with ``verify``; unchanged pieces keep their
    stored CRC.
    """

    def __init__(
        self,
        ckpt: Checkpoint,
        *,
        verify: bool,
        tensors: Sequence[TensorPlan] = (),
        reads: ReadOptions | None = None,
    ) -> None:
        self.ckpt = ckpt
        self.verify = verify
        self._raw: dict[int, memoryview] = {}
        self._arrays: dict[int, np.ndarray] = {}
        self._entries: list[TensorEntry] = []
        self._planned: collections.deque[tuple[TensorPlan, list[TensorEntry]]] = collections.deque(
            (t, [stored_entry(ckpt, t.source, s) for s in t.stored])
            for t in tensors
            if t.transpose is None  # transposed keys are read as array boxes
        )
        wanted = [entry for _, entries in self._planned for entry in entries]
        self._ahead = ckpt.stream(wanted, reads or ReadOptions()) if wanted else None

    @property
    def where(self) -> str:
        return self.ckpt.url

    def old_box(self, key: str, box: tuple[tuple[int, int], ...]) -> np.ndarray:
        return self.ckpt.read_box(key, box, verify=True)

    def prepare(self, tensor: TensorPlan) -> None:
        self._raw.clear()
        self._arrays.clear()
        if self._planned and self._planned[0][0] is tensor and self._ahead is not None:
            _, self._entries = self._planned.popleft()
            self._raw = {i: next(self._ahead) for i in range(len(self._entries))}
            return
        self._entries = [stored_entry(self.ckpt, tensor.source, s) for s in tensor.stored]
        self._raw = dict(enumerate(self.ckpt.fetch(self._entries)))

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()  # outstanding reads are dropped
            self._ahead = None
        self._planned.clear()

    def copy(self, writer: BundleWriter, key: str, tensor: TensorPlan, piece: PiecePlan) -> int:
        assert piece.feed is not None
        index = piece.feed.pieces[0].index
        entry = self._entries[index]
        if self.verify:
            self.ckpt.verify_entry(entry, self._raw[index])
        writer.add_bytes(
            key,
            self._raw[index],
            dtype=tensor.dtype,
            shape=piece.shape,
            crc32c=unmask_crc(entry.crc32c),
        )
        return entry.size

    def ranges(self, writer: BundleWriter, key: str, tensor: TensorPlan, piece: PiecePlan) -> int:
        index_of = {s: i for i, s in enumerate(tensor.stored)}
        parts: list[memoryview] = []
        for i in sorted({index_of[run.source] for run in piece.runs}):
            self._check(tensor, i)
        for run in piece.runs:
            raw = self._raw[index_of[run.source]]
            parts.append(raw[run.offset : run.offset + run.size])
        data = b"".join(parts)
        crc = int(google_crc32c.value(data))
        writer.add_bytes(key, data, dtype=tensor.dtype, shape=piece.shape, crc32c=crc)
        return len(data)

    def stored_array(self, tensor: TensorPlan, index: int) -> np.ndarray:
        if index not in self._arrays:
            self._arrays[index] = self.ckpt.decode_entry(
                self._entries[index], self._raw[index], verify=self.verify
            )
        return self._arrays[index]

    def _check(self, tensor: TensorPlan, index: int) -> None:
        if not self.verify:
            return
        entry = self._entries[index]
        actual = int(google_crc32c.value(bytes(self._raw[index])))
        if actual != unmask_crc(entry.crc32c):
            raise CorruptCheckpointError(
                self.ckpt.shard_url(entry.shard_id),
                f"{piece_label(tensor.source, tensor.stored[index])}: CRC32C mismatch "
                f"(the old checkpoint is corrupt; restore it from a backup)",
            )


class ArrayBytes(PieceBytes):
    """A source without raw bytes to copy (a zarr3 store): every piece read as an array box."""

    def __init__(self, source: Source) -> None:
        self.source = source

    @property
    def where(self) -> str:
        return self.source.url

    def assemble(self, tensor: TensorPlan, piece: PiecePlan) -> np.ndarray:
        return self.source.read_box(tensor.source, box_of(piece.slice, tensor.shape))

    def old_box(self, key: str, box: tuple[tuple[int, int], ...]) -> np.ndarray:
        return self.source.read_box(key, box)


class Linker:
    """In ``--link`` mode: old shards taken over by the new checkpoint, by old shard id."""

    def __init__(self, writer: BundleWriter, ckpt: Checkpoint) -> None:
        self._writer = writer
        self._ckpt = ckpt
        self._shards: dict[int, int] = {}
        self.copied = False

    def shard(self, old_shard: int) -> int:
        if old_shard not in self._shards:
            sid, linked = self._writer.add_linked_shard(self._ckpt.shard_path(old_shard))
            self._shards[old_shard] = sid
            self.copied = self.copied or not linked
        return self._shards[old_shard]

    def reference(
        self,
        writer: BundleWriter,
        key: str,
        tensor: TensorPlan,
        piece: PiecePlan,
        old_shard: int,
        offset: int,
        size: int,
        crc: int,
    ) -> None:
        """Point ``key`` at bytes of a linked old shard."""
        writer.add_reference(
            key,
            self.shard(old_shard),
            offset,
            size,
            dtype=tensor.dtype,
            shape=piece.shape,
            crc32c=crc,
        )


def write_tensor(
    writer: BundleWriter, source: PieceBytes, tensor: TensorPlan, progress: Progress | None
) -> int:
    """Write one output tensor's pieces; return the bytes written."""
    written = 0
    if tensor.transpose is None:
        source.prepare(tensor)
    if tensor.sliced:  # the full entry first; the data come piece by piece
        writer.add_sliced(
            tensor.key,
            dtype=tensor.dtype,
            full_shape=tensor.shape,
            slices=[p.slice for p in tensor.pieces if p.slice is not None],
        )
    for piece in tensor.pieces:
        key = slice_entry_key(tensor.key, piece.slice) if piece.slice else tensor.key
        if tensor.transpose is not None:
            array = source.transposed(tensor, piece)
            writer.add_array(key, array, dtype=tensor.dtype)
            size = int(array.nbytes)
        elif piece.method is Method.COPY and piece.source is not None:
            size = source.copy(writer, key, tensor, piece)
        elif piece.method is Method.RANGES:
            size = source.ranges(writer, key, tensor, piece)
        else:
            array = source.assemble(tensor, piece)
            writer.add_array(key, array, dtype=tensor.dtype)
            size = 0 if tensor.dtype.is_string else int(array.nbytes)
        written += size
        if progress is not None:
            progress(size or piece.nbytes)
    return written


def piece_bytes_for(
    source: Source,
    *,
    verify: bool,
    linker: Linker | None,
    tensors: Sequence[TensorPlan] = (),
    reads: ReadOptions | None = None,
) -> PieceBytes:
    """The byte path for an open old source.

    ``tensors`` (the plan's, in write order) lets a checkpoint at a URL fetch
    every range ahead, as ``reads`` says (see :class:`FetchedBytes`).
    """
    from ckptmap.readers.source import can_copy_bytes

    if not can_copy_bytes(source):
        return ArrayBytes(source)
    if not source.location.is_local:
        return FetchedBytes(source, verify=verify, tensors=tensors, reads=reads)
    return LocalBytes(source, verify=verify, linker=linker)
