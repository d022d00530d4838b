"""The options of ``ckptmap convert``, and the sizes its ``--max-shard-size`` takes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ckptmap.cli.options.commands._step import check_step
from ckptmap.errors import UsageError

__all__ = ["ConvertOptions", "StoreFormat", "byte_size"]


class StoreFormat(Enum):
    """The formats ``ckptmap convert`` writes (``ckptmap.convert.TARGETS``)."""

    ZARR3 = "zarr3"
    SAFETENSORS = "safetensors"
    NPZ = "npz"


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def byte_size(text: str) -> int:
    """A size such as ``5GB``, ``500MB``, ``2GiB`` or ``1000000`` in bytes (GB = 10^9).

    Raises:
        UsageError: if it is not a positive size.
    """
    found = _SIZE.fullmatch(text)
    if found is None or float(found.group(1)) <= 0:
        raise UsageError(f"{text!r} is not a size (e.g. 5GB, 500MB, 2GiB or a number of bytes)")
    unit = (found.group(2) or "").lower()
    scale = 1024 ** "bkmgt".index(unit[0]) if "i" in unit else _UNITS[unit.rstrip("b") or unit]
    return max(1, int(float(found.group(1)) * scale))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertOptions:
    """Options of ``ckptmap convert``: export a checkpoint to another store format.

    :param old: the checkpoint to convert: a model folder, a checkpoint prefix
        or its .index file.
    :param to: the store format to write.
    :param out: where to write the store: a local folder, or a file://,
        memory://, gs:// or s3:// URL.
    :param ocdbt: write the arrays inside one OCDBT database (fewer, larger
        files) instead of one file per chunk.
    :param step: with a model folder, convert the checkpoint saved at this
        global step instead of the latest one.
    :param chunk_mib: the largest zarr chunk, in MiB (tensors that fit are one
        chunk); more than 0.
    :param max_shard_size: safetensors: the most tensor bytes per file (5GB,
        500MB, 2GiB); a larger checkpoint is cut into shards with a Hugging
        Face index (model.safetensors.index.json).
    :param skip_unsupported: safetensors, npz: leave out the tensors the format
        cannot hold (strings; complex numbers in safetensors) and list them,
        instead of refusing.
    :param force: replace an existing store at --out.
    :param json: print the report as JSON on stdout, nothing else.
    """

    old: Path
    to: StoreFormat
    out: str
    ocdbt: bool = False
    step: int | None = None
    chunk_mib: float = 8.0
    max_shard_size: str = "5GB"
    skip_unsupported: bool = False
    force: bool = False
    json: bool = False

    def __post_init__(self) -> None:
        check_step(self.step)
        byte_size(self.max_shard_size)
        if not self.chunk_mib > 0:
            raise UsageError(f"chunk_mib {self.chunk_mib} must be more than 0 (a size in MiB)")
