"""URLs through tensorstore's kvstore drivers (``file``, ``memory``, ``http(s)``, ``gs``, ``s3``).

tensorstore is imported only here, and only when a URL is opened, so local
commands never pay for it. Remote reads go by byte range; several ranges are
requested at once (:meth:`KvLocation.read_ranges`), and every byte is counted
by :mod:`ckptmap.storage.io`.

Writes: a kvstore write takes the whole value (``str | bytes``) and returns a
future; the ``s3`` driver sends it as one signed ``PUT`` (the payload's SHA-256
is part of the signature), the ``gcs`` driver as one upload request. Neither
offers multi-part or appending uploads, so a file is written whole, from
memory, once it is complete; several files are written at once with
:meth:`KvLocation.start_write` (the drivers' own request-concurrency limits
apply).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ckptmap.errors import (
    CkptmapError,
    InputError,
    MissingInputError,
    OutputError,
    RangeError,
)
from ckptmap.storage.io import count_io
from ckptmap.storage.location import Location, PendingWrite
from ckptmap.storage.retry import retries_exhausted
from ckptmap.storage.store_config import open_kvstore, store_spec

if TYPE_CHECKING:
    import tensorstore

__all__ = ["KvLocation", "PendingRange", "translate_error"]

READ_PART_BYTES = 64 << 20  # a longer range is fetched as concurrent parts of this size
MAX_IN_FLIGHT_BYTES = 256 << 20  # bytes requested at once by read_ranges
COALESCE_GAP_BYTES = 4096  # ranges this close are fetched as one request
_STATUS = re.compile(r"^(?P<code>[A-Z_]+): (?P<detail>.*)$", re.DOTALL)
_NOISE = re.compile(r"\s*\[[a-z_]+='.*?'\]", re.DOTALL)  # tensorstore's payload annotations
_SIZE = re.compile(r"value of size (\d+)")


class KvLocation(Location):
    """A folder URL read and written through a tensorstore kvstore driver.

    Reads are by byte range; a long range is fetched as concurrent parts. A
    store that cannot tell a file's size without reading it (all of them,
    through tensorstore) answers ``None`` from :meth:`size`.
    """

    is_local = False

    def __init__(self, url: str) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.spec = store_spec(self.url)  # the store settings in force (endpoint, credentials)
        self._store: tensorstore.KvStore | None = None
        self._root: tensorstore.KvStore | None = None  # the bucket's, for listings

    def __repr__(self) -> str:
        return f"KvLocation({self.url!r})"

    @property
    def store(self) -> tensorstore.KvStore:
        """The open kvstore (opened on first use)."""
        if self._store is None:
            self._store = self._open(self.spec)
        return self._store

    def _open(self, spec: dict[str, Any]) -> tensorstore.KvStore:
        try:
            return open_kvstore(spec)
        except ValueError as err:
            raise translate_error(err, self.url) from None

    def where(self, name: str) -> str:
        return self.url + name

    def child(self, name: str) -> KvLocation:
        return KvLocation(self.url + name.strip("/") + "/")

    def exists(self, name: str) -> bool:
        try:
            result = self.store.read(name, byte_range=slice(0, 0)).result()
        except ValueError as err:
            raise translate_error(err, self.where(name)) from None
        count_io(read=0)
        return bool(result.state == "value")

    def size(self, name: str) -> int | None:
        if self.exists(name):
            return None
        raise MissingInputError(self.where(name), "no such file")

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        for offset, length in ranges:
            if offset < 0 or length < 0:
                raise RangeError(self.where(name), None, f"invalid byte range {offset}+{length}")
        groups = _coalesce(ranges)
        datas = self._read_spans(name, [(start, end - start) for start, end, _ in groups])
        out: list[bytes] = [b""] * len(ranges)
        for (start, end, members), data in zip(groups, datas, strict=True):
            for number in members:
                offset, length = ranges[number]
                whole = offset == start and offset + length == end
                out[number] = data if whole else data[offset - start : offset - start + length]
        return out

    def _read_spans(self, name: str, spans: list[tuple[int, int]]) -> list[bytes]:
        """Read each ``(offset, length)``: long ones in parts, MAX_IN_FLIGHT_BYTES at a time."""
        parts: list[tuple[int, int, int]] = []  # (span number, offset, length)
        for number, (offset, length) in enumerate(spans):
            parts.extend(
                (number, start, min(READ_PART_BYTES, offset + length - start))
                for start in range(offset, offset + max(length, 1), READ_PART_BYTES)
            )
        chunks: list[list[bytes]] = [[] for _ in spans]
        batch: list[tuple[int, int, int]] = []
        in_flight = 0
        for part in parts:
            if batch and in_flight + part[2] > MAX_IN_FLIGHT_BYTES:
                self._fetch(name, batch, chunks)
                batch, in_flight = [], 0
            batch.append(part)
            in_flight += part[2]
        if batch:
            self._fetch(name, batch, chunks)
        return [c[0] if len(c) == 1 else b"".join(c) for c in chunks]

    def _fetch(
        self, name: str, batch: list[tuple[int, int, int]], chunks: list[list[bytes]]
    ) -> None:
        """Issue every read of ``batch`` at once, then collect them in order."""
        pending = [self.start_read(name, s, n) for _, s, n in batch]
        for (number, _, _), read in zip(batch, pending, strict=True):
            chunks[number].append(read.result())

    def start_read(self, name: str, offset: int, length: int) -> PendingRange:
        """Start reading ``length`` bytes of ``name`` at ``offset``; ``result()`` waits for them.

        The errors of :meth:`read_ranges` are raised by ``result()``.
        """
        return PendingRange(self, name, offset, length)

    def read_all(self, name: str, *, max_bytes: int | None = None) -> bytes:
        where = self.where(name)
        try:
            result = self.store.read(name).result()
        except ValueError as err:
            raise translate_error(err, where) from None
        value: bytes = result.value
        count_io(read=len(value))
        if result.state != "value":
            raise MissingInputError(where, "no such file (not found at this URL)")
        if max_bytes is not None and len(value) > max_bytes:
            raise InputError(f"{where}: larger than {max_bytes} bytes, too large for this file")
        return value

    def list(self, prefix: str = "") -> list[str] | None:
        """The names under this folder starting with ``prefix``; ``None`` if the store cannot list.

        An object store's listing goes through the bucket's root with the
        folder's path as part of the range, and every name returned is checked
        against it: some servers (the GCS emulator) ignore the end of a
        listing's range, and tensorstore cuts a folder's path off each name by
        its length alone, which would turn another folder's objects into
        names here (``labels/index`` listed under ``k0/`` as ``els/index``).
        """
        import tensorstore as ts

        base = self.spec.get("path", "") if self.spec["driver"] in _OBJECT_STORES else ""
        store = self.store if not base else self._bucket_root()
        wanted = base + prefix
        try:
            if wanted:
                keys = store.list(ts.KvStore.KeyRange(wanted, _prefix_end(wanted))).result()
            else:
                keys = store.list().result()
        except NotImplementedError:
            return None
        except ValueError as err:
            raise translate_error(err, self.where(prefix)) from None
        count_io(read=0)
        names = (k.decode("utf-8", "surrogateescape") for k in keys)
        return sorted(n[len(base) :] for n in names if n.startswith(wanted))

    def _bucket_root(self) -> tensorstore.KvStore:
        if self._root is None:
            self._root = self._open({**self.spec, "path": ""})
        return self._root

    def write(self, name: str, data: bytes | memoryview) -> None:
        self.start_write(name, bytes(data)).result()

    def start_write(self, name: str, data: bytes) -> PendingWrite:
        """Start uploading ``data`` as ``name`` (a tensorstore future); ``result()`` waits.

        tensorstore holds the value until the store has it: the caller may drop
        ``data`` at once, but the bytes stay in memory while the write is in flight.
        """
        return _KvWrite(self, name, data)

    def delete(self, name: str) -> None:
        with contextlib.suppress(ValueError, NotImplementedError, CkptmapError):
            # one DELETE of one key (a delete_range lists first; the GCS emulator ignores
            # the listing's range and would delete the whole bucket)
            self.store.write(name, None).result()


class PendingRange:
    """One byte range being read (a tensorstore future); :meth:`result` checks what came."""

    def __init__(self, location: KvLocation, name: str, offset: int, length: int) -> None:
        self._where = location.where(name)
        self._offset = offset
        self._length = length
        try:
            self._future = location.store.read(name, byte_range=slice(offset, offset + length))
        except ValueError as err:
            raise translate_error(err, self._where, offset=offset, length=length) from None

    def result(self) -> bytes:
        """The bytes, once they are all there.

        Raises:
            MissingInputError: if the file does not exist.
            RangeError: if the range runs past the end of the file.
            InputError: if the store cannot be read (the message names the URL).
        """
        where, start, length = self._where, self._offset, self._length
        try:
            result = self._future.result()
        except ValueError as err:
            raise translate_error(err, where, offset=start, length=length) from None
        value: bytes = result.value
        count_io(read=len(value))
        if result.state != "value":
            raise MissingInputError(where, "no such file (not found at this URL)")
        if len(value) > length:
            raise InputError(_ignores_ranges(where))
        if len(value) < length:
            raise RangeError(
                where, None, f"bytes {start}..{start + length} lie past the end of the file", start
            )
        return value


class _KvWrite(PendingWrite):
    """One file being uploaded (a tensorstore write future)."""

    def __init__(self, location: KvLocation, name: str, data: bytes) -> None:
        self._where = location.where(name)
        self._size = len(data)
        self._counted = False
        try:
            self._future = location.store.write(name, data)
        except ValueError as err:
            raise translate_error(err, self._where, output=True) from None

    def done(self) -> bool:
        return bool(self._future.done())

    def result(self) -> None:
        try:
            self._future.result()
        except ValueError as err:
            raise translate_error(err, self._where, output=True) from None
        if not self._counted:
            self._counted = True
            count_io(written=self._size)


def _coalesce(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
    """Group ranges that touch or nearly touch into spans: ``(start, end, range numbers)``.

    Tensors stored next to each other (the slices of one variable) then cost
    one request instead of one each; a span never grows past READ_PART_BYTES.
    """
    groups: list[tuple[int, int, list[int]]] = []
    for number in sorted(range(len(ranges)), key=lambda n: ranges[n][0]):
        offset, length = ranges[number]
        if groups:
            start, end, members = groups[-1]
            new_end = max(end, offset + length)
            if offset <= end + COALESCE_GAP_BYTES and new_end - start <= READ_PART_BYTES:
                members.append(number)
                groups[-1] = (start, new_end, members)
                continue
        groups.append((offset, offset + length, [number]))
    return groups


_OBJECT_STORES = frozenset({"gcs", "s3"})  # flat namespaces: a folder is a name prefix


def _prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with ``prefix``."""
    raw = prefix.encode("utf-8", "surrogateescape")
    return (raw[:-1] + bytes([raw[-1] + 1])).decode("utf-8", "surrogateescape") if raw else ""


