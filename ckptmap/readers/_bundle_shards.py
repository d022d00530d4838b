"""The data files of a tensor bundle: where an entry's bytes are, and getting them.

A bundle's shards are ``<prefix>.data-SSSSS-of-NNNNN`` (§1.1) in the folder of
its index. Local shards are memory-mapped on first use and an entry's bytes
are a view of the mapping (no copy); shards at a URL are read by byte range
through the storage seam, several ranges at once. Every range is checked
against the file before it is returned: an entry past the end of its shard is
a :class:`~ckptmap.errors.CorruptCheckpointError` naming the shard.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

from ckptmap.errors import CorruptCheckpointError, MissingInputError, RangeError
from ckptmap.readers._bundle_index import TensorEntry
from ckptmap.storage import LocalLocation, Location
from ckptmap.storage.input_files import open_input, resolved_input

if TYPE_CHECKING:
    from ckptmap.storage.range_reads import ReadOptions

FIX_DATA = "the data file is corrupt or truncated; copy it again from its source"


class ShardFiles:
    """The data files of one bundle, opened lazily.

    Args:
        location: the folder holding the files.
        name: the prefix's name in ``location`` (``model.ckpt-100``).
        num_shards: how many data files there are.
        describe: the user's name for an entry (its key, or tensor and slice).
    """

    def __init__(
        self,
        location: Location,
        name: str,
        num_shards: int,
        describe: Callable[[TensorEntry], str],
    ) -> None:
        self.location = location
        self.num_shards = num_shards
        self._name = name
        self._describe = describe
        self._local = location if isinstance(location, LocalLocation) else None
        self._views: dict[int, memoryview] = {}
        self._sizes: dict[int, int] = {}
        self._maps: list[mmap.mmap] = []

    # -- names ---------------------------------------------------------------------

    def shard_name(self, shard_id: int) -> str:
        """The name of data file ``shard_id`` in :attr:`location`."""
        return f"{self._name}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def shard_path(self, shard_id: int) -> Path:
        """Data file ``shard_id`` as a path (for a URL, the URL as a path)."""
        return Path(self.location.where(self.shard_name(shard_id)))

    def shard_url(self, shard_id: int) -> str:
        """Data file ``shard_id`` as the user would write it (a path or a URL)."""
        return self.location.where(self.shard_name(shard_id))

    def shard_size(self, shard_id: int) -> int | None:
        """The size in bytes of a local data file; ``None`` at a URL (no request is made).

        Raises:
            MissingInputError: if the local file does not exist.
        """
        if self._local is None:
            return None
        size = self._sizes.get(shard_id)
        if size is None:
            path = self.shard_path(shard_id)
            try:
                size = resolved_input(path, Path(path).parent).stat().st_size
            except FileNotFoundError:
                raise self.missing(path) from None
            self._sizes[shard_id] = size
        return size

    # -- errors --------------------------------------------------------------------

    def missing(self, path: str | os.PathLike[str]) -> MissingInputError:
        """The error for a data file that is not there."""
        return MissingInputError(
            path,
            "data file of this checkpoint is missing (copy every "
            f"{Path(self._name).name}.data-* file together with the .index)",
        )

    def bad_data(self, entry: TensorEntry, detail: str) -> CorruptCheckpointError:
        """The error for damaged bytes of ``entry``, naming its shard."""
        return CorruptCheckpointError(
            self.shard_url(entry.shard_id),
            f"tensor {self._describe(entry)}: {detail} ({FIX_DATA})",
        )

    def past_the_end(self, entry: TensorEntry, shard_size: int | None) -> CorruptCheckpointError:
        """The error for an entry whose bytes run past the end of its shard."""
        known = f"{shard_size} bytes; " if shard_size is not None else ""
        return CorruptCheckpointError(
            self.shard_url(entry.shard_id),
            f"tensor {self._describe(entry)} at offset {entry.offset} with size "
            f"{entry.size} runs past the end of the data file ({known}the data file is "
            "truncated or belongs to another index; copy the checkpoint again)",
        )

    # -- bytes ---------------------------------------------------------------------

    def check_bounds(self, entry: TensorEntry) -> None:
        """Check that a local entry's bytes lie inside its data file (nothing read).

        Raises:
            MissingInputError: if the data file is missing.
            CorruptCheckpointError: if the bytes run past its end.
        """
        size = self.shard_size(entry.shard_id)
        if size is not None and entry.offset + entry.size > size:
            raise self.past_the_end(entry, size)

    def fetch(self, entries: list[TensorEntry]) -> list[memoryview]:
        """The stored bytes of data entries: views of local mappings, or ranges read at once.

        Raises:
            MissingInputError: if a data file is missing.
            CorruptCheckpointError: if bytes lie past the end of their data file.
            InputError: if the store cannot be read.
        """
        if self._local is not None:
            return [self._mapped(entry) for entry in entries]
        out: list[memoryview] = [memoryview(b"")] * len(entries)
        by_shard: dict[int, list[int]] = {}
        for number, entry in enumerate(entries):
            by_shard.setdefault(entry.shard_id, []).append(number)
        for shard_id, numbers in by_shard.items():
            ranges = [(entries[n].offset, entries[n].size) for n in numbers]
            try:
                datas = self.location.read_ranges(self.shard_name(shard_id), ranges)
            except MissingInputError:
                raise self.missing(self.shard_url(shard_id)) from None
            except RangeError as err:
                at = err.offset or 0
                group = [entries[n] for n in numbers]
                bad = next((e for e in group if e.offset <= at < e.offset + e.size), group[0])
                raise self.past_the_end(bad, err.size) from None
            for n, data in zip(numbers, datas, strict=True):
                out[n] = memoryview(data)
        return out

    def stream(
        self, entries: list[TensorEntry], options: ReadOptions
    ) -> Generator[memoryview, None, None]:
        """The stored bytes of ``entries`` one by one, in order, fetched ahead.

        At a URL the ranges are planned together (:mod:`ckptmap.storage.range_reads`):
        nearby ones merged, many requests in flight within ``options``' byte
        budget. Locally these are views of the mapped shards.

        Raises (while iterating):
            MissingInputError: if a data file is missing.
            CorruptCheckpointError: if bytes lie past the end of their data file.
            InputError: if the store cannot be read (naming the URL).
        """
        from ckptmap.storage.kvstore import KvLocation  # the stores' code: for URLs only

        if not isinstance(self.location, KvLocation):
            for entry in entries:
                yield self.fetch([entry])[0]
            return
        from ckptmap.storage.range_reads import RangeReader, Want

        wants = [Want(self.shard_name(e.shard_id), e.offset, e.size) for e in entries]
        reader = RangeReader(self.location, wants, options)
        delivered = 0  # the entries handed out; a failure is in a later one
        try:
            for data in reader:
                yield data
                delivered += 1
        except MissingInputError:
            raise self.missing(self.shard_url(entries[delivered].shard_id)) from None
        except RangeError as err:
            raise self.past_the_end(_at(entries, delivered, err), err.size) from None

    def _mapped(self, entry: TensorEntry) -> memoryview:
        shard = self._shard(entry.shard_id)
        if entry.offset + entry.size > len(shard):
            raise self.past_the_end(entry, len(shard))
        return shard[entry.offset : entry.offset + entry.size]

    def _shard(self, shard_id: int) -> memoryview:
        """The bytes of local data file ``shard_id``, memory-mapped on first use."""
        view = self._views.get(shard_id)
        if view is not None:
            return view
        path = self.shard_path(shard_id)
        try:
            fd = open_input(path, Path(path).parent)  # regular files inside the folder only
            try:
                if os.fstat(fd).st_size == 0:
                    view = memoryview(b"")  # an empty file cannot be mapped
                else:
                    mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                    self._maps.append(mapped)
                    view = memoryview(mapped)
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise self.missing(path) from None
        except OSError as err:
            raise CorruptCheckpointError(
                path, f"cannot read the data file ({err.strerror})"
            ) from err
        self._views[shard_id] = view
        return view

    def close(self) -> None:
        """Unmap the shards. Arrays already returned keep their mapping alive."""
        # An array still using a mapping makes release/close fail with BufferError;
        # that mapping is then unmapped when the last such array is garbage.
        for view in self._views.values():
            with contextlib.suppress(BufferError):
                view.release()
        for mapped in self._maps:
            with contextlib.suppress(BufferError):
                mapped.close()
        self._views.clear()
        self._maps.clear()


def _at(entries: list[TensorEntry], number: int, err: RangeError) -> TensorEntry:
    """The entry whose bytes a failed range read was for (the next one not yet delivered)."""
    at = err.offset or 0
    rest = entries[number:] if number < len(entries) else entries
    return next((e for e in rest if e.offset <= at < e.offset + e.size), rest[0])
