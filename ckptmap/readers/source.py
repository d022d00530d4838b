"""One way to open any old checkpoint: :func:`open_source` and the :class:`Source` protocol.

Every command that reads a checkpoint (``inspect``, ``check``, ``remap``,
``convert``) opens it here and talks to it through :class:`Source` only:
what it is, its keys and :class:`~ckptmap.spec.TensorSpec`\\ s, the stored
slices of a key, whole tensors and boxes of them, integrity checks, assets.
These readers implement it:

* :class:`ckptmap.readers.tf_bundle.Checkpoint`: a TensorFlow V2 checkpoint
  (tensor bundle), local or at a URL;
* :class:`ckptmap.readers.tf_v1.V1Checkpoint`: a TensorFlow V1 checkpoint
  (one table file per shard, no ``.index``), local, read-only;
* :class:`ckptmap.readers.zarr_store.ZarrCheckpoint`: a zarr v3 store written
  by ``ckptmap convert``;
* :class:`ckptmap.readers._array_source.ArraySource`: a safetensors file (or a
  sharded model with its index JSON; :mod:`ckptmap.readers.safetensors`) or an
  npz archive (:mod:`ckptmap.readers.npz`), local files only.

A source whose tensors are stored as TensorFlow bundle entries (raw byte
ranges with a CRC32C each, which a writer may copy as they are) is a
:class:`~ckptmap.readers.tf_bundle.Checkpoint`; :func:`can_copy_bytes` says so
and narrows the type. Nothing else needs to know which format a source is.

Adding a source (a V1 checkpoint, a Snappy-compressed table, safetensors or
npz files, a TF2 object graph):

1. write a reader module under ``ckptmap/readers/`` whose open function reads
   only the listing (index, manifest, header) and returns an object with every
   member of :class:`Source` (mypy checks it: add its class to
   ``_implementations`` at the bottom of this module);
2. recognise it in :func:`open_source`, after the TensorFlow bundle (which is
   tried first so that a URL costs no extra request) and without reading
   tensor data;
3. add a subclass of ``SourceContract`` in
   ``tests/readers/test_source_contract.py`` with a fixture of the format.

Example:
    >>> with open_source("fixtures/ffm_v1") as source:  # doctest: +SKIP
    ...     source.format, source.specs()["global_step"].shape
    ('tf', ())
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeGuard, runtime_checkable

from ckptmap.errors import MissingInputError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from ckptmap.readers.assets import Asset
    from ckptmap.readers.tf_bundle import Checkpoint
    from ckptmap.spec import TensorSpec
    from ckptmap.split import Box, SliceSpec

__all__ = ["Source", "can_copy_bytes", "check_box", "open_source"]


@runtime_checkable
class Source(Protocol):
    """An open checkpoint, whatever its format: listing, reading, checking.

    Attributes:
        format: the format's name, for display (``"tf"``, ``"zarr3"``).
        url: the checkpoint as the user would write it (a local path or a
            URL): a TensorFlow checkpoint's prefix, a store's folder.
        where: the file that lists the tensors (a bundle's ``.index``, a
            store's root ``zarr.json``), named in messages about the listing.
        name: the checkpoint's file name (``model.ckpt-100``), which an output
            model folder gives the new checkpoint; for a converted store, the
            name of the checkpoint it was converted from (``""`` if unknown).
        byte_order: ``"<"`` or ``">"``, the byte order of the stored numbers.
        assets: the non-tensor files that travel with the checkpoint.
        notes: how the checkpoint was found, worth telling the user (a moved
            folder's state file resolved to the checkpoint here); usually empty.
    """

    @property
    def format(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def where(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def byte_order(self) -> str: ...

    @property
    def assets(self) -> Sequence[Asset]: ...

    @property
    def notes(self) -> tuple[str, ...]: ...

    def keys(self) -> list[str]:
        """The tensors' keys, sorted as unsigned bytes (as TensorFlow sorts them)."""
        ...

    def __contains__(self, key: object) -> bool: ...

    def __iter__(self) -> Iterator[str]: ...

    def __len__(self) -> int: ...

    def specs(self) -> dict[str, TensorSpec]:
        """A :class:`~ckptmap.spec.TensorSpec` per key, in key order, with stored slices."""
        ...

    def slices(self, key: str) -> tuple[SliceSpec, ...]:
        """The stored slices of ``key`` in stored order; empty for a tensor stored whole.

        Raises:
            TensorNotFoundError: if there is no such tensor.
        """
        ...

    def read(self, key: str) -> np.ndarray:
        """The whole tensor ``key``, read-only (strings: an ``object`` array of ``bytes``).

        Raises:
            TensorNotFoundError: if there is no such tensor.
            MissingInputError: if the file holding its data is missing.
            CorruptCheckpointError: if its stored data are damaged.
        """
        ...

    def read_box(self, key: str, box: Sequence[tuple[int, int]]) -> np.ndarray:
        """The part ``[start, stop)`` per axis of ``key``, reading only the slices it touches.

        Raises:
            TensorNotFoundError: if there is no such tensor.
            UsageError: if the box does not fit the tensor's shape.
            MissingInputError: if a file holding its data is missing.
            CorruptCheckpointError: if its stored data are damaged.
        """
        ...

    def verify(self) -> list[str]:
        """Check every stored byte against the checksums the format keeps.

        Returns:
            The keys checked, in key order.

        Raises:
            CorruptCheckpointError: naming the first tensor whose bytes are wrong.
            MissingInputError: if a data file is missing.
            UsageError: if the format keeps no checksums (a zarr3 store).
        """
        ...

    def close(self) -> None:
        """Release files and mappings; arrays already returned stay valid."""
        ...

    def __enter__(self) -> Source: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def check_box(key: str, box: Sequence[tuple[int, int]], shape: tuple[int, ...]) -> Box:
    """``box`` as ints, checked to lie inside the tensor ``key`` of ``shape`` (for readers).

    Raises:
        UsageError: if it has the wrong rank or reaches outside the shape.
    """
    fitted = tuple((int(a), int(b)) for a, b in box)
    if len(fitted) != len(shape) or any(
        not 0 <= a <= b <= d for (a, b), d in zip(fitted, shape, strict=True)
    ):
        raise UsageError(f"box {list(fitted)} does not fit {key!r} of shape {list(shape)}")
    return fitted


def can_copy_bytes(source: Source) -> TypeGuard[Checkpoint]:
    """True when ``source`` stores TensorFlow bundle entries whose bytes may be copied as they are.

    Such a source is a :class:`~ckptmap.readers.tf_bundle.Checkpoint` (its
    entries, shards and byte ranges are then available); any other source is
    read as arrays (:meth:`Source.read_box`).
    """
    from ckptmap.readers.tf_bundle import Checkpoint

    return isinstance(source, Checkpoint)


def open_source(path_or_url: str | os.PathLike[str], step: int | None = None) -> Source:
    """Open the checkpoint at ``path_or_url``, reading only its listing.

    A TensorFlow checkpoint is tried first (a model folder, a prefix, an
    ``.index`` file; locally or at a URL), so a URL costs no extra request;
    only where no checkpoint is found is the path tried as a zarr3 store
    written by ``ckptmap convert``.

    Args:
        path_or_url: a model folder, a checkpoint prefix or its ``.index``
            file, a store written by ``ckptmap convert``; a local path or a URL.
        step: with a model folder or prefix, the checkpoint of this global step.

    Returns:
        The open source; close it, or use it as a context manager.

    Raises:
        MissingInputError: if there is no checkpoint and no store there.
        CorruptCheckpointError: if the listing (state file, index, manifest) is damaged.
        UnsupportedInputError: if the checkpoint uses a feature ckptmap cannot read.
        InputError: if a store at a URL cannot be reached or read.
        UsageError: if ``step`` is given with an ``.index`` path or a zarr3
            store, or the URL is not one ckptmap can open.

    Example:
        >>> with open_source("fixtures/ffm_v1", step=50) as source:  # doctest: +SKIP
        ...     source.read("global_step")
        array(50)
    """
    from ckptmap.readers.state import find_checkpoint
    from ckptmap.readers.tf_bundle import open_found
    from ckptmap.storage.urls import local_input

    try:
        ref = find_checkpoint(local_input(path_or_url), step=step)
        if ref.v1_files:
            from ckptmap.readers.tf_v1 import open_v1

            return open_v1(ref)
        return open_found(ref)
    except MissingInputError as err:
        from ckptmap.readers.tf_v1 import v1_at_url
        from ckptmap.readers.zarr_store import is_zarr_store

        v1 = v1_at_url(err)
        if v1 is not None:
            raise v1 from None

        array_file = _open_array_file(path_or_url, step)
        if array_file is not None:
            return array_file
        if not is_zarr_store(path_or_url):
            raise
    if step is not None:
        raise UsageError(
            f"{os.fspath(path_or_url)}: --step picks a checkpoint in a model folder, "
            "not in a zarr store"
        )
    from ckptmap.readers.zarr_store import open_store

    return open_store(path_or_url)


def _open_array_file(path: str | os.PathLike[str], step: int | None) -> Source | None:
    """A safetensors file (or sharded index, or model folder) or an npz archive; else ``None``."""
    from ckptmap.readers.npz import find_npz, open_npz
    from ckptmap.readers.safetensors import find_safetensors, open_safetensors

    opener = open_safetensors if find_safetensors(path) else open_npz if find_npz(path) else None
    if opener is None:
        return None
    if step is not None:
        raise UsageError(
            f"{os.fspath(path)}: --step picks a checkpoint in a model folder, "
            "not in a safetensors or npz file"
        )
    return opener(path)


if TYPE_CHECKING:  # every reader satisfies the protocol (mypy checks these lines)
    from ckptmap.readers._array_source import ArraySource
    from ckptmap.readers.tf_v1 import V1Checkpoint
    from ckptmap.readers.zarr_store import ZarrCheckpoint

    def _implementations(
        a: Checkpoint, b: ZarrCheckpoint, c: ArraySource, d: V1Checkpoint
    ) -> tuple[Source, Source, Source, Source]:
        return a, b, c, d
