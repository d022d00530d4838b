"""The migration, in one place: inputs → plan → verdict → execution → report.

- :mod:`~ckptmap.migration.inputs`: :class:`PlanInputs`, the one list of
  planning options and their defaults; reading an alias-map file.
- :mod:`~ckptmap.migration.pieces`: per output key, which stored old pieces
  feed each stored piece and how its bytes are made (copy, byte ranges, assembly).
- :mod:`~ckptmap.migration.plan`: :class:`RemapPlan` and :func:`plan_from`
  (indexes and graphs only).
- :mod:`~ckptmap.migration.verdict`: THE verdict (ok, partial, unresolved, mismatched).
- :mod:`~ckptmap.migration.execute`: :func:`execute`, writing a plan;
  :mod:`~ckptmap.migration.write` moves the bytes of each piece,
  :mod:`~ckptmap.migration.source_crcs` checks source CRCs in one pass,
  :mod:`~ckptmap.migration.assets` stages the old assets in the output's
  commit (:mod:`ckptmap.writers.commit`, local and URL outputs alike).
- :mod:`~ckptmap.migration.report`: :class:`CheckReport` (text counts, JSON, JUnit).
- :mod:`~ckptmap.migration.api`: the library calls ``plan_remap``, ``check``, ``remap``.
"""

from __future__ import annotations

from ckptmap.migration.api import check, plan_remap, remap
from ckptmap.migration.execute import RemapResult, execute
from ckptmap.migration.inputs import PlanInputs, load_alias_map
from ckptmap.migration.plan import RemapPlan, plan_from
from ckptmap.migration.report import CheckReport
from ckptmap.migration.verdict import Verdict, decide

__all__ = [
    "CheckReport",
    "PlanInputs",
    "RemapPlan",
    "RemapResult",
    "Verdict",
    "check",
    "decide",
    "execute",
    "load_alias_map",
    "plan_from",
    "plan_remap",
    "remap",
]
