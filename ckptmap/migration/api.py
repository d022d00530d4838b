"""The library calls of the migration: ``plan_remap``, ``check`` and ``remap``.

Each takes the old checkpoint, the new model and the planning options of
:class:`~ckptmap.migration.inputs.PlanInputs` as keywords (``step``,
``alias_map``, ``rules``, ``auto``, ``clear_nn``, ``continue_training``,
``saver``, ``candidate_cutoff``, ``allow_missing``), or one ready
:class:`PlanInputs`; the defaults are PlanInputs'.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ckptmap.errors import MissingInputError
from ckptmap.migration.execute import RemapResult, execute
from ckptmap.migration.inputs import PlanInputs
from ckptmap.migration.plan import RemapPlan, plan_from
from ckptmap.migration.report import CheckReport
from ckptmap.migration.write import Progress


def _inputs(old: Any, new_graph: Any, options: dict[str, Any]) -> PlanInputs:
    if isinstance(old, PlanInputs):
        if new_graph is not None or options:
            raise TypeError("pass either a PlanInputs or (old, new_graph, **options)")
        return old
    if new_graph is None:
        raise TypeError("the new model (new_graph) is required")
    return PlanInputs.of(old, new_graph, options)


def plan_remap(old: Any, new_graph: Any = None, /, **options: Any) -> RemapPlan:
    """Decide every output tensor of a remap, reading indexes and graphs only.

    Args:
        old: the old checkpoint (model folder, prefix, ``.index``, URL, zarr3
            store, or an open source), or a :class:`PlanInputs`.
        new_graph: the new model (graph.pbtxt, .pb, .meta, SavedModel folder,
            JSON spec, a checkpoint of the new model) or a ``ModelSpec``.
        **options: the other fields of :class:`PlanInputs`.

    Returns:
        The plan; ``plan.verdict`` is the one verdict, ``plan.complete`` whether
        every key has a source.

    Raises:
        InputError: unreadable old checkpoint or new model.
        AliasError: invalid alias map or rule.
        UsageError: an unknown option or a value out of range.
    """
    return plan_from(_inputs(old, new_graph, options))


def check(old: Any, new_graph: Any = None, /, **options: Any) -> CheckReport:
    """Check that every key the new model restores can be fed from the old checkpoint.

    Reads the old index and the new model's description only; arguments as in
    :func:`plan_remap`.

    Returns:
        The report; ``report.ok`` is the verdict.

    Raises:
        MissingInputError: a data file of a local old checkpoint is missing
            (checked by a stat: a restore from it would fail).

    Example:
        >>> report = check("old_model/", "new/graph.pbtxt")  # doctest: +SKIP
        >>> report.ok  # doctest: +SKIP
        True
    """
    inputs = _inputs(old, new_graph, options)
    from ckptmap.readers.source import Source, open_source

    if isinstance(inputs.old, Source):
        return _checked_data_files(CheckReport(plan_from(inputs)), inputs.old)
    with open_source(inputs.old, step=inputs.step) as source:
        report = CheckReport(plan_from(dataclasses.replace(inputs, old=source)))
        return _checked_data_files(report, source)


def _checked_data_files(report: CheckReport, source: Any) -> CheckReport:
    """Require every data file of a local V2 checkpoint to exist (a stat each, no read).

    A check reads only the index, but a restore reads the data files: one that
    is missing fails it. At a URL the data files are not looked at.

    Raises:
        MissingInputError: naming the first missing data file.
        UnsupportedInputError: naming the first data file that is no regular file
            (a FIFO, socket, device, dangling link or link out of the folder).
    """
    from ckptmap.readers.source import can_copy_bytes
    from ckptmap.storage.input_files import resolved_input

    if not can_copy_bytes(source) or not source.location.is_local:
        return report
    for shard in range(source.num_shards):
        path = source.shard_path(shard)
        try:  # lstat, no open: a FIFO, device or link out is refused by name
            resolved_input(path, path.parent)
        except MissingInputError:
            raise MissingInputError(
                path,
                "data file of this checkpoint is missing, so no restore from it can succeed"
                f" (copy every {path.name.split('.data-')[0]}.data-* file together with the"
                " .index)",
            ) from None
    return report


def remap(
    old: Any,
    new_graph: Any,
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    shards: int | None = None,
    shard_bytes: int | None = None,
    assets: str = "link",
    link: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
    **options: Any,
) -> RemapResult:
    """Plan and write a migrated checkpoint in one call.

    See :func:`plan_remap` for the planning arguments and
    :func:`~ckptmap.migration.execute.execute` for the writing ones.

    Example:
        >>> result = remap("old_model/", "new/graph.pbtxt", "new_model/",
        ...                rules=["^model_v2/(.*)$=model/{}"])  # doctest: +SKIP
    """
    plan = plan_from(_inputs(old, new_graph, options))
    return execute(
        plan,
        out,
        force=force,
        shards=shards,
        shard_bytes=shard_bytes,
        assets=assets,
        link=link,
        verify=verify,
        progress=progress,
    )
