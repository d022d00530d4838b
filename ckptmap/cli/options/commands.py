"""The options of each command, one documented dataclass per command.

Each field with a ``:param`` line becomes an option everywhere: the
``--field-name`` flag, the ``field_name`` config key and the
``CKPTMAP_FIELD_NAME`` environment variable. The planning commands share
:class:`PlanOptions`: ``alias`` takes just those, ``check`` adds how to report,
and ``RemapOptions`` extends ``CheckOptions``: ``remap`` plans exactly as
``check`` does, then writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import MappingProxyType

from ckptmap.defaults import CANDIDATE_CUTOFF
from ckptmap.errors import UsageError


def _check_step(step: int | None) -> None:
    if step is not None and step < 0:
        raise UsageError(f"step {step} is negative; a global step is 0 or more")


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
        _check_step(self.step)


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
    :param shards: the number of .data shards to write.
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
    link: bool = False
    on_existing_assets: AssetMode = AssetMode.COPY
    max_inflight: int = 32  # the defaults of ckptmap.storage.range_reads.ReadOptions
    inflight_mib: int = 256


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
        _check_step(self.step)
        byte_size(self.max_shard_size)
        if not self.chunk_mib > 0:
            raise UsageError(f"chunk_mib {self.chunk_mib} must be more than 0 (a size in MiB)")


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


COMMAND_OPTIONS: Mapping[str, type] = MappingProxyType(
    {
        "inspect": InspectOptions,
        "check": CheckOptions,
        "remap": RemapOptions,
        "alias": AliasOptions,
        "convert": ConvertOptions,
        "diff": DiffOptions,
    }
)
"""The options dataclass of each command; their keys are the config tables."""
