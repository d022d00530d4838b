"""``ckptmap convert``: export a checkpoint to a zarr v3 store (optionally inside OCDBT).

The command's story: check the request, open the source
(:func:`ckptmap.readers.source.open_source`), pick the writer for the target
format (:class:`ckptmap.writers.zarr3.Zarr3Writer`), let it write where the
store becomes visible only when complete, and report what was written. The
store's layout is :mod:`ckptmap.formats.zarr_layout` (docs/convert.md).

Commit: a local output (a path or ``file://`` URL) goes through the one commit
protocol, :func:`ckptmap.writers.commit.open_commit` with ``whole_folder``: the
store is written into a hidden staging folder inside the output's parent (with
its lock and journal) and renamed into place whole; an old store replaced with
``--force`` is moved aside first and deleted after (docs/durability.md).
For other URLs a marker key ``ckptmap-incomplete`` is written first, the
arrays next, the root ``zarr.json`` with the manifest last, and the marker is
removed: a store is complete exactly when its manifest exists (tensorstore
creates the files itself, directly in the kvstore).

Example:
    >>> result = convert("fixtures/ffm_v1", "/tmp/ffm_v1.zarr")  # doctest: +SKIP
    >>> result.arrays
    28
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckptmap.errors import CkptmapError, OutputError, OutputExistsError, UsageError
from ckptmap.formats.zarr_layout import INCOMPLETE_MARKER, OCDBT_MANIFEST, ROOT_METADATA
from ckptmap.readers.source import open_source
from ckptmap.readers.zarr_store import (
    StoreLocation,
    is_zarr_store,
    local_kvstore,
    shared_context,
    store_location,
)
from ckptmap.writers.commit import open_commit
from ckptmap.writers.zarr3 import (
    DEFAULT_BLOCK_BYTES,
    DEFAULT_CHUNK_BYTES,
    Zarr3Writer,
    open_kvstore,
    tensorstore_result,
)

__all__ = ["TARGETS", "ConvertResult", "convert"]

WRITERS = {"zarr3": Zarr3Writer}  # the store formats convert writes, and their writers
TARGETS = tuple(WRITERS)


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """What :func:`convert` wrote.

    Attributes:
        source: the checkpoint that was converted, as the user would write it
            (a checkpoint prefix, or a URL).
        out: the store's location, as given.
        to: the store format (``zarr3``).
        ocdbt: whether the store is an OCDBT database.
        arrays: how many keys were written (one node each).
        tensor_bytes: bytes of tensor data read from the checkpoint.
        store_bytes: bytes the store takes on disk (local outputs), else ``None``.
        keys: the keys written, in key order, with their node paths.
    """

    source: str
    out: str
    to: str
    ocdbt: bool
    arrays: int
    tensor_bytes: int
    store_bytes: int | None
    keys: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` report (docs/convert.md)."""
        return {
            "source": self.source,
            "out": self.out,
            "to": self.to,
            "ocdbt": self.ocdbt,
            "arrays": self.arrays,
            "tensor_bytes": self.tensor_bytes,
            "store_bytes": self.store_bytes,
            "paths": dict(self.keys),
        }


def convert(
    old: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str = "zarr3",
    ocdbt: bool = False,
    step: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    force: bool = False,
) -> ConvertResult:
    """Write the checkpoint ``old`` as a zarr v3 store at ``out``.

    Args:
        old: a model folder, checkpoint prefix or ``.index`` file (a local path
            or a URL), or a store written by ``ckptmap convert``.
        out: a local folder, a ``file://`` URL or another tensorstore kvstore
            URL (``memory://``, ``gs://``, ``s3://``).
        to: the store format; only ``"zarr3"``.
        ocdbt: put the arrays inside one OCDBT database at ``out``.
        step: with a model folder, convert the checkpoint of this global step.
        chunk_bytes: the largest zarr chunk, in bytes.
        block_bytes: the most bytes moved by one write (bounds memory).
        force: replace an existing store at ``out``.

    Returns:
        What was written.

    Raises:
        UsageError: for an unknown ``to`` or bad sizes.
        MissingInputError, CorruptCheckpointError, UnsupportedInputError: for
            a missing or damaged checkpoint (CRCs are checked while copying).
        OutputExistsError: if ``out`` exists and ``force`` is false.
        OutputError: if the store cannot be written, or ``out`` is a URL
            tensorstore does not understand.

    Example:
        >>> convert("fixtures/dtype_zoo/zoo", "/tmp/zoo.zarr", ocdbt=True)  # doctest: +SKIP
    """
    writer_class = WRITERS.get(to)
    if writer_class is None:
        raise UsageError(f"unknown store format {to!r} (expected one of: {', '.join(TARGETS)})")
    if chunk_bytes < 1 or block_bytes < 1:
        raise UsageError("chunk_bytes and block_bytes must be positive numbers of bytes")
    try:
        location = store_location(out, ocdbt=ocdbt)
    except UsageError as err:
        raise OutputError(str(err)) from err
    with open_source(old, step=step) as source:
        writer = writer_class(source, chunk_bytes, block_bytes)
        if location.local is not None:
            store_bytes: int | None = _convert_local(writer, location, force=force)
        else:
            _convert_url(writer, location, force=force)
            store_bytes = None
        return ConvertResult(
            source=source.url,
            out=location.text,
            to=to,
            ocdbt=ocdbt,
            arrays=len(writer.paths),
            tensor_bytes=writer.tensor_bytes,
            store_bytes=store_bytes,
            keys=tuple(writer.paths.items()),
        )


