"""The library calls of the migration: ``plan_remap``, ``check`` and ``remap``.

Each takes the old checkpoint, the new model and the planning options of
:class:`~ckptmap.migration.inputs.PlanInputs` as keywords (``step``,
``alias_map``, ``rules``, ``auto``, ``clear_nn``, ``continue_training``,
``saver``, ``candidate_cutoff``, ``allow_missing``), or one ready
:class:`PlanInputs`; the defaults are PlanInputs'.
"""

from __future__ import annotations

import os
from typing import Any

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

    Example:
        >>> report = check("old_model/", "new/graph.pbtxt")  # doctest: +SKIP
        >>> report.ok  # doctest: +SKIP
        True
    """
    return CheckReport(plan_from(_inputs(old, new_graph, options)))


def remap(
    old: Any,
    new_graph: Any,
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    shards: int = 1,
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
        assets=assets,
        link=link,
        verify=verify,
        progress=progress,
    )
