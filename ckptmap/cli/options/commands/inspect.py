"""The options of ``ckptmap inspect``."""

from __future__ import annotations

from dataclasses import dataclass

from ckptmap.cli.options.commands._step import check_step

__all__ = ["InspectOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InspectOptions:
    """Options of ``ckptmap inspect`` (the checkpoint itself is its PATH argument).

    :param step: with a model folder, inspect the checkpoint saved at this
        global step instead of the latest one.
    :param json: print the report as JSON on stdout, nothing else.
    :param stats: read the values and add min, max, mean, std and NaN/Inf
        counts per tensor.
    :param verify: check the CRC32C of every tensor's bytes; exit 3 naming the
        first damaged tensor.
    :param tensor: print the values of this tensor (summarized when large)
        instead of the listing.
    :param filter: list only the tensors whose name matches this regular
        expression (re.search).
    """

    step: int | None = None
    json: bool = False
    stats: bool = False
    verify: bool = False
    tensor: str | None = None
    filter: str | None = None

    def __post_init__(self) -> None:
        check_step(self.step)
