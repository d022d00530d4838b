"""Write TensorFlow V2 checkpoints (tensor bundles), streaming and crash-safe.

A :class:`BundleWriter` appends tensors to ``.data`` shards in the order they are
added and, at :meth:`BundleWriter.commit`, writes the ``.index`` table with the
keys sorted as unsigned bytes (tf-checkpoint-format.md §3-§7). Given the same
adds in the same order it writes byte-identical files, and the same bytes as
TensorFlow's own ``BundleWriter`` when fed TensorFlow's entries in TensorFlow's
order.

Crash safety: the writer writes through one commit of the commit protocol
(:mod:`ckptmap.writers.commit`): every file goes into the hidden staging
folder ``<out folder>/.ckptmap-staging-<token>/``, and ``commit`` fsyncs them
and puts the data shards into place first, then any assets staged in the same
commit, the index last, then the state file, so a checkpoint becomes visible
only when it is complete; with ``force``, at every instant the prefix holds the
old or the new checkpoint, or the next ckptmap write into the folder restores
the old one. On any exception (including ``KeyboardInterrupt``) inside the
``with`` block the staging folder is removed. Inputs are only ever opened
read-only. The prefix may be a URL: the files are then staged locally and
uploaded in the same order.

Keys are ``str`` or ``bytes``. A ``str`` is encoded as UTF-8 with
``surrogateescape``, so keys a reader decoded with ``surrogateescape`` (slice
keys, non-UTF-8 names) round-trip exactly; a ``str`` holding other lone
surrogates is rejected. ``bytes`` keys are used as given.

Example:
    >>> import numpy as np
    >>> with BundleWriter("out/model.ckpt") as writer:  # doctest: +SKIP
    ...     writer.add_array("dense/kernel", np.zeros((3, 2), np.float32))
    ...     result = writer.commit()
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from ckptmap.dtypes import BY_ENUM, DT_STRING, DType, dtype_from_numpy
from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    MissingInputError,
    OutputError,
    UsageError,
)
from ckptmap.formats.crc import crc32c as compute_crc32c
from ckptmap.formats.crc import mask_crc
from ckptmap.formats.slice_key import encode_slice_key
from ckptmap.formats.string_layout import StringLayoutError, encode_strings, string_crc
from ckptmap.formats.table import BUNDLE_VERSION
from ckptmap.proto import ckptmap_tf_pb2 as pb
from ckptmap.split import SliceSpec
from ckptmap.storage import location_text
from ckptmap.storage.input_files import resolved_input
from ckptmap.writers._atomic import new_token, output_error, remove_quietly, temp_path
from ckptmap.writers._copy import Source, SourceEnded, SourceFiles, truncated
from ckptmap.writers._entries import (
    DTypeLike,
    Entry,
    KeyLike,
    check_crc_value,
    check_dtype,
    check_range,
    check_shape,
    check_size,
    entry_bytes,
    key_bytes,
    where,
)
from ckptmap.writers._layout import numeric_bytes, string_items
from ckptmap.writers._table import TableBuilder
from ckptmap.writers._writeback import STEP as _WRITEBACK_STEP
from ckptmap.writers._writeback import Writeback
from ckptmap.writers.commit import Commit, open_commit
from ckptmap.writers.shard_cut import starts_new_shard

__all__ = ["BundleWriter", "CommitResult", "data_path", "slice_entry_key"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
RangeLike = tuple[int, int] | tuple[PathLike, int, int]

_WRITE_BUFFER = 1024 * 1024


def data_path(prefix: PathLike, shard: int, num_shards: int) -> Path:
    """The name of data shard ``shard`` of ``num_shards`` (§1.1): ``P.data-00000-of-00001``."""
    return Path(f"{os.fspath(prefix)}.data-{shard:05d}-of-{num_shards:05d}")


def slice_entry_key(key: KeyLike, spec: SliceSpec) -> str:
    """The index key under which one slice of the partitioned tensor ``key`` is stored.

    The key is TensorFlow's ``EncodeTensorNameSlice`` (§6.4). It holds ``00`` and
    often non-UTF-8 bytes, so it is returned decoded with ``surrogateescape``;
    :class:`BundleWriter` encodes it back to the same bytes.

    Example:
        >>> slice_entry_key("t_a", SliceSpec.parse("10 4 0,4:0,4")).encode(
        ...     "utf-8", "surrogateescape").hex(" ")
        '00 74 5f 61 00 01 01 02 80 84 80 84'

    Raises:
        UsageError: if ``key`` is not a valid key.
    """
    raw = encode_slice_key(key_bytes(key), spec.extents)
    return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What :meth:`BundleWriter.commit` wrote.

    Attributes:
        prefix: the checkpoint prefix (absolute).
        index_path: the ``.index`` file.
        data_paths: the ``.data`` shards, in shard order.
        entries: index entries written, not counting the header (a sliced
            tensor counts once for its full entry and once per slice).
        data_bytes: bytes in all data shards.
        index_bytes: bytes in the index file.
        files: every file the commit put in place, in commit order (data
            shards, assets, index, state file).
    """

    prefix: Path
    index_path: Path
    data_paths: tuple[Path, ...]
    entries: int
    data_bytes: int
    index_bytes: int
    files: tuple[Path, ...] = ()

    @property
    def num_shards(self) -> int:
        return len(self.data_paths)

    @property
    def bytes_written(self) -> int:
        return self.data_bytes + self.index_bytes


