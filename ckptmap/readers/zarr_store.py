"""Read a zarr v3 store written by ``ckptmap convert`` back as a checkpoint.

Layout (docs/convert.md): the root of the store is a zarr group whose
``zarr.json`` carries the manifest in ``attributes["ckptmap"]``: every
checkpoint key, the node path of its array, its TensorFlow dtype, full shape
and original slice layout. The manifest is written last, so its presence means
the store is complete. One node per key sits directly under the root:

* a zarr array of the key's dtype (``storage: "native"``);
* a ``uint8`` array of the bytes as TensorFlow stores them, one per element,
  for dtypes tensorstore's zarr3 driver lacks (``uint4``, ``uint2``;
  ``storage: "bytes"``);
* for strings, a group with a ``lengths`` array (``uint64``, the tensor's
  shape) and a ``data`` array (``uint8``, every element's bytes concatenated in
  C order; ``storage: "strings"``).

The store is a local folder (optionally an OCDBT database: a folder holding
``manifest.ocdbt``) or a tensorstore kvstore URL (``file://``, ``memory://``,
``gs://``, ``s3://``, ``http(s)://``). tensorstore is imported only when a
store is opened.

Example:
    >>> with open_store("out/model.zarr") as ckpt:  # doctest: +SKIP
    ...     ckpt.read("dense/kernel").shape
    (64, 32)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ckptmap.errors import (
    CkptmapError,
    CorruptCheckpointError,
    InputError,
    MissingInputError,
    TensorNotFoundError,
    UsageError,
)
from ckptmap.formats.zarr_layout import (
    FIX_STORE,
    INCOMPLETE_MARKER,
    OCDBT_MANIFEST,
    ROOT_METADATA,
    STORAGE_BYTES,
    STORAGE_STRINGS,
    STRING_DATA,
    STRING_LENGTHS,
    ZarrArrayInfo,
    expected_layout,
    parse_manifest,
)
from ckptmap.readers.source import check_box
from ckptmap.spec import TensorSpec
from ckptmap.split import SliceSpec
from ckptmap.storage import is_url
from ckptmap.storage.input_files import check_tree, open_input
from ckptmap.storage.store_config import store_context, store_spec, use_gcs_endpoint

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.readers.assets import Asset

__all__ = [
    "StoreLocation",
    "ZarrCheckpoint",
    "is_zarr_store",
    "open_store",
    "store_location",
]

_CONTEXT: Any = None


def shared_context() -> Any:
    """A tensorstore ``Context`` for one operation (a conversion, an open store).

    All of them share one process-wide parent, so a ``memory://`` store outlives
    the call that wrote it; each gets its own caches, so a store replaced by one
    operation is never read through another's stale cache.
    """
    global _CONTEXT  # noqa: PLW0603 -- a lazily created process-wide resource
    import tensorstore as ts

    if _CONTEXT is None:
        _CONTEXT = store_context()  # the retry policy of storage.store_config
    return ts.Context(ts.Context.Spec({"cache_pool": {}}), parent=_CONTEXT)


# -- where a store lives -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where a store lives, as a tensorstore kvstore spec.

    Attributes:
        text: the location as the user gave it (for messages).
        local: the folder, for a local store (a path or a ``file://`` URL).
        base: the JSON spec of the kvstore holding the store's files (a folder:
            its ``path`` is empty or ends in ``/``).
        ocdbt: whether the store is an OCDBT database on ``base``.
    """

    text: str
    local: Path | None
    base: dict[str, Any]
    ocdbt: bool

    def kvstore(self, path: str = "") -> dict[str, Any]:
        """The kvstore spec of ``path`` inside the store (``""``: its root)."""
        if self.ocdbt:
            return {"driver": "ocdbt", "base": self.base, "path": path}
        return {**self.base, "path": self.base.get("path", "") + path}

    def node(self, name: str) -> dict[str, Any]:
        """The kvstore spec of the node ``name`` (a folder: ends in ``/``)."""
        return self.kvstore(f"{name}/")

    def with_ocdbt(self, ocdbt: bool) -> StoreLocation:
        return StoreLocation(self.text, self.local, self.base, ocdbt)


