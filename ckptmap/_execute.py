"""Carrying out a remap plan: the bytes of each output piece, from the old checkpoint.

Private to :mod:`ckptmap.remap`: :func:`write_tensor` copies, re-slices or
assembles one planned tensor into a :class:`~ckptmap.writers.tf_bundle.BundleWriter`
(checking source CRCs in one pass, or pointing into linked old shards), and
:func:`copy_assets` moves a checkpoint's non-tensor files along.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import google_crc32c
import numpy as np

from ckptmap._crc import crc32c_combine
from ckptmap._format import unmask_crc
from ckptmap.errors import (
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    OutputError,
    OutputExistsError,
)
from ckptmap.plan import (
    Method,
    PiecePlan,
    Run,
    SourcePiece,
    TensorPlan,
    box_of,
    overlapping,
    source_pieces,
)
from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry
from ckptmap.storage import is_url, location_text, open_parent
from ckptmap.writers.tf_bundle import BundleWriter, slice_entry_key

if TYPE_CHECKING:
    from ckptmap.readers.zarr_store import ZarrCheckpoint  # noqa: F401

from typing import Protocol

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


def _declare(writer: BundleWriter, tensor: TensorPlan) -> None:
    """Add the full entry of a tensor written as slices (its data come piece by piece)."""
    if tensor.sliced:
        writer.add_sliced(
            tensor.key,
            dtype=tensor.dtype,
            full_shape=tensor.shape,
            slices=[p.slice for p in tensor.pieces if p.slice is not None],
        )


def _piece_key(tensor: TensorPlan, piece: PiecePlan) -> str:
    """The index key of one stored piece: the slice key, or the tensor's key."""
    return slice_entry_key(tensor.key, piece.slice) if piece.slice else tensor.key


class RemapPlanLike(Protocol):
    """What the store path needs of a plan (``ckptmap.remap.RemapPlan``)."""

    @property
    def old_prefix(self) -> Path: ...

    @property
    def tensors(self) -> tuple[TensorPlan, ...]: ...


def _stored_entry(ckpt: Checkpoint, key: str, piece: SourcePiece) -> TensorEntry:
    """The index entry holding the bytes of one stored old piece."""
    if piece.slice is None:
        return ckpt.entry(key)
    for spec, entry in ckpt.slice_entries(key):
        if spec.extents == piece.slice.extents:
            return entry
    raise CorruptCheckpointError(
        ckpt.index_path, f"tensor {key!r}: stored slice {piece.slice} has no entry"
    )


_CRC_BUFFER = 4 << 20


def _piece_label(key: str, piece: SourcePiece) -> str:
    """``tensor 'k'`` or ``tensor 'k' slice 0,4:-`` for messages about a stored old piece."""
    label = f"tensor {key!r}"
    return label if piece.slice is None else f"{label} slice {piece.slice.format()}"


