"""Where checkpoint files live: a local folder or a URL (the storage seam).

A *location* is a folder of named files ("keys"): :class:`LocalLocation` for
plain OS files (the fast path: memory maps and kernel copies stay with the
readers and writers that use them) and :class:`KvLocation` for a URL that
tensorstore's kvstore drivers understand (``file://``, ``memory://``,
``http(s)://``, ``gs://``, ``s3://``). Names inside a location are relative,
``/``-separated keys (``model.ckpt-100.index``, ``ckpt.assets/hash_filter_0``).

tensorstore is imported only here, and only when a URL is opened, so local
commands never pay for it. Remote reads go by byte range; several ranges are
requested at once (:meth:`Location.read_ranges`). Every remote byte read or
written is counted in the :class:`IoCounter` objects made active by
:func:`measure_io`, so a command can report that ``check`` read only the index.

A URL that went through :class:`pathlib.Path` loses a slash
(``Path("http://host/a")`` is ``http:/host/a``); :func:`location_text` puts it
back, so a URL given as a ``Path`` (as click options give it) still works.

Example:
    >>> loc, name = open_parent("memory://demo/model.ckpt-1.index")  # doctest: +SKIP
    >>> loc.write(name, b"...")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    OutputError,
    RangeError,
    UnsupportedInputError,
    UsageError,
)

if TYPE_CHECKING:
    import tensorstore

SUPPORTED_SCHEMES = ("file", "memory", "http", "https", "gs", "s3")
READ_PART_BYTES = 64 << 20  # a longer range is fetched as concurrent parts of this size
MAX_IN_FLIGHT_BYTES = 256 << 20  # bytes requested at once by read_ranges
COALESCE_GAP_BYTES = 4096  # ranges this close are fetched as one request
RETRIES = {"max_retries": 4, "initial_delay": "0.2s", "max_delay": "2s"}  # per request
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):(?P<rest>.*)$", re.DOTALL)
_STATUS = re.compile(r"^(?P<code>[A-Z_]+): (?P<detail>.*)$", re.DOTALL)
_NOISE = re.compile(r"\s*\[[a-z_]+='.*?'\]", re.DOTALL)  # tensorstore's payload annotations
_SIZE = re.compile(r"value of size (\d+)")
_SUPPORTED = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)


# -- counting ---------------------------------------------------------------------


@dataclass(slots=True)
class IoCounter:
    """Bytes and requests that went to remote stores (local files are not counted).

    Attributes:
        bytes_read: bytes received.
        reads: read requests made (a zero-length existence probe counts).
        bytes_written: bytes sent.
        writes: write requests made.
    """

    bytes_read: int = 0
    reads: int = 0
    bytes_written: int = 0
    writes: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "bytes_read": self.bytes_read,
            "requests": self.reads,
            "bytes_written": self.bytes_written,
            "writes": self.writes,
        }


_ACTIVE: contextvars.ContextVar[tuple[IoCounter, ...]] = contextvars.ContextVar(
    "ckptmap_io_counters", default=()
)


@contextlib.contextmanager
def measure_io() -> Iterator[IoCounter]:
    """Count the remote bytes read and written inside the ``with`` block.

    Example:
        >>> with measure_io() as io:  # doctest: +SKIP
        ...     inspect_checkpoint("http://host/ckpt/model.ckpt-100")
        >>> io.bytes_read  # doctest: +SKIP
        1694
    """
    counter = IoCounter()
    token = _ACTIVE.set((*_ACTIVE.get(), counter))
    try:
        yield counter
    finally:
        _ACTIVE.reset(token)


def _count(*, read: int = -1, written: int = -1) -> None:
    for counter in _ACTIVE.get():
        if read >= 0:
            counter.bytes_read += read
            counter.reads += 1
        if written >= 0:
            counter.bytes_written += written
            counter.writes += 1


# -- names and URLs ---------------------------------------------------------------


def location_text(path: str | os.PathLike[str]) -> str:
    """The text of a path or URL, with a URL's ``//`` restored after :class:`~pathlib.Path`.

    ``Path("http://h/a")`` prints as ``http:/h/a`` and ``Path("memory://")`` as
    ``memory:``; both come back as URLs. Anything else is returned as it is.
    """
    text = os.fspath(path)
    match = _SCHEME.match(text)
    if match is None or text.startswith(f"{match['scheme']}://"):
        return text
    scheme, rest = match["scheme"], match["rest"]
    if rest.startswith("/"):
        return f"{scheme}://{'/' if scheme.lower() == 'file' else ''}{rest.lstrip('/')}"
    if not rest and scheme.lower() in SUPPORTED_SCHEMES:
        return f"{scheme}://"
    return text


def is_url(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a URL (``scheme://...``), supported or not, rather than a local path.

    A scheme must have two letters or more, so ``C:/data`` stays a path.
    """
    text = location_text(path)
    match = _SCHEME.match(text)
    return match is not None and match["rest"].startswith("//")


