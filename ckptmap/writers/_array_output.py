"""What the safetensors and npz writers share: which keys they can store, and what they report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ckptmap.dtypes import DType
from ckptmap.errors import UnsupportedInputError
from ckptmap.formats.array_files import ManifestEntry, encode_manifest
from ckptmap.spec import TensorSpec

__all__ = ["ArrayFileResult", "manifest_of", "supported_specs"]

_SHOWN = 10  # keys named in a refusal


@dataclass(slots=True)
class ArrayFileResult:
    """What an array-file writer staged.

    Attributes:
        files: the file names written (relative to the output folder), in order.
        paths: the file holding each key, in key order.
        skipped: keys left out because the format cannot hold their dtype.
        tensor_bytes: bytes of tensor data written.
        file_bytes: bytes of the files written.
        byte_copied: keys whose stored bytes were copied as they are.
        assembled: keys assembled from arrays (other slice layouts, other sources).
    """

    files: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    tensor_bytes: int = 0
    file_bytes: int = 0
    byte_copied: int = 0
    assembled: int = 0


def supported_specs(
    specs: Mapping[str, TensorSpec],
    can_store: Callable[[DType], bool],
    *,
    format_name: str,
    where: str,
    skip_unsupported: bool,
) -> tuple[dict[str, TensorSpec], tuple[str, ...]]:
    """The specs a format can hold, and the keys it cannot (left out only if asked).

    Raises:
        UnsupportedInputError: if some dtypes cannot be stored and
            ``skip_unsupported`` is false; the message lists the keys.
    """
    kept = {k: s for k, s in specs.items() if can_store(s.dtype)}
    refused = tuple(k for k in specs if k not in kept)
    if refused and not skip_unsupported:
        shown = ", ".join(f"{k!r} ({specs[k].dtype.name})" for k in refused[:_SHOWN])
        more = f" and {len(refused) - _SHOWN} more" if len(refused) > _SHOWN else ""
        raise UnsupportedInputError(
            f"{where}: {len(refused)} tensors have a dtype {format_name} cannot hold: "
            f"{shown}{more} (pass --skip-unsupported to leave them out)"
        )
    return kept, refused


def manifest_of(url: str, name: str, specs: Mapping[str, TensorSpec]) -> str:
    """The ckptmap manifest (TF dtype, slice layout) of the keys ``specs`` names."""
    return encode_manifest(
        url, name, ((k, ManifestEntry(s.dtype, tuple(s.slices))) for k, s in specs.items())
    )