class SourceCrcs:
    """CRC32C of the byte runs that ``ranges`` pieces take from old entries; one read each.

    For one tensor at a time (:meth:`prepare`), the runs taken from each stored old
    piece cut its entry into segments. The first time a run of an entry is needed,
    one buffered pass over the entry computes the CRC of every segment; the
    entry's stored CRC is checked by combining them all (``crc32c_combine``), and
    each run's CRC is combined from the segments it spans. So every source byte
    is read once, whatever the number of output pieces cut from it, and memory
    stays at one reused buffer.

    With ``verify`` false only the segments inside runs are read and the entry's
    CRC is not checked.
    """

    def __init__(self, ckpt: Checkpoint, verify: bool) -> None:
        self._ckpt = ckpt
        self._verify = verify
        self._key = ""
        self._runs: dict[SourcePiece, list[tuple[int, int]]] = {}
        self._scans: dict[SourcePiece, tuple[TensorEntry, Future[dict[int, tuple[int, int]]]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._buffer: bytearray | None = None

    def prepare(self, tensor: TensorPlan) -> None:
        """Collect the runs of ``tensor``'s ``ranges`` pieces and start reading their entries.

        The entries are read in the order the pieces need them by one worker
        thread, so reading and checking overlap the copies of earlier pieces.
        """
        self._settle()
        self._key = tensor.source
        for piece in tensor.pieces:
            if piece.method is Method.RANGES:
                for run in piece.runs:
                    self._runs.setdefault(run.source, []).append(
                        (run.offset, run.offset + run.size)
                    )
        for source in self._runs:  # dicts keep first-use order
            entry = _stored_entry(self._ckpt, self._key, source)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="ckptmap-crc")
            label = _piece_label(self._key, source)
            runs = tuple(self._runs[source])
            self._scans[source] = (entry, self._pool.submit(self._scan, entry, runs, label))

    def run_crc(self, run: Run) -> tuple[TensorEntry, int]:
        """The old entry holding ``run`` and the unmasked CRC32C of the run's bytes.

        Raises:
            CorruptCheckpointError: if the entry's CRC does not match (with
                ``verify``) or its shard ends early.
            InputError: if the shard cannot be read.
        """
        entry, scan = self._scans[run.source]
        segments = scan.result()
        crc, pos, end = 0, run.offset, run.offset + run.size
        while pos < end:
            seg_end, seg_crc = segments[pos]
            crc = crc32c_combine(crc, seg_crc, seg_end - pos)
            pos = seg_end
        return entry, crc

    def close(self) -> None:
        """Stop the worker thread (waiting for a read in progress). Idempotent."""
        self._settle()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _settle(self) -> None:
        for _, scan in self._scans.values():
            scan.cancel()
        for _, scan in self._scans.values():
            if not scan.cancelled():
                scan.exception()  # wait; errors of unused scans do not matter
        self._scans.clear()
        self._runs.clear()

    def _scan(
        self, entry: TensorEntry, runs: tuple[tuple[int, int], ...], label: str
    ) -> dict[int, tuple[int, int]]:
        """In the worker thread: CRCs of the segments of one entry, checked against it.

        Returns ``{segment start: (segment end, crc)}`` in bytes from the entry's start.
        """
        cuts = {0, entry.size}
        for start, stop in runs:
            if not 0 <= start <= stop <= entry.size:
                raise CorruptCheckpointError(
                    self._ckpt.index_path,
                    f"{label}: the entry holds {entry.size} bytes, "
                    "too few for its shape; the index is corrupt",
                )
            cuts.update((start, stop))
        bounds = sorted(cuts)
        path = self._ckpt.shard_path(entry.shard_id)
        segments: dict[int, tuple[int, int]] = {}
        whole = 0
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise MissingInputError(
                path, "data shard not found (is the checkpoint complete?)"
            ) from None
        except OSError as err:
            raise InputError(f"{path}: cannot read {label}: {err.strerror or err}") from err
        try:
            for start, stop in itertools.pairwise(bounds):
                if start == stop:
                    continue
                if not self._verify and not any(a <= start < b for a, b in runs):
                    continue
                crc = self._crc(fd, path, entry.offset + start, stop - start, label)
                segments[start] = (stop, crc)
                whole = crc32c_combine(whole, crc, stop - start)
        finally:
            os.close(fd)
        if self._verify and whole != unmask_crc(entry.crc32c):
            raise CorruptCheckpointError(
                path,
                f"{label}: CRC32C mismatch in bytes {entry.offset}..{entry.offset + entry.size} "
                "(the old checkpoint is corrupt; restore it from a backup)",
            )
        return segments

    def _crc(self, fd: int, path: Path, offset: int, size: int, label: str) -> int:
        if self._buffer is None:
            self._buffer = bytearray(_CRC_BUFFER)
        view = memoryview(self._buffer)
        arr = np.frombuffer(self._buffer, np.uint8)
        crc, pos, end = 0, offset, offset + size
        while pos < end:
            try:
                got = os.preadv(fd, [view[: min(len(view), end - pos)]], pos)
            except OSError as err:
                raise InputError(f"{path}: cannot read {label}: {err.strerror or err}") from err
            if got <= 0:
                raise CorruptCheckpointError(
                    path,
                    f"{label}: the file ends at byte {pos}, inside the tensor "
                    "(the shard is truncated; copy it again)",
                )
            crc = int(google_crc32c.extend(crc, arr[:got]))
            pos += got
        return crc


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


def _assemble(
    ckpt: Checkpoint, tensor: TensorPlan, piece: PiecePlan, verify: bool = True
) -> np.ndarray:
    """Build one output piece with numpy from the old pieces it overlaps."""
    box = box_of(piece.slice, tensor.shape)
    sources = overlapping(source_pieces(tensor.shape, ckpt.specs()[tensor.source].slices), box)
    out = np.empty(piece.shape, dtype=tensor.dtype.numpy)
    for src in sources:
        entry = _stored_entry(ckpt, tensor.source, src)
        data = ckpt.read_slice_entry(entry, verify=verify)
        inter = tuple(
            (max(b0, s0), min(b1, s1)) for (b0, b1), (s0, s1) in zip(box, src.box, strict=True)
        )
        dst_idx = tuple(
            slice(i0 - b0, i1 - b0) for (i0, i1), (b0, _) in zip(inter, box, strict=True)
        )
        src_idx = tuple(
            slice(i0 - s0, i1 - s0) for (i0, i1), (s0, _) in zip(inter, src.box, strict=True)
        )
        out[dst_idx] = data[src_idx]
    return out


def _link_piece(
    writer: BundleWriter,
    ckpt: Checkpoint,
    tensor: TensorPlan,
    piece: PiecePlan,
    out_key: str,
    linker: Linker,
    crcs: SourceCrcs,
) -> bool:
    """Point an entry into a linked old shard when the piece is one stored byte run there."""
    if piece.method is Method.COPY and piece.source is not None:
        entry = _stored_entry(ckpt, tensor.source, piece.source)
        offset, size, crc = entry.offset, entry.size, unmask_crc(entry.crc32c)
    elif piece.method is Method.RANGES and len(piece.runs) == 1:
        run = piece.runs[0]
        entry, crc = crcs.run_crc(run)
        offset, size = entry.offset + run.offset, run.size
    else:
        return False
    writer.add_reference(
        out_key,
        linker.shard(entry.shard_id),
        offset,
        size,
        dtype=tensor.dtype,
        shape=piece.shape,
        crc32c=crc,
    )
    return True


def write_tensor(
    writer: BundleWriter,
    ckpt: Checkpoint,
    tensor: TensorPlan,
    crcs: SourceCrcs,
    progress: Progress | None,
    linker: Linker | None = None,
    verify: bool = True,
) -> int:
    """Write one output tensor's pieces; return the bytes written."""
    written = 0
    crcs.prepare(tensor)
    _declare(writer, tensor)
    for piece in tensor.pieces:
        out_key = _piece_key(tensor, piece)
        if linker is not None and _link_piece(writer, ckpt, tensor, piece, out_key, linker, crcs):
            if progress is not None:
                progress(piece.nbytes)
            continue
        if piece.method is Method.COPY and piece.source is not None:
            entry = _stored_entry(ckpt, tensor.source, piece.source)
            writer.add_copy(
                out_key,
                ckpt.shard_path(entry.shard_id),
                entry.offset,
                entry.size,
                dtype=tensor.dtype,
                shape=piece.shape,
                # Unchanged bytes keep their stored CRC: never read here, and any
                # corruption stays detectable in the output (TF, inspect --verify).
                expected_crc32c=unmask_crc(entry.crc32c),
                verify=False,
            )
            size = entry.size
        elif piece.method is Method.RANGES:
            ranges: list[tuple[Path, int, int]] = []
            crc = 0
            for run in piece.runs:
                entry, run_crc = crcs.run_crc(run)
                crc = crc32c_combine(crc, run_crc, run.size)
                ranges.append(
                    (ckpt.shard_path(entry.shard_id), entry.offset + run.offset, run.size)
                )
            writer.add_ranges(
                out_key, None, ranges, dtype=tensor.dtype, shape=piece.shape, crc32c=crc
            )
            size = piece.nbytes
        else:
            array = _assemble(ckpt, tensor, piece, verify)
            writer.add_array(out_key, array, dtype=tensor.dtype)
            size = int(array.nbytes) if not tensor.dtype.is_string else 0
        written += size
        if progress is not None:
            progress(size)
    return written


def _overlap_indices(
    box: tuple[tuple[int, int], ...], src: tuple[tuple[int, int], ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where the overlap of two boxes lies in the first (``dst``) and in the second."""
    inter = [(max(b0, s0), min(b1, s1)) for (b0, b1), (s0, s1) in zip(box, src, strict=True)]
    dst = tuple(slice(i0 - b0, i1 - b0) for (i0, i1), (b0, _) in zip(inter, box, strict=True))
    got = tuple(slice(i0 - s0, i1 - s0) for (i0, i1), (s0, _) in zip(inter, src, strict=True))
    return dst, got


def write_remote_tensor(
    writer: BundleWriter,
    ckpt: Checkpoint,
    tensor: TensorPlan,
    progress: Progress | None,
    verify: bool,
) -> int:
    """Write one output tensor from a checkpoint at a URL; return the bytes written.

    No kernel copy is possible: the stored old pieces the tensor needs are
    fetched by byte range, all at once (at most the tensor's size in memory).
    Unchanged pieces are written as bytes with their stored CRC; the others
    are assembled with numpy from the decoded old pieces (checked with
    ``verify``).
    """
    _declare(writer, tensor)
    stored = source_pieces(tensor.shape, ckpt.specs()[tensor.source].slices)
    entries = [_stored_entry(ckpt, tensor.source, src) for src in stored]
    raw = dict(zip(stored, ckpt.fetch(entries), strict=True))
    arrays: dict[SourcePiece, np.ndarray] = {}
    written = 0
    for piece in tensor.pieces:
        out_key = _piece_key(tensor, piece)
        if piece.method is Method.COPY and piece.source is not None:
            entry = _stored_entry(ckpt, tensor.source, piece.source)
            writer.add_bytes(
                out_key,
                raw[piece.source],
                dtype=tensor.dtype,
                shape=piece.shape,
                crc32c=unmask_crc(entry.crc32c),
            )
            size = entry.size
        else:
            box = box_of(piece.slice, tensor.shape)
            out = np.empty(piece.shape, dtype=tensor.dtype.numpy)
            for src in overlapping(stored, box):
                if src not in arrays:
                    entry = _stored_entry(ckpt, tensor.source, src)
                    arrays[src] = ckpt.decode_entry(entry, raw[src], verify=verify)
                dst, got = _overlap_indices(box, src.box)
                out[dst] = arrays[src][got]
            writer.add_array(out_key, out, dtype=tensor.dtype)
            size = int(out.nbytes) if not tensor.dtype.is_string else 0
        written += size
        if progress is not None:
            progress(size)
    return written


def copy_assets(
    old_prefix: Path, old_assets: Sequence[Path], prefix: Path, mode: str, force: bool
) -> tuple[list[Path], list[str]]:
    """Link or copy the old checkpoint's assets next to the new prefix.

    ``<old>.assets/`` becomes ``<new>.assets/`` and legacy ``<old>hash_filter_<i>``
    files become ``<new>hash_filter_<i>``. Files are hard-linked when ``mode`` is
    ``link`` and the filesystem allows it, copied otherwise.
    """
    notes: list[str] = []
    written: list[Path] = []
    if mode == "skip" or not old_assets:
        return written, notes
    old_text = str(old_prefix)
    linked_all = True
    for src in old_assets:
        rel = str(src)[len(old_text) :]
        dst = Path(str(prefix) + rel)
        if dst.exists() and not force:
            raise OutputExistsError(dst, "asset exists; pass --force to replace it")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".ckptmap-tmp")
        tmp.unlink(missing_ok=True)
        try:
            if is_url(src):  # an asset of a checkpoint at a URL: fetched whole
                location, name = open_parent(src)
                tmp.write_bytes(location.read_all(name))
            elif mode == "link":
                try:
                    os.link(src, tmp)
                except OSError:
                    linked_all = False
                    shutil.copy2(src, tmp)
            else:
                shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{dst}: cannot write asset ({err.strerror or err})") from err
        written.append(dst)
    if mode == "link" and not linked_all:
        notes.append("some assets were copied because they could not be hard-linked")
    return written, notes


def execute_from_store(plan: RemapPlanLike, writer: BundleWriter, progress: Progress | None) -> int:
    """Write every planned piece from a zarr3 store: each one read as an array box."""
    from ckptmap.readers.zarr_store import open_source

    written = 0
    with open_source(location_text(plan.old_prefix)) as store:
        for tensor in plan.tensors:
            _declare(writer, tensor)
            for piece in tensor.pieces:
                key = _piece_key(tensor, piece)
                array = store.read_box(tensor.source, box_of(piece.slice, tensor.shape))
                writer.add_array(key, array, dtype=tensor.dtype)
                written += piece.nbytes
                if progress is not None:
                    progress(piece.nbytes)
    return written