def store_location(location: str | os.PathLike[str], *, ocdbt: bool = False) -> StoreLocation:
    """Describe a local folder or kvstore URL as a :class:`StoreLocation`.

    A ``file://`` URL is treated as the local folder it names; another URL's
    path is taken as a folder (a trailing ``/`` is added) and imports tensorstore.

    Raises:
        UsageError: if tensorstore does not understand the URL (unknown scheme).
    """
    text = os.fspath(location)
    if is_url(text) and not text.startswith("file://"):
        import tensorstore as ts

        url = text if text.endswith("/") else text + "/"
        try:
            if text.split(":", 1)[0].lower() in ("s3", "gs"):  # endpoint, credentials
                base: dict[str, Any] = store_spec(url)
                use_gcs_endpoint()
            else:
                base = ts.KvStore.Spec(url).to_json()
        except ValueError as err:
            raise UsageError(
                f"{text}: not a storage location tensorstore understands ({_first_line(err)}); "
                "use a local path or a file://, memory://, gs://, s3:// or http(s):// URL"
            ) from err
        return StoreLocation(text, None, base, ocdbt)
    local = Path(text.removeprefix("file://")).absolute()
    return StoreLocation(text, local, local_kvstore(local), ocdbt)


def local_kvstore(folder: Path) -> dict[str, Any]:
    """The ``file`` kvstore spec of a local folder."""
    return {"driver": "file", "path": f"{folder}/"}


# -- the reader -------------------------------------------------------------------


