"""The options of each command, one documented dataclass per command.

Each field with a ``:param`` line becomes an option everywhere: the
``--field-name`` flag, the ``field_name`` config key and the
``CKPTMAP_FIELD_NAME`` environment variable. ``RemapOptions`` extends
``CheckOptions``: ``remap`` plans exactly as ``check`` does, then writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import MappingProxyType


class AssetMode(Enum):
    """What ``remap`` does with the old checkpoint's ``<prefix>.assets/`` folder."""

    LINK = "link"
    COPY = "copy"
    SKIP = "skip"


@dataclass(frozen=True, slots=True, kw_only=True)
class InspectOptions:
    """Options of ``ckptmap inspect`` (the checkpoint itself is its PATH argument).

    :param step: with a model folder, inspect the checkpoint saved at this
        global step instead of the latest one.
    :param json: print the report as JSON on stdout, nothing else.
    :param stats: read the values and add min, max, mean, std and NaN/Inf
        counts per tensor.
    :param verify: check the CRC32C of every tensor's bytes.
    :param tensor: print the values of this tensor instead of the listing.
    :param filter: list only the tensors whose name matches this regular
        expression (re.search).
    """

    step: int | None = None
    json: bool = False
    stats: bool = False
    verify: bool = False
    tensor: str | None = None
    filter: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOptions:
    """Options of ``ckptmap check``: would the new model restore from the old checkpoint?

    :param old: the old checkpoint: a prefix, its .index file, or a folder
        with a 'checkpoint' state file.
    :param new_graph: the new model: graph.pbtxt, a .pb GraphDef, a .meta
        MetaGraphDef or a SavedModel folder.
    :param alias_map: a JSON file mapping new variable names to old keys;
        applied before the rules.
    :param rules: alias rules PATTERN=FORMAT, matched against new variable
        names without /part_N; applied after the alias map, in order.
    :param auto: generate the remaining aliases with Monolith's heuristics.
    :param clear_nn: drop the dense (NN) variables: the new model initializes them.
    :param continue_training: keep global_step so training continues from
        the old step.
    :param allow_missing: accept new variables that have no source (they
        keep their initializers) instead of failing.
    :param saver: the name scope of the saver whose restore op lists the new
        model's keys (e.g. save_1); the default saver when empty.
    :param step: the checkpoint step to read from a folder with several
        checkpoints; the latest when not set.
    :param candidate_cutoff: how similar (0 to 1) an old key must be to an
        unresolved variable's name to be listed as a candidate.
    :param json: print a JSON report instead of tables.
    :param quiet: print nothing but errors; the exit status tells the result.
    :param explain: show why each variable got its source.
    :param junit: also write the report as a JUnit XML file here (one test
        case per key the new model restores), for CI dashboards.
    """

    old: Path
    new_graph: Path
    alias_map: Path | None = None
    rules: tuple[str, ...] = ()
    auto: bool = True
    clear_nn: bool = False
    continue_training: bool = False
    allow_missing: bool = False
    saver: str = ""
    step: int | None = None
    candidate_cutoff: float = 0.5
    json: bool = False
    quiet: bool = False
    explain: bool = False
    junit: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemapOptions(CheckOptions):
    """Options of ``ckptmap remap``: those of ``check``, and where and how to write.

    :param out: the output: a checkpoint prefix (new/model.ckpt-100), or a
        folder (an existing one, or a path ending in /) that becomes a model
        folder with a 'checkpoint' state file.
    :param dry_run: plan only: report what would be written and write nothing.
    :param force: overwrite an existing output checkpoint.
    :param shards: the number of .data shards to write.
    :param link: hard-link data shards that are copied unchanged instead of
        copying them (same filesystem only).
    :param on_existing_assets: what to do with the old checkpoint's
        <prefix>.assets/ folder: link its files (copying when linking fails),
        copy them, or skip them.
    """

    out: str
    dry_run: bool = False
    force: bool = False
    shards: int = 1
    link: bool = False
    on_existing_assets: AssetMode = AssetMode.LINK


COMMAND_OPTIONS: Mapping[str, type] = MappingProxyType(
    {"inspect": InspectOptions, "check": CheckOptions, "remap": RemapOptions}
)
"""The options dataclass of each command; their keys are the config tables."""