@dataclass(slots=True)
class _Shard:
    temp: Path
    file: IO[bytes]
    size: int = 0
    linked: bool = False  # an existing data file taken over by add_linked_shard()
    finished: bool = False  # closed and named: nothing more goes into it


class BundleWriter:
    """Write one checkpoint (``P.index`` + ``P.data-*``) tensor by tensor.

    Use it as a context manager and call :meth:`commit` at the end of the block;
    leaving the block without committing, or by an exception, discards
    everything written so far.

    Args:
        prefix: the checkpoint prefix, e.g. ``out/model.ckpt-100``, or a URL
            (``gs://bucket/run/model.ckpt-100``). Missing folders are created
            (and removed again if nothing is committed).
        num_shards: number of data shards (default 1). Tensors added without
            ``shard=`` go to the shard holding the fewest bytes so far (lowest
            id on ties), so all shards are complete only at :meth:`commit`.
        max_shard_bytes: fill shards one after another instead: the next
            tensor goes to the current shard unless it would push it past this
            many bytes (a larger tensor gets a shard of its own;
            :mod:`ckptmap.writers.shard_cut`). Without ``num_shards`` a new
            shard is opened each time and the count is known only at commit.
            With ``num_shards`` (from :func:`~ckptmap.writers.shard_cut.count_shards`
            of the planned sizes) the names are known from the start, so a full
            shard is finished at once (fsynced, named, and uploaded while the
            writer goes on, for a URL); the last shard takes whatever is left,
            and shards never reached are written empty. Cannot be combined
            with ``shard=`` or linked shards.
        force: replace an existing checkpoint at ``prefix``. The old files stay
            untouched until :meth:`commit`; old data shards that the new
            checkpoint does not overwrite are removed after the new index is in
            place; old files a new one replaces are moved aside first and come
            back if the commit does not reach its commit point (see
            :mod:`ckptmap.writers.commit`). Without ``force`` an existing
            ``P.index`` or ``P.data-*`` raises :class:`OutputExistsError`.
        byte_order: ``"<"`` (little-endian, what TensorFlow writes everywhere in
            practice) or ``">"`` (an ``endianness: BIG`` bundle, §5.4).
            ``add_array`` converts; ``add_bytes``/``add_copy`` take bytes as stored.
        output: an open commit (:func:`~ckptmap.writers.commit.open_commit`) of
            ``prefix`` to write into, when the caller stages more files (assets)
            in it or records the state file; :meth:`commit` then commits it
            with them. By default the writer opens its own (:attr:`output`).

    Raises:
        UsageError: for invalid arguments.
        OutputExistsError: if a checkpoint exists at ``prefix`` and not
            ``force``, or another ckptmap process is writing it.
        OutputError: if the output folder cannot be created or written.
    """

    def __init__(
        self,
        prefix: PathLike,
        *,
        num_shards: int | None = None,
        max_shard_bytes: int | None = None,
        force: bool = False,
        byte_order: str = "<",
        output: Commit | None = None,
    ) -> None:
        if byte_order not in ("<", ">"):
            raise UsageError(f"byte_order must be '<' or '>', not {byte_order!r}")
        if num_shards is not None and (
            isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1
        ):
            raise UsageError(f"num_shards must be a positive integer, not {num_shards!r}")
        if max_shard_bytes is not None:
            if isinstance(max_shard_bytes, bool) or not isinstance(max_shard_bytes, int):
                raise UsageError(f"max_shard_bytes must be an integer, not {max_shard_bytes!r}")
            if max_shard_bytes < 1:
                raise UsageError(f"max_shard_bytes must be positive, not {max_shard_bytes}")
        self._byte_order = byte_order
        self._max_shard_bytes = max_shard_bytes
        # shards filled in turn, their count known now: finished as soon as they are full
        self._planned = num_shards if max_shard_bytes is not None else None
        self._token = new_token()
        self._entries: dict[bytes, Entry] = {}
        self._shards: list[_Shard] = []
        self._sources = SourceFiles()
        self._writeback = Writeback()
        self._temps: list[Path] = []
        self._state = "open"
        if output is None:
            self._output = open_commit(prefix, force=force)
            self._owns_output = True
        else:
            if location_text(prefix) not in (output.prefix, location_text(output.prefix)) and (
                os.path.abspath(prefix) != output.prefix
            ):
                raise UsageError(f"{prefix}: not the prefix of the given output ({output.prefix})")
            self._output, self._owns_output = output, False
        self._prefix = Path(self._output.prefix)
        try:
            for _ in range(1 if max_shard_bytes is not None else num_shards or 1):
                self._open_shard()
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "open":
            self.abort()

    @property
    def prefix(self) -> Path:
        """The absolute checkpoint prefix being written."""
        return self._prefix

    @property
    def num_shards(self) -> int:
        """The shard count, when known; else the shards opened so far (final once committed)."""
        return len(self._shards) if self._planned is None else self._planned

    @property
    def output(self) -> Commit:
        """The commit this writer writes into: stage assets or record the state file there."""
        return self._output

    # ------------------------------------------------------------------ adding tensors

    def add_array(
        self,
        key: KeyLike,
        array: Any,
        *,
        dtype: DTypeLike | None = None,
        shard: int | None = None,
    ) -> None:
        """Add a tensor from a numpy array (or anything ``np.asarray`` accepts).

        Numeric arrays must already have the numpy dtype of ``dtype`` (no silent
        casts); ``dtype`` only chooses between TensorFlow types that share a
        numpy dtype (``qint8`` for an ``int8`` array). Strings are ``object``
        arrays of ``bytes``/``str`` or numpy ``S``/``U`` arrays; ``str`` values
        are encoded as UTF-8.

        Raises:
            UsageError: bad key (duplicate, empty, invalid), dtype mismatch,
                unknown dtype, bad shard.
            OutputError: if the shard cannot be written.
        """
        self._check_open()
        kb = self._new_key(key)
        try:
            arr = np.asarray(array)
        except (TypeError, ValueError) as err:
            raise UsageError(f"{where(kb)}: not an array: {err}") from None
        dt = self._resolve_dtype(kb, arr, dtype)
        shape = tuple(int(d) for d in arr.shape)
        chunks: list[Any]
        if dt.is_string:
            items = string_items(arr, where(kb))
            chunks, size, crc = encode_strings(items, self._byte_order)
        else:
            flat = numeric_bytes(arr, dt, self._byte_order, where(kb))
            chunks, size, crc = [flat], int(flat.size), compute_crc32c(flat)
        sid = self._pick_shard(shard, size)
        offset = self._write_chunks(sid, chunks)
        self._entries[kb] = Entry(kb, dt, shape, sid, offset, size, mask_crc(crc))

    def add_bytes(
        self,
        key: KeyLike,
        data: bytes | bytearray | memoryview,
        *,
        dtype: DTypeLike,
        shape: Sequence[int],
        crc32c: int | None = None,
        shard: int | None = None,
    ) -> None:
        """Add a tensor from its stored bytes, written unchanged.

        Numeric bytes are C-order elements in the bundle's byte order; string
        tensors must be in the §5.2 layout (lengths, length checksum, bytes),
        which is checked.

        Args:
            crc32c: the *unmasked* CRC32C of ``data`` if already known (trusted,
                not recomputed); computed otherwise.

        Raises:
            UsageError: if the size or string layout disagrees with dtype and
                shape, or for a bad key, dtype or shard.
            OutputError: if the shard cannot be written.
        """
        self._check_open()
        kb = self._new_key(key)
        dt = check_dtype(dtype, where(kb))
        dims = check_shape(shape, where(kb))
        try:
            view = memoryview(data).cast("B")
        except (TypeError, ValueError):
            raise UsageError(f"{where(kb)}: data must be a contiguous bytes-like object") from None
        size = view.nbytes
        check_size(dt, dims, size, where(kb))
        if dt.is_string:
            try:
                computed = string_crc(view, math.prod(dims), self._byte_order)
            except StringLayoutError as err:
                raise UsageError(f"{where(kb)}: not a string tensor (§5.2): {err}") from None
            crc = computed if crc32c is None else check_crc_value(crc32c, where(kb))
        else:
            crc = compute_crc32c(view) if crc32c is None else check_crc_value(crc32c, where(kb))
        sid = self._pick_shard(shard, size)
        offset = self._write_chunks(sid, [view])
        self._entries[kb] = Entry(kb, dt, dims, sid, offset, size, mask_crc(crc))

    def add_copy(
        self,
        key: KeyLike,
        src: PathLike,
        offset: int,
        size: int,
        *,
        dtype: DTypeLike,
        shape: Sequence[int],
        expected_crc32c: int | None = None,
        verify: bool = True,
        shard: int | None = None,
    ) -> None:
        """Copy a stored tensor's bytes from a source shard file, without decoding.

        The bytes move file to file in the kernel (``os.copy_file_range``, else
        ``os.sendfile``, else one reused buffer), never through Python objects.
        The CRC32C needed for the entry comes from one of:

        * ``expected_crc32c=None``: one buffered read of the source range
          computes it;
        * ``expected_crc32c=c`` and ``verify=True`` (default): the range is read
          once and its CRC compared with ``c`` *before* anything is written;
        * ``expected_crc32c=c`` and ``verify=False``: ``c`` is trusted and the
          data are never read into user space.

        ``expected_crc32c`` is the unmasked CRC (``unmask_crc(entry.crc32c)``
        for an entry read from an index).

        Raises:
            UsageError: if ``size`` disagrees with dtype and shape, or for a bad
                key, dtype or shard.
            MissingInputError: if ``src`` does not exist.
            CorruptCheckpointError: if the range lies past the end of ``src`` or
                its CRC differs from ``expected_crc32c``.
            OutputError: if the shard cannot be written.
        """
        self._check_open()
        kb = self._new_key(key)
        dt = check_dtype(dtype, where(kb))
        dims = check_shape(shape, where(kb))
        offset, size = check_range(offset, size, where(kb))
        check_size(dt, dims, size, where(kb))
        expected = None if expected_crc32c is None else check_crc_value(expected_crc32c, where(kb))
        source = self._sources.open(src)
        self._sources.check_range(source, offset, size, where(kb))
        if expected is None or verify:
            if dt.is_string:
                crc = self._sources.crc_strings(
                    source, offset, size, math.prod(dims), self._byte_order, where(kb)
                )
            else:
                crc = self._sources.crc_ranges([(source, offset, size)], where(kb))
            if expected is not None and crc != expected:
                raise CorruptCheckpointError(
                    source.path,
                    f"{where(kb)}: CRC32C mismatch in bytes {offset}..{offset + size} "
                    f"(expected {expected:#010x}, computed {crc:#010x}); the source "
                    "checkpoint is corrupt, restore it from a backup",
                )
        else:
            crc = expected
        sid = self._pick_shard(shard, size)
        start = self._copy_pieces(sid, [(source, offset, size)], kb)
        self._entries[kb] = Entry(kb, dt, dims, sid, start, size, mask_crc(crc))

    def add_ranges(
        self,
        key: KeyLike,
        src: PathLike | None,
        ranges: Sequence[RangeLike],
        *,
        dtype: DTypeLike,
        shape: Sequence[int],
        crc32c: int | None = None,
        shard: int | None = None,
    ) -> None:
        """Add a numeric tensor made of byte ranges of source files, in order.

        Typical use: a slice taken along the first axis of a stored tensor, or a
        full tensor merged from slices split along the first axis, is a
        concatenation of contiguous ranges. Each range is ``(offset, size)`` in
        ``src`` or ``(path, offset, size)`` in another file; adjacent ranges are
        merged, then copied like :meth:`add_copy`.
        For many small pieces (a split along a later axis) prefer slicing a
        memory-mapped array and :meth:`add_array`.

        Args:
            crc32c: the *unmasked* CRC32C of the concatenated ranges if the
                caller already knows it (e.g. combined with
                :func:`ckptmap.formats.crc.crc32c_combine` from CRCs it computed while
                checking the source entries): trusted, and the ranges are then
                never read into user space. ``None`` (default): one buffered
                read of the ranges computes it.

        Raises:
            UsageError: for string dtypes, sizes that disagree with dtype and
                shape, malformed ranges, a bad key or shard.
            MissingInputError, CorruptCheckpointError: as in :meth:`add_copy`.
            OutputError: if the shard cannot be written.
        """
        self._check_open()
        kb = self._new_key(key)
        dt = check_dtype(dtype, where(kb))
        if dt.is_string:
            raise UsageError(
                f"{where(kb)}: add_ranges() cannot split string tensors; "
                "use add_array() or add_copy()"
            )
        dims = check_shape(shape, where(kb))
        pieces: list[tuple[Source, int, int]] = []
        for item in ranges:
            source, offset, size = self._resolve_range(item, src, kb)
            if size == 0:
                continue
            if pieces and pieces[-1][0] is source and pieces[-1][1] + pieces[-1][2] == offset:
                last = pieces[-1]
                pieces[-1] = (source, last[1], last[2] + size)
            else:
                pieces.append((source, offset, size))
        total = sum(p[2] for p in pieces)
        check_size(dt, dims, total, where(kb))
        if crc32c is None:
            crc = self._sources.crc_ranges(pieces, where(kb))
        else:
            crc = check_crc_value(crc32c, where(kb))
        sid = self._pick_shard(shard, total)
        start = self._copy_pieces(sid, pieces, kb)
        self._entries[kb] = Entry(kb, dt, dims, sid, start, total, mask_crc(crc))

    def add_sliced(
        self,
        key: KeyLike,
        *,
        dtype: DTypeLike,
        full_shape: Sequence[int],
        slices: Sequence[SliceSpec],
    ) -> None:
        """Add the full entry of a partitioned tensor: dtype, full shape and its slices.

        The entry holds no data. Each slice's data must be added separately
        (with any ``add_*`` method) under ``slice_entry_key(key, spec)`` with the
        slice's shape and the same dtype; :meth:`commit` checks that they were.
        ``slices`` are stored in the order given; spell extents exactly as the
        reading graph will ask for them (§6.4).

        Raises:
            UsageError: if there are no slices, a slice belongs to another
                shape, two slices are equal, or for a bad key or dtype.
        """
        self._check_open()
        kb = self._new_key(key)
        dt = check_dtype(dtype, where(kb))
        dims = check_shape(full_shape, where(kb))
        if not dims:
            raise UsageError(f"{where(kb)}: a scalar cannot be partitioned into slices")
        specs = tuple(slices)
        if not specs:
            raise UsageError(f"{where(kb)}: add_sliced() needs at least one slice")
        seen: set[tuple[tuple[int, int], ...]] = set()
        for spec in specs:
            if not isinstance(spec, SliceSpec):
                raise UsageError(f"{where(kb)}: slices must be SliceSpec, not {spec!r}")
            if spec.full_shape != dims:
                raise UsageError(
                    f"{where(kb)}: slice {spec} belongs to a tensor of shape "
                    f"{list(spec.full_shape)}, not {list(dims)}"
                )
            if any(length == 0 for _, length in spec.extents):
                raise UsageError(f"{where(kb)}: slice {spec} is empty")
            if spec.extents in seen:
                raise UsageError(f"{where(kb)}: slice {spec} is listed twice")
            seen.add(spec.extents)
        self._entries[kb] = Entry(kb, dt, dims, slices=specs)

    def add_linked_shard(self, src: PathLike) -> tuple[int, bool]:
        """Take an existing data file over as one more shard, without copying its bytes.

        The file is hard-linked under a temporary name and renamed into place
        with the other shards at :meth:`commit`; its bytes are never rewritten
        (checkpoint files are immutable once written, and neither ckptmap nor
        TensorFlow modifies one in place). Where a hard link is impossible
        (another filesystem, no permission), the file is copied instead.
        Entries point into it with :meth:`add_reference`.

        Returns:
            ``(shard id, True)`` when linked, ``(shard id, False)`` when copied.

        Raises:
            MissingInputError: if ``src`` does not exist.
            UsageError: combined with ``max_shard_bytes``.
            OutputError: if neither a link nor a copy can be made.
        """
        self._check_open()
        if self._max_shard_bytes is not None:
            raise UsageError("linked shards cannot be combined with max_shard_bytes")
        try:  # a link inside the model folder stands for its target; nothing else is linked
            source = resolved_input(src, Path(src).parent)
        except MissingInputError:
            raise MissingInputError(
                src, "data shard not found (is the checkpoint complete?)"
            ) from None
        index = len(self._shards)
        temp = temp_path(self._output.stage_prefix, self._token, f"-data-{index}")
        linked = True
        try:
            try:
                os.link(source, temp)
            except OSError:
                linked = False
                shutil.copyfile(source, temp)
            file = open(temp, "rb")  # noqa: SIM115 - closed at commit/abort
        except OSError as err:
            remove_quietly(temp)
            raise self._fail(self._prefix, err, "cannot link or copy a data shard") from err
        self._temps.append(temp)
        self._shards.append(_Shard(temp, file, size=os.fstat(file.fileno()).st_size, linked=True))
        return index, linked

    def add_reference(
        self,
        key: KeyLike,
        shard: int,
        offset: int,
        size: int,
        *,
        dtype: DTypeLike,
        shape: Sequence[int],
        crc32c: int,
    ) -> None:
        """Add an entry for bytes already present in a linked shard.

        Args:
            key: the entry's key.
            shard: a shard id returned by :meth:`add_linked_shard`.
            offset: where the tensor's bytes start in that file.
            size: their length.
            dtype: the tensor's dtype.
            shape: the tensor's shape.
            crc32c: the unmasked CRC32C of those bytes (the caller computed or
                verified it; this method reads nothing).

        Raises:
            UsageError: if ``shard`` is not a linked shard, the range lies past
                its end, or ``size`` disagrees with dtype and shape.
        """
        self._check_open()
        kb = self._new_key(key)
        dt = check_dtype(dtype, where(kb))
        dims = check_shape(shape, where(kb))
        offset, size = check_range(offset, size, where(kb))
        check_size(dt, dims, size, where(kb))
        if not (0 <= shard < len(self._shards) and self._shards[shard].linked):
            raise UsageError(f"{where(kb)}: shard {shard} is not a linked shard")
        if offset + size > self._shards[shard].size:
            raise UsageError(
                f"{where(kb)}: bytes {offset}..{offset + size} lie past the end of shard {shard}"
            )
        self._entries[kb] = Entry(kb, dt, dims, shard, offset, size, mask_crc(crc32c))

    # ------------------------------------------------------------------ commit / abort

    def commit(self) -> CommitResult:
        """Finish the checkpoint: fsync the shards, write the index, commit the output.

        The shards get their final names ``P.data-SSSSS-of-NNNNN`` and the
        index ``P.index`` in the staging folder, then the output's commit puts
        them into place: data shards, the assets staged in :attr:`output`, the
        index (the commit point), the state file if :attr:`output` records one.

        Raises:
            UsageError: if a slice declared with :meth:`add_sliced` was never
                added (or has the wrong dtype or shape); the writer stays open.
            OutputExistsError: if, without ``force``, a checkpoint appeared at
                the prefix meanwhile.
            OutputError: if writing or renaming fails (nothing is left behind;
                an old checkpoint at the prefix is as it was).
        """
        self._check_open()
        self._check_slices()
        output = self._output
        try:
            while len(self._shards) < self.num_shards:  # planned shards never reached: empty
                self._open_shard()
        except BaseException:
            self.abort()
            raise
        num_shards = len(self._shards)
        names = [data_path(output.name, i, num_shards).name for i in range(num_shards)]
        index_name = f"{output.name}.index"
        try:
            for sid, shard in enumerate(self._shards):
                if not shard.finished:
                    self._finish_shard(sid)
            index_bytes = self._write_index(output.stage_path(index_name), num_shards)
        except OSError as err:
            raise self._fail(self._prefix, err) from err
        except BaseException:
            self.abort()
            raise
        try:
            placed = output.commit()
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._sources.close()
        return CommitResult(
            prefix=self._prefix,
            index_path=Path(output.where(index_name)),
            data_paths=tuple(Path(output.where(n)) for n in names),
            entries=len(self._entries),
            data_bytes=sum(s.size for s in self._shards),
            index_bytes=index_bytes,
            files=tuple(Path(output.where(n)) for n in placed),
        )

    def abort(self) -> None:
        """Discard everything written: close files, remove the staging folder. Idempotent.

        After a commit this does nothing to the checkpoint. An :attr:`output`
        given by the caller is left to the caller (its ``with`` block aborts it).
        """
        if self._state != "open":
            return
        self._state = "aborted"
        self._writeback.finish()
        for shard in self._shards:
            with contextlib.suppress(OSError):  # the file is being thrown away
                shard.file.close()
        self._sources.close()
        for temp in self._temps:
            remove_quietly(temp)
        self._temps.clear()
        if self._owns_output:
            self._output.abort()

    # ------------------------------------------------------------------ internals: keys

    def _check_open(self) -> None:
        if self._state != "open":
            raise UsageError(f"{self._prefix}: the checkpoint writer is already {self._state}")

    def _new_key(self, key: KeyLike) -> bytes:
        kb = key_bytes(key)
        if kb in self._entries:
            raise UsageError(f"{where(kb)} was added twice (keys must be unique)")
        return kb

    def _resolve_dtype(self, kb: bytes, arr: NDArray[Any], dtype: DTypeLike | None) -> DType:
        label = where(kb)
        if dtype is not None:
            dt = check_dtype(dtype, label)
            if dt.is_string and arr.dtype.kind not in "OSU":
                raise UsageError(f"{label}: a {arr.dtype} array cannot be stored as string")
            return dt
        if arr.dtype.kind in "OSU":
            return BY_ENUM[DT_STRING]
        try:
            return dtype_from_numpy(arr.dtype)
        except CkptmapError:
            raise UsageError(
                f"{label}: numpy dtype {arr.dtype} has no TensorFlow equivalent; "
                "cast the array or pass dtype="
            ) from None

    def _check_slices(self) -> None:
        for entry in self._entries.values():
            for spec in entry.slices:
                part = self._entries.get(encode_slice_key(entry.key, spec.extents))
                label = where(entry.key)
                if part is None:
                    raise UsageError(
                        f"{label}: slice {spec} was declared by add_sliced() but its data "
                        "were never added (add them under slice_entry_key(key, spec))"
                    )
                if part.slices or part.dtype != entry.dtype or part.shape != spec.shape:
                    raise UsageError(
                        f"{label}: slice {spec} was added as {part.dtype.name} "
                        f"{list(part.shape)}, expected {entry.dtype.name} {list(spec.shape)}"
                    )

    # ------------------------------------------------------------------ internals: files

    def _open_shard(self) -> int:
        index = len(self._shards)
        temp = temp_path(self._output.stage_prefix, self._token, f"-data-{index}")
        try:
            file = open(temp, "xb", buffering=_WRITE_BUFFER)  # noqa: SIM115 - closed at commit/abort
        except OSError as err:
            raise self._fail(self._prefix, err) from err
        self._temps.append(temp)
        self._shards.append(_Shard(temp, file))
        return index

    def _finish_shard(self, sid: int) -> None:
        """Close shard ``sid`` for good: fsync it, give it its final name, publish it.

        A URL output starts uploading it (``Commit.finished``) while the writer goes on.
        """
        shard = self._shards[sid]
        name = data_path(self._output.name, sid, self.num_shards).name
        self._writeback.finish()  # no writeback request may touch the file once it is closed
        try:
            shard.file.flush()
            os.fsync(shard.file.fileno())
            shard.file.close()
            os.rename(shard.temp, self._output.stage_path(name))
        except OSError as err:
            raise self._fail(self._prefix, err) from err
        self._temps.remove(shard.temp)
        shard.finished = True
        try:
            self._output.finished(name)
        except BaseException:
            self.abort()
            raise

    def _pick_shard(self, shard: int | None, size: int) -> int:
        if self._max_shard_bytes is not None:
            if shard is not None:
                raise UsageError("shard= cannot be combined with max_shard_bytes")
            current = self._shards[-1]
            if not starts_new_shard(current.size, size, self._max_shard_bytes):
                return len(self._shards) - 1
            if self._planned is not None:
                if len(self._shards) == self._planned:  # the last one takes the rest
                    return len(self._shards) - 1
                self._finish_shard(len(self._shards) - 1)
            return self._open_shard()
        count = len(self._shards)
        if shard is None:
            own = [i for i in range(count) if not self._shards[i].linked]
            return min(own, key=lambda i: (self._shards[i].size, i))
        try:
            sid = operator.index(shard)
        except TypeError:
            raise UsageError(f"shard must be an integer, not {shard!r}") from None
        if not 0 <= sid < count:
            raise UsageError(f"shard {sid} does not exist (this writer has {count} shards)")
        if self._shards[sid].linked:
            raise UsageError(f"shard {sid} is a linked file; nothing can be written into it")
        return sid

    def _write_chunks(self, sid: int, chunks: Sequence[Any]) -> int:
        shard = self._shards[sid]
        offset = shard.size
        try:
            for chunk in chunks:
                shard.file.write(chunk)
                shard.size += memoryview(chunk).nbytes
            fd = shard.file.fileno()
            if self._writeback.due(fd, shard.size):
                shard.file.flush()
                self._writeback.wrote(fd, shard.size)
        except OSError as err:
            raise self._fail(self._prefix, err) from err
        return offset

    def _write_index(self, temp: Path, num_shards: int) -> int:
        header = pb.BundleHeaderProto(num_shards=num_shards)
        if self._byte_order == ">":
            header.endianness = pb.BundleHeaderProto.BIG
        header.version.producer = BUNDLE_VERSION
        with open(temp, "xb", buffering=_WRITE_BUFFER) as f:
            table = TableBuilder(f)
            table.add(b"", header.SerializeToString(deterministic=True))
            for kb in sorted(self._entries):
                table.add(kb, entry_bytes(self._entries[kb]))
            size = table.finish()
            f.flush()
            os.fsync(f.fileno())
        return size

    def _fail(
        self, path: Path, err: OSError, action: str = "cannot write the checkpoint"
    ) -> OutputError:
        """Abort and return the :class:`OutputError` to raise for ``err``."""
        exc = output_error(path, err, action)
        self.abort()
        return exc

    # ------------------------------------------------------------------ internals: copying

    def _resolve_range(
        self, item: RangeLike, src: PathLike | None, kb: bytes
    ) -> tuple[Source, int, int]:
        if len(item) == 3:
            path, offset, size = item
        elif len(item) == 2:
            offset, size = item
            if src is None:
                raise UsageError(f"{where(kb)}: range {item!r} needs src or a path")
            path = src
        else:
            raise UsageError(f"{where(kb)}: a range is (offset, size) or (path, offset, size)")
        offset, size = check_range(offset, size, where(kb))
        source = self._sources.open(path)
        self._sources.check_range(source, offset, size, where(kb))
        return source, offset, size

    def _copy_pieces(self, sid: int, pieces: Sequence[tuple[Source, int, int]], kb: bytes) -> int:
        """Append the ranges to shard ``sid``; return the offset of the first byte."""
        shard = self._shards[sid]
        start = pos = shard.size
        try:
            shard.file.flush()
            fd = shard.file.fileno()
            for source, offset, size in pieces:
                done = 0
                while done < size:  # in steps, so writeback starts while copying
                    step = min(size - done, _WRITEBACK_STEP)
                    self._sources.copy(source, offset + done, step, fd, pos)
                    pos += step
                    done += step
                    self._writeback.wrote(fd, pos)
            shard.file.seek(pos)
        except SourceEnded as short:
            self._rollback(shard, start)
            raise truncated(short.source, where(kb), short.position) from None
        except OSError as err:
            raise self._fail(self._prefix, err, f"cannot copy {where(kb)}") from err
        shard.size = pos
        return start

    def _rollback(self, shard: _Shard, size: int) -> None:
        """Cut a shard back to ``size`` bytes after a failed copy."""
        try:
            shard.file.truncate(size)
            shard.file.seek(size)
        except OSError as err:
            raise self._fail(self._prefix, err) from err