def is_zarr_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a store written by ``ckptmap convert``.

    A local folder qualifies when it holds a ``zarr.json`` or an OCDBT
    ``manifest.ocdbt`` (no tensorstore import); a URL when one of those keys
    can be read (one small request each). Never raises for a missing path.
    """
    text = os.fspath(path)
    if not is_url(text) or text.startswith("file://"):
        folder = Path(text.removeprefix("file://"))
        return (folder / ROOT_METADATA).is_file() or (folder / OCDBT_MANIFEST).is_file()
    try:
        location = store_location(text)
        if _read_key(location, ROOT_METADATA) is not None:
            return True
        return _read_key(location.with_ocdbt(True), ROOT_METADATA) is not None
    except CkptmapError:
        return False


def open_store(path: str | os.PathLike[str]) -> ZarrCheckpoint:
    """Open a store written by ``ckptmap convert``, reading only its manifest.

    Args:
        path: a local folder, a ``file://`` URL or another tensorstore kvstore
            URL; OCDBT stores are recognised by their ``manifest.ocdbt``.

    Returns:
        The open store, a :class:`ckptmap.readers.source.Source`.

    Raises:
        MissingInputError: if there is no store at ``path``.
        InputError: if the store is incomplete (its write was interrupted), or
            ``path`` is a URL tensorstore does not understand.
        CorruptCheckpointError: if the manifest is damaged.
        UnsupportedInputError: if the manifest names an unknown dtype.
    """
    try:
        location = store_location(path)
    except UsageError as err:
        raise InputError(str(err)) from err
    if location.local is not None and location.local.is_dir():
        check_tree(location.local)  # tensorstore opens the files itself: look first
    if location.local is not None and (location.local / OCDBT_MANIFEST).is_file():
        location = location.with_ocdbt(True)
    raw = _read_key(location, ROOT_METADATA)
    if raw is None and location.local is None:
        ocdbt = location.with_ocdbt(True)
        with contextlib.suppress(CkptmapError):  # not an OCDBT database either
            raw = _read_key(ocdbt, ROOT_METADATA)
        if raw is not None:
            location = ocdbt
    if raw is None:
        if _read_key(location, INCOMPLETE_MARKER) is not None:
            raise InputError(
                f"{location.text}: the store is incomplete (its conversion was interrupted "
                "before the manifest was written); convert again with --force"
            )
        raise MissingInputError(
            location.text,
            "no zarr store written by `ckptmap convert` here (no zarr.json at its root); "
            "check the path",
        )
    manifest = parse_manifest(f"{location.text}/{ROOT_METADATA}", raw)
    store = ZarrCheckpoint(location, manifest.arrays)
    store.source = manifest.source
    return store


def _read_key(location: StoreLocation, key: str, context: Any = None) -> bytes | None:
    """The bytes of ``key`` in the store, ``None`` if missing."""
    if location.local is not None and not location.ocdbt:
        try:
            with os.fdopen(open_input(location.local / key, location.local), "rb") as file:
                return file.read()
        except (MissingInputError, FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as err:
            raise InputError(f"{location.local / key}: cannot read: {err.strerror}") from err
    import tensorstore as ts

    try:
        store = ts.KvStore.open(location.kvstore(), context=context or shared_context()).result()
        result = store.read(key).result()
    except ValueError as err:
        raise InputError(f"{location.text}: cannot read the store ({_first_line(err)})") from err
    return None if result.state != "value" else bytes(result.value)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class ZarrCheckpoint:
    """An open store written by ``ckptmap convert``: a :class:`ckptmap.readers.source.Source`.

    Its specs carry the original checkpoint's slice layout; every tensor is
    one array, so :meth:`read_box` reads only the chunks a box touches. A
    store keeps no checksums and no assets.

    Attributes:
        format: ``"zarr3"``.
        location: where the store lives.
        source: the checkpoint it was converted from (as recorded).
        byte_order: ``"<"``: arrays come back in native little-endian order.
        assets: always empty.
    """

    format = "zarr3"
    notes: tuple[str, ...] = ()
    byte_order = "<"

    def __init__(self, location: StoreLocation, arrays: dict[str, ZarrArrayInfo]) -> None:
        self.location = location
        self.source = ""
        self.assets: list[Asset] = []
        self._context = shared_context()
        self._arrays = dict(
            sorted(arrays.items(), key=lambda item: item[0].encode("utf-8", "surrogateescape"))
        )
        self._keys = list(self._arrays)

    @property
    def path(self) -> str:
        """The store's location as given."""
        return self.location.text

    @property
    def url(self) -> str:
        """The store's location as given (a local path or a URL)."""
        return self.location.text

    @property
    def where(self) -> str:
        """The root ``zarr.json``, which holds the manifest."""
        return f"{self.location.text}/{ROOT_METADATA}"

    @property
    def name(self) -> str:
        """The file name of the checkpoint the store was converted from (``""`` if unknown)."""
        return Path(self.source).name if self.source else ""

    def keys(self) -> list[str]:
        """The keys, sorted as unsigned bytes like TensorFlow."""
        return list(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._arrays

    def info(self, key: str) -> ZarrArrayInfo:
        """The manifest entry of ``key``.

        Raises:
            TensorNotFoundError: if there is no such key.
        """
        try:
            return self._arrays[key]
        except KeyError:
            raise TensorNotFoundError(
                self.location.text,
                key,
                f"no tensor {key!r} in this store (list the keys with `ckptmap inspect`)",
            ) from None

    def specs(self) -> dict[str, TensorSpec]:
        """A :class:`TensorSpec` per key, with the original checkpoint's slices."""
        return {
            key: TensorSpec(key, info.dtype, info.shape, info.slices)
            for key, info in self._arrays.items()
        }

    def slices(self, key: str) -> tuple[SliceSpec, ...]:
        """The slice layout ``key`` had in the original checkpoint (empty: stored whole).

        Raises:
            TensorNotFoundError: if there is no such key.
        """
        return self.info(key).slices

    def verify(self) -> list[str]:
        """Refuse: a store keeps no checksums to verify.

        Raises:
            UsageError: always.
        """
        raise UsageError(
            f"{self.location.text}: --verify checks the CRC32C of a TensorFlow checkpoint; "
            "a zarr store has none (inspect the checkpoint it was converted from)"
        )

    # -- data ------------------------------------------------------------------

    def read(self, key: str) -> np.ndarray:
        """The whole tensor ``key`` (strings as an ``object`` array of ``bytes``).

        Raises:
            TensorNotFoundError: if there is no such key.
            MissingInputError: if the key's array is missing from the store.
            CorruptCheckpointError: if the array disagrees with the manifest.
        """
        info = self.info(key)
        return self.read_box(key, tuple((0, d) for d in info.shape))

    def read_slice(self, key: str, spec: SliceSpec) -> np.ndarray:
        """The part of ``key`` that ``spec`` selects (its full shape must match)."""
        info = self.info(key)
        if spec.full_shape != info.shape:
            raise UsageError(
                f"slice {spec} is a slice of shape {list(spec.full_shape)}, but {key!r} has "
                f"shape {list(info.shape)}"
            )
        index = spec.index()
        return self.read_box(key, tuple((s.start, s.stop) for s in index))

    def read_box(self, key: str, box: Sequence[tuple[int, int]]) -> np.ndarray:
        """The part ``[start, stop)`` per axis of ``key``.

        Raises:
            TensorNotFoundError: if there is no such key.
            UsageError: if the box does not fit the tensor's shape.
            MissingInputError: if the key's array is missing from the store.
            CorruptCheckpointError: if the array disagrees with the manifest.
        """
        info = self.info(key)
        wanted = check_box(key, box, info.shape)
        if info.storage == STORAGE_STRINGS:
            return self._read_strings(info, wanted)
        array = self._open_array(info, info.path)
        data: np.ndarray = _run(
            array[tuple(slice(a, b) for a, b in wanted)].read(), self._where(info)
        )
        if info.storage == STORAGE_BYTES:
            data = data.view(info.dtype.numpy)
        data.flags.writeable = False
        return data

    def _where(self, info: ZarrArrayInfo) -> str:
        return f"{self.location.text}: array {info.path!r} of {info.key!r}"

    def _open_array(self, info: ZarrArrayInfo, path: str) -> Any:
        import tensorstore as ts

        spec = {"driver": "zarr3", "kvstore": self.location.node(path)}
        try:
            array = ts.open(spec, open=True, read=True, context=self._context).result()
        except ValueError as err:
            message = _first_line(err)
            if "NOT_FOUND" in message or "does not exist" in message:
                raise MissingInputError(
                    f"{self.location.text}/{path}",
                    f"the array of {info.key!r} is missing from the store (the store is "
                    "incomplete or was modified; convert again)",
                ) from err
            raise CorruptCheckpointError(
                f"{self.location.text}/{path}", f"cannot open the array ({message}; {FIX_STORE})"
            ) from err
        self._check_array(info, path, array)
        return array

    def _check_array(self, info: ZarrArrayInfo, path: str, array: Any) -> None:
        expected = expected_layout(info, path)
        actual = (tuple(int(d) for d in array.shape), array.dtype.name)
        shape = actual[0] if expected[0] is None else expected[0]  # None: any length
        if actual != (shape, expected[1]):
            raise CorruptCheckpointError(
                f"{self.location.text}/{path}",
                f"the array is {actual[1]} {list(actual[0])}, but the manifest says "
                f"{expected[1]} {list(shape)} for {info.key!r} ({FIX_STORE})",
            )

    def _read_strings(self, info: ZarrArrayInfo, box: tuple[tuple[int, int], ...]) -> np.ndarray:
        import numpy as np

        lengths_array = self._open_array(info, f"{info.path}/{STRING_LENGTHS}")
        data_array = self._open_array(info, f"{info.path}/{STRING_DATA}")
        lengths = _run(lengths_array.read(), self._where(info)).astype(np.int64).reshape(-1)
        stops = np.cumsum(lengths)
        if int(data_array.shape[0]) != (int(stops[-1]) if len(stops) else 0):
            raise CorruptCheckpointError(
                f"{self.location.text}/{info.path}",
                f"the string lengths of {info.key!r} do not add up to its data ({FIX_STORE})",
            )
        blob = bytes(_run(data_array.read(), self._where(info)))
        starts = stops - lengths
        out = np.empty(len(lengths), dtype=object)
        out[:] = [blob[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
        index: tuple[Any, ...] = (*[slice(a, b) for a, b in box], Ellipsis)
        result: np.ndarray = out.reshape(info.shape)[index]
        result.flags.writeable = False
        return result

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Nothing to release; present for symmetry with ``Checkpoint``."""

    def __enter__(self) -> ZarrCheckpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ZarrCheckpoint({self.location.text!r}, {len(self._keys)} tensors)"


def _run(future: Any, where: str) -> Any:
    try:
        return future.result()
    except ValueError as err:
        raise InputError(f"{where}: cannot read ({_first_line(err)})") from err
