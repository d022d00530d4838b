"""The options of the planning commands: ``alias``, ``check`` and ``remap``.

They share :class:`PlanOptions`: ``alias`` takes just those, ``check`` adds how
to report, and :class:`RemapOptions` extends :class:`CheckOptions`: ``remap``
plans exactly as ``check`` does, then writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ckptmap.defaults import CANDIDATE_CUTOFF

__all__ = ["AliasOptions", "AssetMode", "CheckOptions", "PlanOptions", "RemapOptions"]


class AssetMode(Enum):
    """What ``remap`` does with the old checkpoint's ``<prefix>.assets/`` folder."""

    LINK = "link"
    COPY = "copy"
    SKIP = "skip"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOptions:
    """The options every planning command shares (``alias``, ``check``, ``remap``).

    Their defaults are those of :class:`ckptmap.migration.PlanInputs`, which the
    commands build from them (a test pins that the two agree).

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
    :param continue_training: with --clear-nn, keep global_step so training
        continues from the old step (without --clear-nn global_step is
        restored like every other key).
    :param allow_missing: accept new variables that have no source instead of
        failing: the output leaves them out, so restore it with
        tf.compat.v1.train.init_from_checkpoint or a warm start (they keep
        their initializers), not a plain Saver.
    :param fill_from: a checkpoint of the new model (e.g. saved right after
        initialization): variables with no source take their values from it,
        so the output is complete and a plain Saver restores it.
    :param saver: the name scope of the saver whose restore op lists the new
        model's keys (e.g. save_1); the default saver when not set.
    :param step: the checkpoint step to read from a folder with several
        checkpoints; the latest when not set.
    :param candidate_cutoff: how similar (0 to 1) an old key must be to an
        unresolved variable's name to be listed as a candidate.
    """

    old: Path
    new_graph: Path
    alias_map: Path | None = None
    rules: tuple[str, ...] = ()
    auto: bool = True
    clear_nn: bool = False
    continue_training: bool = False
    allow_missing: bool = False
    fill_from: Path | None = None
    saver: str | None = None
    step: int | None = None
    candidate_cutoff: float = CANDIDATE_CUTOFF  # the one default (ckptmap.defaults)


@dataclass(frozen=True, slots=True, kw_only=True)
class AliasOptions(PlanOptions):
    """Options of ``ckptmap alias``: the planning options only (it always prints JSON)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOptions(PlanOptions):
    """Options of ``ckptmap check``: would the new model restore from the old checkpoint?

    :param json: print a JSON report instead of tables.
    :param quiet: print nothing but errors (no tables, no progress); the exit
        status tells the result.
    :param explain: show why each variable got its source.
    :param junit: also write the report as a JUnit XML file here (one test
        case per key the new model restores), for CI dashboards.
    """

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
    :param shards: the number of .data shards to write, filled together.
    :param shard_size: write .data shards of at most this size instead (e.g.
        32MiB, 1GB), filled one after another; with an --out URL each is
        uploaded as soon as it is full, while the rest is written. Given
        neither option, an --out URL gets shards of 32MiB, a local --out one
        shard.
    :param link: hard-link data shards that are copied unchanged instead of
        copying them (same filesystem only).
    :param on_existing_assets: what to do with the old checkpoint's
        <prefix>.assets/ folder: copy its files (a reflink where the file system
        can), hard-link them (output and input then share the files; copies
        where linking fails), or skip them.
    :param max_inflight: an old checkpoint at a URL: byte-range requests kept
        in flight at once.
    :param inflight_mib: an old checkpoint at a URL: MiB requested and not yet
        written, at most (one request is always allowed, so a small budget
        reads one range at a time).
    """

    out: str
    dry_run: bool = False
    force: bool = False
    shards: int = 1
    shard_size: str | None = None
    link: bool = False
    on_existing_assets: AssetMode = AssetMode.COPY
    max_inflight: int = 32  # the defaults of ckptmap.storage.range_reads.ReadOptions
    inflight_mib: int = 256