def kvstore_spec(url: str) -> dict[str, Any]:
    """The tensorstore kvstore spec (a plain dict) of a folder URL.

    Args:
        url: ``file:///abs/dir/``, ``memory://name/``, ``http(s)://host/dir/``,
            ``gs://bucket/dir/`` or ``s3://bucket/dir/``.

    Raises:
        UnsupportedInputError: for another scheme (naming the supported ones).
        UsageError: for a URL without a host or bucket.

    Example:
        >>> kvstore_spec("gs://bucket/run1/")
        {'driver': 'gcs', 'bucket': 'bucket', 'path': 'run1/'}
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    path = unquote(parts.path)
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise UsageError(f"{url}: the URL names no host (write {scheme}://HOST/PATH)")
        spec: dict[str, Any] = {"driver": "http", "base_url": f"{scheme}://{parts.netloc}"}
        spec["path"] = path or "/"
        if parts.query:
            spec["base_url"] += f"?{parts.query}"
        return spec
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"{url}: file:// URLs name a local file (write file:///ABS/PATH)")
        return {"driver": "file", "path": path}
    if scheme == "memory":
        return {"driver": "memory", "path": (parts.netloc + path).lstrip("/")}
    if scheme in ("gs", "s3"):
        if not parts.netloc:
            raise UsageError(f"{url}: the URL names no bucket (write {scheme}://BUCKET/PATH)")
        driver = "gcs" if scheme == "gs" else "s3"
        return {"driver": driver, "bucket": parts.netloc, "path": path.lstrip("/")}
    check_scheme(url)
    raise AssertionError(url)  # every supported scheme is handled above


def split_name(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Split a path or URL into its folder and its last name.

    ``"http://h/a/c.index"`` gives ``("http://h/a/", "c.index")``.

    A URL's folder keeps its trailing ``/``; a name ending in ``/`` has an empty last name.
    """
    text = location_text(path)
    if is_url(text):
        head, _, tail = text.rpartition("/")
        return head + "/", tail
    local = Path(text)
    if text.endswith(("/", os.sep)):
        return str(local), ""
    return str(local.parent), local.name


def check_scheme(url: str) -> None:
    """Refuse a URL whose scheme tensorstore's kvstore cannot open, naming the supported ones.

    Raises:
        UnsupportedInputError: for another scheme (``ftp://``).
    """
    scheme = url.split(":", 1)[0]
    if scheme.lower() not in SUPPORTED_SCHEMES:
        raise UnsupportedInputError(
            f"{url}: unknown URL scheme {scheme + '://'!r} (supported: {_SUPPORTED}, "
            "or a local path)"
        )


