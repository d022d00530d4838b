"""``ckptmap convert``: export a checkpoint to a zarr v3 store, safetensors or npz.

The command's story: check the request, open the source
(:func:`ckptmap.readers.source.open_source`), pick the writer for the target
format (:class:`ckptmap.writers.zarr3.Zarr3Writer`,
:func:`ckptmap.writers.safetensors.write_safetensors`,
:func:`ckptmap.writers.npz.write_npz`), let it write where the output becomes
visible only when complete, and report what was written. The zarr store's
layout is :mod:`ckptmap.formats.zarr_layout` (docs/convert.md); the array
files' is :mod:`ckptmap.formats.array_files` (docs/formats.md).

Array files (safetensors, npz) are local files. ``out`` names the file
(``x.safetensors``, ``x.npz``) or a folder (then ``model.safetensors`` or
``model.npz`` in it). They are staged and put into place through the one
commit protocol (:func:`ckptmap.writers.commit.open_commit`; a sharded model's
index last), so a killed run leaves no partial file under its final name; with
``--force``, files of an earlier conversion of the same name that the new one
does not replace (other shard counts) are removed after the commit.

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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptmap.defaults import ZARR_BLOCK_BYTES, ZARR_CHUNK_BYTES
from ckptmap.errors import CkptmapError, OutputError, OutputExistsError, UsageError
from ckptmap.readers.source import open_source
from ckptmap.storage import is_url
from ckptmap.writers.commit import open_commit
from ckptmap.writers.safetensors import DEFAULT_MAX_SHARD_SIZE, INDEX_SUFFIX, write_safetensors

if TYPE_CHECKING:  # the zarr writer and the npz writer load only for their format
    from ckptmap.readers.zarr_store import StoreLocation
    from ckptmap.writers.zarr3 import Zarr3Writer

__all__ = ["TARGETS", "ConvertResult", "convert"]

WRITERS = ("zarr3",)  # the store formats convert writes (writers/zarr3.py)
ARRAY_FILES = ("safetensors", "npz")  # the array-file formats (writers/safetensors.py, npz.py)
TARGETS = (*WRITERS, *ARRAY_FILES)


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
        keys: the keys written, in key order, with their node paths (zarr3) or
            the file holding them (safetensors, npz).
        files: the files written (array files), relative to the output folder.
        skipped: keys left out because the format cannot hold their dtype.
        byte_copied: keys copied as their stored bytes (array files).
        assembled: keys assembled from arrays (array files).
    """

    source: str
    out: str
    to: str
    ocdbt: bool
    arrays: int
    tensor_bytes: int
    store_bytes: int | None
    keys: tuple[tuple[str, str], ...] = ()
    files: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    byte_copied: int | None = None
    assembled: int | None = None

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
            "files": list(self.files),
            "skipped": list(self.skipped),
            "byte_copied": self.byte_copied,
            "assembled": self.assembled,
        }


def convert(
    old: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str = "zarr3",
    ocdbt: bool = False,
    step: int | None = None,
    chunk_bytes: int = ZARR_CHUNK_BYTES,
    block_bytes: int = ZARR_BLOCK_BYTES,
    force: bool = False,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    skip_unsupported: bool = False,
) -> ConvertResult:
    """Write the checkpoint ``old`` as a zarr v3 store, safetensors or npz at ``out``.

    Args:
        old: a model folder, checkpoint prefix or ``.index`` file (a local path
            or a URL), or a store written by ``ckptmap convert``.
        out: a local folder, a ``file://`` URL or another tensorstore kvstore
            URL (``memory://``, ``gs://``, ``s3://``); for safetensors and npz,
            a local file (``x.safetensors``, ``x.npz``) or folder.
        to: the format: ``"zarr3"``, ``"safetensors"`` or ``"npz"``.
        ocdbt: put the arrays inside one OCDBT database at ``out``.
        step: with a model folder, convert the checkpoint of this global step.
        chunk_bytes: the largest zarr chunk, in bytes.
        block_bytes: the most bytes moved by one write (bounds memory).
        force: replace an existing store at ``out``.
        max_shard_size: safetensors: the most bytes of tensors per file; more
            are cut into shards with a Hugging Face index.
        skip_unsupported: safetensors, npz: leave out tensors whose dtype the
            format cannot hold (listed in the result) instead of refusing.

    Returns:
        What was written.

    Raises:
        UsageError: for an unknown ``to``, bad sizes, or options of another format.
        UnsupportedInputError: for tensors the array file cannot hold (strings;
            complex numbers in safetensors), without ``skip_unsupported``.
        MissingInputError, CorruptCheckpointError, UnsupportedInputError: for
            a missing or damaged checkpoint (CRCs are checked while copying).
        OutputExistsError: if ``out`` exists and ``force`` is false.
        OutputError: if the store cannot be written, or ``out`` is a URL
            tensorstore does not understand.

    Example:
        >>> convert("fixtures/dtype_zoo/zoo", "/tmp/zoo.zarr", ocdbt=True)  # doctest: +SKIP
    """
    if to in ARRAY_FILES:
        if ocdbt:
            raise UsageError(f"--ocdbt is for zarr3 stores, not {to}")
        if max_shard_size < 1:
            raise UsageError("max_shard_size must be a positive number of bytes")
        return _convert_array_file(
            old,
            out,
            to=to,
            step=step,
            force=force,
            max_shard_size=max_shard_size,
            skip_unsupported=skip_unsupported,
        )
    if to not in WRITERS:
        raise UsageError(f"unknown store format {to!r} (expected one of: {', '.join(TARGETS)})")
    if chunk_bytes < 1 or block_bytes < 1:
        raise UsageError("chunk_bytes and block_bytes must be positive numbers of bytes")
    from ckptmap.readers.zarr_store import store_location
    from ckptmap.writers.zarr3 import Zarr3Writer

    try:
        location = store_location(out, ocdbt=ocdbt)
    except UsageError as err:
        raise OutputError(str(err)) from err
    with open_source(old, step=step) as source:
        writer = Zarr3Writer(source, chunk_bytes, block_bytes)
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