# -- commit: a local folder -----------------------------------------------------------


def _convert_local(writer: Zarr3Writer, location: StoreLocation, *, force: bool) -> int:
    """Write the store staged through the commit protocol, renamed into place whole."""
    final = location.local
    assert final is not None  # noqa: S101 -- the caller checked; not input validation
    if force and (final.exists() or final.is_symlink()) and not _replaceable(final):
        raise OutputError(
            f"{final}: is not a zarr store; refusing to replace it with --force "
            "(remove it yourself or choose another output path)"
        )
    with open_commit(final, force=force, whole_folder=True) as output:
        staged = output.stage_prefix
        writer.write(StoreLocation(location.text, staged, local_kvstore(staged), location.ocdbt))
        store_bytes = _folder_bytes(staged)
        output.commit()
    return store_bytes


def _replaceable(path: Path) -> bool:
    """Whether ``--force`` may replace ``path``: a zarr store or an empty folder."""
    if path.is_dir() and not path.is_symlink():
        return is_zarr_store(path) or not any(path.iterdir())
    return False


def _folder_bytes(folder: Path) -> int:
    return sum(
        (Path(root) / name).stat().st_size for root, _, names in os.walk(folder) for name in names
    )


# -- commit: a store at a URL ---------------------------------------------------------


def _convert_url(writer: Zarr3Writer, location: StoreLocation, *, force: bool) -> None:
    """Write in place: marker first, arrays, manifest last, then remove the marker."""
    found = _existing_state(location)
    if found is not None:
        if not force:
            raise OutputExistsError(location.text, f"{found} (pass --force to replace it)")
        if found == _OTHER_DATA:
            raise OutputError(
                f"{location.text}: holds data that is not a ckptmap store; refusing to "
                "replace it with --force (choose another location)"
            )
        plain = open_kvstore(location.with_ocdbt(False), shared_context())
        tensorstore_result(
            plain.delete_range(_all_keys()), location.text, "cannot remove the old store"
        )
    context = shared_context()
    root = open_kvstore(location, context)
    tensorstore_result(
        root.write(INCOMPLETE_MARKER, b"ckptmap convert in progress\n"),
        location.text,
        "cannot write",
    )
    writer.write(location, context)
    tensorstore_result(
        root.delete_range(_one_key(INCOMPLETE_MARKER)),
        location.text,
        "cannot remove the in-progress marker",
    )


_OTHER_DATA = "holds other data"


def _existing_state(location: StoreLocation) -> str | None:
    """``None`` if nothing is at ``location``; else what is there, for messages."""
    context = shared_context()  # a probe: its caches are dropped before writing
    plain = open_kvstore(location.with_ocdbt(False), context)
    names = (ROOT_METADATA, INCOMPLETE_MARKER, OCDBT_MANIFEST)
    present = {name for name in names if _exists(plain, name, location)}
    if OCDBT_MANIFEST in present:
        database = open_kvstore(location.with_ocdbt(True), context)
        present |= {name for name in names[:2] if _exists(database, name, location)}
    if ROOT_METADATA in present:
        return "a store already exists here"
    if INCOMPLETE_MARKER in present:
        return "an interrupted conversion left an incomplete store here"
    with contextlib.suppress(CkptmapError):  # drivers that cannot list (http) are read-only anyway
        if tensorstore_result(plain.list(), location.text, "cannot list"):
            return _OTHER_DATA
    return None


def _exists(store: Any, key: str, location: StoreLocation) -> bool:
    return bool(tensorstore_result(store.read(key), location.text, "cannot read").state == "value")


def _all_keys() -> Any:
    import tensorstore as ts

    return ts.KvStore.KeyRange()


def _one_key(key: str) -> Any:
    import tensorstore as ts

    return ts.KvStore.KeyRange(key, key + "\0")