def open_location(path_or_url: str | os.PathLike[str]) -> Location:
    """Open the folder ``path_or_url``: a :class:`LocalLocation` or a :class:`KvLocation`.

    Opening reads nothing; a missing folder shows when a file in it is read.

    Raises:
        UnsupportedInputError: for an unsupported URL scheme (naming the supported ones).
        UsageError: for a URL without a host or bucket.
    """
    text = location_text(path_or_url)
    if not is_url(text):
        return LocalLocation(Path(text))
    check_scheme(text)
    return KvLocation(text)


def open_parent(path_or_url: str | os.PathLike[str]) -> tuple[Location, str]:
    """The folder of ``path_or_url`` as a location, and the last name in it.

    Raises:
        UnsupportedInputError: for an unsupported URL scheme.
    """
    text = location_text(path_or_url)
    if is_url(text):
        check_scheme(text)
    folder, name = split_name(text)
    return open_location(folder), name


# -- locations --------------------------------------------------------------------


class Location(ABC):
    """A folder of files, read and written by name.

    Attributes:
        url: the folder as the user would write it (a path, or a URL ending in ``/``).
        is_local: True for plain OS files.
    """

    url: str
    is_local: bool

    @abstractmethod
    def where(self, name: str) -> str:
        """The file ``name`` as the user would write it, for messages."""

    @abstractmethod
    def child(self, name: str) -> Location:
        """The sub-folder ``name``."""

    @abstractmethod
    def exists(self, name: str) -> bool:
        """True when the file ``name`` exists (reads none of its bytes)."""

    @abstractmethod
    def size(self, name: str) -> int | None:
        """The size of file ``name`` in bytes; ``None`` when the store cannot tell without reading.

        Raises:
            MissingInputError: if it does not exist.
        """

    @abstractmethod
    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of ``name`` at each ``(offset, length)``, requested concurrently.

        Raises:
            MissingInputError: if the file does not exist.
            RangeError: if a range runs past the end of the file.
            InputError: if the store cannot be read (access denied, host
                unreachable, a server that ignores byte ranges).
        """

    def read(self, name: str, offset: int, length: int) -> bytes:
        """The ``length`` bytes of ``name`` at ``offset`` (errors as :meth:`read_ranges`)."""
        return self.read_ranges(name, [(offset, length)])[0]

    @abstractmethod
    def read_all(self, name: str, *, max_bytes: int | None = None) -> bytes:
        """The whole file ``name``.

        Raises:
            MissingInputError: if it does not exist.
            InputError: if it is longer than ``max_bytes`` or cannot be read.
        """

    @abstractmethod
    def list(self, prefix: str = "") -> list[str] | None:
        """The names of the files whose name starts with ``prefix``, sorted.

        Returns ``None`` when the store cannot list (HTTP).
        """

    @abstractmethod
    def write(self, name: str, data: bytes | memoryview) -> None:
        """Write the file ``name`` whole (replacing it).

        Raises:
            OutputError: if it cannot be written.
        """

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete the file ``name`` if it exists (best effort; never raises for a missing one)."""