# -- array files: safetensors, npz ---------------------------------------------------


def _convert_array_file(
    old: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str,
    step: int | None,
    force: bool,
    max_shard_size: int,
    skip_unsupported: bool,
) -> ConvertResult:
    text = os.fspath(out)
    if is_url(text) and not text.startswith("file://"):
        raise UsageError(f"{text}: convert --to {to} writes local files (a path or file://)")
    folder, stem = _array_file_place(Path(text.removeprefix("file://")), to)
    with open_source(old, step=step) as source:
        existing = _array_files_of(folder, stem, to)
        if existing and not force:
            raise OutputExistsError(
                folder / existing[0], "already exists (pass --force to replace it)"
            )
        with open_commit(folder / stem, force=force) as output:
            if to == "safetensors":
                written = write_safetensors(
                    source,
                    output,
                    stem,
                    max_shard_size=max_shard_size,
                    skip_unsupported=skip_unsupported,
                )
            else:
                from ckptmap.writers.npz import write_npz

                written = write_npz(
                    source, output, stem + ".npz", skip_unsupported=skip_unsupported
                )
            output.commit()
        for name in existing:
            if name not in written.files:
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
        shown = folder / written.files[-1] if len(written.files) == 1 else folder
        return ConvertResult(
            source=source.url,
            out=str(shown),
            to=to,
            ocdbt=False,
            arrays=len(written.paths),
            tensor_bytes=written.tensor_bytes,
            store_bytes=written.file_bytes,
            keys=tuple(written.paths.items()),
            files=tuple(written.files),
            skipped=written.skipped,
            byte_copied=written.byte_copied,
            assembled=written.assembled,
        )


def _array_file_place(out: Path, to: str) -> tuple[Path, str]:
    """The output folder and the file stem: ``x.safetensors`` -> (its folder, ``x``)."""
    suffix = f".{to}"
    if out.name.endswith(suffix) and len(out.name) > len(suffix):
        return out.parent, out.name.removesuffix(suffix)
    return out, "model"


def _array_files_of(folder: Path, stem: str, to: str) -> list[str]:
    """Files in ``folder`` of an array-file output named ``stem`` (any shard count), sorted."""
    if not folder.is_dir():
        return []
    if to == "npz":
        return [f"{stem}.npz"] if (folder / f"{stem}.npz").exists() else []
    found = [
        p.name
        for p in folder.iterdir()
        if p.name in (f"{stem}.safetensors", stem + INDEX_SUFFIX)
        or (p.name.startswith(f"{stem}-") and _SHARD.fullmatch(p.name[len(stem) :]))
    ]
    return sorted(found)


_SHARD = re.compile(r"-\d{5}-of-\d{5}\.safetensors")


# -- commit: a local folder -----------------------------------------------------------


def _convert_local(writer: Zarr3Writer, location: StoreLocation, *, force: bool) -> int:
    """Write the store staged through the commit protocol, renamed into place whole."""
    from ckptmap.readers.zarr_store import StoreLocation, local_kvstore

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
    from ckptmap.readers.zarr_store import is_zarr_store

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
    from ckptmap.formats.zarr_layout import INCOMPLETE_MARKER
    from ckptmap.readers.zarr_store import shared_context
    from ckptmap.writers.zarr3 import open_kvstore, tensorstore_result

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
    tensorstore_result(  # one DELETE of the key, not a listed range (see KvLocation.delete)
        root.write(INCOMPLETE_MARKER, None),
        location.text,
        "cannot remove the in-progress marker",
    )


_OTHER_DATA = "holds other data"


def _existing_state(location: StoreLocation) -> str | None:
    """``None`` if nothing is at ``location``; else what is there, for messages."""
    from ckptmap.formats.zarr_layout import INCOMPLETE_MARKER, OCDBT_MANIFEST, ROOT_METADATA
    from ckptmap.readers.zarr_store import shared_context
    from ckptmap.writers.zarr3 import open_kvstore, tensorstore_result

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
    from ckptmap.writers.zarr3 import tensorstore_result

    return bool(tensorstore_result(store.read(key), location.text, "cannot read").state == "value")


def _all_keys() -> Any:
    import tensorstore as ts

    return ts.KvStore.KeyRange()