def _ignores_ranges(where: str) -> str:
    return (
        f"{where}: the server ignores HTTP byte ranges (it answered a Range request with "
        "the whole file); serve the checkpoint from a server that supports Range requests, "
        "or copy it to a local folder first"
    )


def translate_error(
    err: Exception,
    where: str,
    *,
    output: bool = False,
    offset: int | None = None,
    length: int | None = None,
) -> CkptmapError:
    """Turn a tensorstore error (a ``ValueError`` carrying an absl status) into one line.

    Args:
        err: the error tensorstore raised.
        where: the file or folder being read or written.
        output: the operation was a write (the error is an :class:`OutputError`).
        offset: with ``length``, the byte range that was asked for.
        length: see ``offset``.
    """
    message = str(err)
    match = _STATUS.match(message)
    code, detail = (match["code"], match["detail"]) if match else ("UNKNOWN", message)
    detail = " ".join(_NOISE.sub("", detail).split())
    if len(detail) > 200:
        detail = detail[:200] + "..."
    if code == "FAILED_PRECONDITION" and "ignored by server" in detail:
        return InputError(_ignores_ranges(where))
    if code == "OUT_OF_RANGE" and offset is not None and length is not None:
        size_match = _SIZE.search(detail)
        size = int(size_match[1]) if size_match else None
        known = f" ({size} bytes)" if size is not None else ""
        return RangeError(
            where,
            size,
            f"bytes {offset}..{offset + length} lie past the end of the file{known}",
            offset,
        )
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        text = f"{where}: access denied ({detail}; check the URL and the credentials)"
        return OutputError(text) if output else InputError(text)
    if code == "NOT_FOUND" and not output:
        return MissingInputError(where, f"not found ({detail})")
    exhausted = retries_exhausted(detail)
    if exhausted is not None:  # tensorstore retried (ckptmap's RetryPolicy) and gave up
        text = f"{where}: the store {exhausted}"
        if "CURL error" in detail:
            text = f"{where}: cannot reach the store ({exhausted}; check the URL and the network)"
        return OutputError(text) if output else InputError(text)
    if "CURL error" in detail or code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"):
        text = f"{where}: cannot reach the store ({detail}; check the URL and the network)"
        return OutputError(text) if output else InputError(text)
    verb = "write" if output else "read"
    text = f"{where}: cannot {verb} ({code}: {detail})"
    return OutputError(text) if output else InputError(text)