class LocalLocation(Location):
    """A local folder; files are read with ``pread``.

    The checkpoint reader and writer keep their own fast paths (memory maps,
    ``copy_file_range``) for local files and use :meth:`path` to reach them.
    """

    is_local = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"LocalLocation({self.url!r})"

    def path(self, name: str) -> Path:
        """The OS path of file ``name``."""
        return self.root / name if name else self.root

    def where(self, name: str) -> str:
        return str(self.path(name))

    def child(self, name: str) -> LocalLocation:
        return LocalLocation(self.path(name))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def size(self, name: str) -> int:
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            raise MissingInputError(self.path(name), "no such file") from None
        except OSError as err:
            raise InputError(f"{self.path(name)}: cannot read ({err.strerror})") from err

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        path = self.path(name)
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                out = []
                for offset, length in ranges:
                    if offset < 0 or length < 0 or offset + length > size:
                        raise RangeError(
                            str(path),
                            size,
                            f"bytes {offset}..{offset + length} lie past the end of the "
                            f"file ({size} bytes)",
                            offset,
                        )
                    out.append(os.pread(file.fileno(), length, offset))
                return out
        except FileNotFoundError:
            raise MissingInputError(path, "no such file") from None
        except IsADirectoryError:
            raise MissingInputError(path, "is a folder, not a file") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err.strerror})") from err

    def read_all(self, name: str, *, max_bytes: int | None = None) -> bytes:
        path = self.path(name)
        if max_bytes is not None and self.size(name) > max_bytes:
            raise InputError(f"{path}: larger than {max_bytes} bytes, too large for this file")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise MissingInputError(path, "no such file") from None
        except IsADirectoryError:
            raise MissingInputError(path, "is a folder, not a file") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err.strerror})") from err

    def list(self, prefix: str = "") -> list[str]:
        folder = prefix.rpartition("/")[0]
        base = self.path(folder) if folder else self.root
        if not base.is_dir():
            return []
        names = []
        for path in base.rglob("*"):
            name = path.relative_to(self.root).as_posix()
            if name.startswith(prefix) and path.is_file():
                names.append(name)
        return sorted(names)

    def write(self, name: str, data: bytes | memoryview) -> None:
        path = self.path(name)
        tmp = path.with_name(f"{path.name}.ckptmap-tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutputError(f"{path}: cannot write ({err.strerror})") from err

    def delete(self, name: str) -> None:
        with contextlib.suppress(OSError):
            self.path(name).unlink()


_CONTEXT: tensorstore.Context | None = None
_CONTEXT_LOCK = threading.Lock()


def _context() -> tensorstore.Context:
    """One tensorstore context for the process: ``memory://`` stores live as long as it does."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            import tensorstore as ts

            _CONTEXT = ts.Context(
                {
                    "http_request_retries": RETRIES,
                    "gcs_request_retries": RETRIES,
                    "s3_request_retries": RETRIES,
                }
            )
        return _CONTEXT


class KvLocation(Location):
    """A folder URL read and written through a tensorstore kvstore driver.

    Reads are by byte range; a long range is fetched as concurrent parts. A
    store that cannot tell a file's size without reading it (all of them,
    through tensorstore) answers ``None`` from :meth:`size`.
    """

    is_local = False

    def __init__(self, url: str) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.spec = kvstore_spec(self.url)
        self._store: tensorstore.KvStore | None = None

    def __repr__(self) -> str:
        return f"KvLocation({self.url!r})"

    @property
    def store(self) -> tensorstore.KvStore:
        """The open kvstore (opened on first use)."""
        if self._store is None:
            import tensorstore as ts

            try:
                self._store = ts.KvStore.open(self.spec, context=_context()).result()
            except ValueError as err:
                raise translate_error(err, self.url) from None
        return self._store

    def where(self, name: str) -> str:
        return self.url + name

    def child(self, name: str) -> KvLocation:
        return KvLocation(self.url + name.strip("/") + "/")

    def exists(self, name: str) -> bool:
        try:
            result = self.store.read(name, byte_range=slice(0, 0)).result()
        except ValueError as err:
            raise translate_error(err, self.where(name)) from None
        _count(read=0)
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
        where = self.where(name)
        futures = [self.store.read(name, byte_range=slice(s, s + n)) for _, s, n in batch]
        for (number, start, length), future in zip(batch, futures, strict=True):
            try:
                result = future.result()
            except ValueError as err:
                raise translate_error(err, where, offset=start, length=length) from None
            value = result.value
            _count(read=len(value))
            if result.state != "value":
                raise MissingInputError(where, "no such file (not found at this URL)")
            if len(value) > length:
                raise InputError(_ignores_ranges(where))
            if len(value) < length:
                raise RangeError(
                    where,
                    None,
                    f"bytes {start}..{start + length} lie past the end of the file",
                    start,
                )
            chunks[number].append(value)

    def read_all(self, name: str, *, max_bytes: int | None = None) -> bytes:
        where = self.where(name)
        try:
            result = self.store.read(name).result()
        except ValueError as err:
            raise translate_error(err, where) from None
        value: bytes = result.value
        _count(read=len(value))
        if result.state != "value":
            raise MissingInputError(where, "no such file (not found at this URL)")
        if max_bytes is not None and len(value) > max_bytes:
            raise InputError(f"{where}: larger than {max_bytes} bytes, too large for this file")
        return value

    def list(self, prefix: str = "") -> list[str] | None:
        import tensorstore as ts

        try:
            if prefix:
                keys = self.store.list(ts.KvStore.KeyRange(prefix, _prefix_end(prefix))).result()
            else:
                keys = self.store.list().result()
        except NotImplementedError:
            return None
        except ValueError as err:
            raise translate_error(err, self.where(prefix)) from None
        _count(read=0)
        return sorted(k.decode("utf-8", "surrogateescape") for k in keys)

    def write(self, name: str, data: bytes | memoryview) -> None:
        try:
            self.store.write(name, bytes(data)).result()
        except ValueError as err:
            raise translate_error(err, self.where(name), output=True) from None
        _count(written=len(data))

    def delete(self, name: str) -> None:
        with contextlib.suppress(ValueError, NotImplementedError, CkptmapError):
            self.store.delete_range(_key_range(name)).result()


def upload_files(
    location: Location,
    files: Sequence[tuple[str, str | os.PathLike[str]]],
    *,
    delete_first: Sequence[str] = (),
) -> list[str]:
    """Copy local files into ``location`` in the order given; all or nothing.

    Stores without rename cannot commit a set of files atomically; the caller
    orders ``files`` so that the last one commits (a checkpoint's data shards,
    then its assets, then its ``.index``, then the state file), and readers
    ignore the rest until it exists. If any write fails, every file written
    so far is deleted again, so nothing is left half committed.

    Args:
        location: where to write.
        files: ``(name in location, local file)`` pairs, in commit order.
        delete_first: names deleted before anything is written (the index of
            a checkpoint being replaced: it must never point at new data).

    Returns:
        The names written, in order.

    Raises:
        OutputError: if a file cannot be written (naming it, and saying that
            nothing was committed).
    """
    written: list[str] = []
    for name in delete_first:
        location.delete(name)
    try:
        for name, path in files:
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                raise OutputError(f"{path}: cannot read the staged file ({err.strerror})") from err
            written.append(name)
            location.write(name, data)
    except OutputError as err:
        for name in reversed(written):
            location.delete(name)
        raise OutputError(
            f"{err} (nothing was committed: the {len(written) - 1} file(s) written before "
            "were deleted again)"
        ) from None
    return written


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


def _prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with ``prefix``."""
    raw = prefix.encode("utf-8", "surrogateescape")
    return (raw[:-1] + bytes([raw[-1] + 1])).decode("utf-8", "surrogateescape") if raw else ""


def _key_range(name: str) -> Any:
    import tensorstore as ts

    return ts.KvStore.KeyRange(name, name + "\x00")


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
    if "CURL error" in detail or code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"):
        text = f"{where}: cannot reach the store ({detail}; check the URL and the network)"
        return OutputError(text) if output else InputError(text)
    verb = "write" if output else "read"
    text = f"{where}: cannot {verb} ({code}: {detail})"
    return OutputError(text) if output else InputError(text)


def corrupt_range(where: str, err: RangeError, what: str) -> CorruptCheckpointError:
    """A :class:`RangeError` met while reading a checkpoint, as a corrupt-checkpoint error."""
    known = f" ({err.size} bytes)" if err.size is not None else ""
    return CorruptCheckpointError(
        where,
        f"{what} runs past the end of the data file{known} (the data file is truncated or "
        "belongs to another index; copy the checkpoint again)",
    )
