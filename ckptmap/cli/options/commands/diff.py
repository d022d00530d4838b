"""The options of ``ckptmap diff``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DiffOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffOptions:
    """Options of ``ckptmap diff`` (the two checkpoints are its A and B arguments).

    :param values: measure the value drift of every common key: max |a-b|,
        relative L2 and NaN/Inf counts (the bytes are compared either way).
    :param alias_map: a JSON file mapping keys of B to keys of A, as remap's
        --alias-map (B migrated from A); entries may carry a transpose.
    :param rules: rules PATTERN=FORMAT from a key of B (without /part_N) to a
        key of A, tried after the alias map.
    :param json: print the report as JSON on stdout, nothing else.
    """

    values: bool = False
    alias_map: Path | None = None
    rules: tuple[str, ...] = ()
    json: bool = False
