"""A folder of files read and written by name: the :class:`Location` interface.

:func:`open_location` gives a :class:`~ckptmap.storage.local.LocalLocation` for
a path and a :class:`~ckptmap.storage.kvstore.KvLocation` for a URL. Names
inside a location are relative, ``/``-separated keys
(``model.ckpt-100.index``, ``ckpt.assets/hash_filter_0``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

from ckptmap.errors import OutputError
from ckptmap.storage.urls import check_scheme, is_url, location_text, split_name

__all__ = ["Location", "PendingWrite", "open_location", "open_parent"]


class PendingWrite(ABC):
    """One file being written (:meth:`Location.start_write`); :meth:`result` waits for it."""

    @abstractmethod
    def done(self) -> bool:
        """True once the write has finished (well or not); :meth:`result` then does not wait."""

    @abstractmethod
    def result(self) -> None:
        """Wait until the file is durably stored.

        Raises:
            OutputError: if it could not be written (the message names the file).
        """


class _Finished(PendingWrite):
    """A write that was done before :meth:`Location.start_write` returned."""

    def __init__(self, error: Exception | None) -> None:
        self._error = error

    def done(self) -> bool:
        return True

    def result(self) -> None:
        if self._error is not None:
            raise self._error


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

    def start_write(self, name: str, data: bytes) -> PendingWrite:
        """Start writing the file ``name`` whole; the returned write's ``result()`` waits for it.

        Writes of different names may be in flight at once (a store uploads them
        concurrently). This default writes at once; errors come from ``result()``.
        """
        try:
            self.write(name, data)
        except OutputError as err:
            return _Finished(err)
        return _Finished(None)

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete the file ``name`` if it exists (best effort; never raises for a missing one)."""


def open_location(path_or_url: str | os.PathLike[str]) -> Location:
    """Open the folder ``path_or_url``: a :class:`LocalLocation` or a :class:`KvLocation`.

    Opening reads nothing; a missing folder shows when a file in it is read.

    Raises:
        UnsupportedInputError: for an unsupported URL scheme (naming the supported ones).
        UsageError: for a URL without a host or bucket.
    """
    # The implementations import this module for the base class, hence the late imports.
    text = location_text(path_or_url)
    if not is_url(text):
        from ckptmap.storage.local import LocalLocation

        return LocalLocation(text)
    check_scheme(text)
    from ckptmap.storage.kvstore import KvLocation

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
