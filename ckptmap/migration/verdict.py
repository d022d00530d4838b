"""THE verdict of a migration: the only place that decides ok / partial / unresolved / mismatched.

``check``, ``remap``, ``remap --dry-run``, the JUnit report and the in-graph
adapter (``ckptmap.tf``) all ask :func:`decide`, so they cannot disagree:

- ``ok``: every key the new model restores has a source of its shape and dtype
  (an old key, or with ``fill_from`` the same key of a checkpoint of the new
  model): the output is complete and a plain Saver restores it;
- ``partial``: some keys have no source, none has a wrong one, and missing keys
  are allowed (``allow_missing``): the output leaves them out, so it is
  restored by name-mapping loaders (:data:`PARTIAL_RESTORE`), not a plain Saver;
- ``unresolved``: some keys have no source and that is not allowed;
- ``mismatched``: some key's source has another shape or dtype — never accepted,
  whatever ``allow_missing`` says (the output would not restore).
"""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ckptmap.alias import AliasPlan

PARTIAL_RESTORE = (
    "a plain Saver refuses a checkpoint that lacks keys of its graph: restore it with"
    " tf.compat.v1.train.init_from_checkpoint(prefix, {key: variable}) for the keys it"
    " has (tf.train.list_variables(prefix)) or a warm start limited to them"
    " (tf.estimator.WarmStartSettings(vars_to_warm_start=[...])); the missing variables"
    " keep their initializers. --fill-from writes a complete checkpoint instead"
)
"""How a ``partial`` output is restored (for the CLI's note, --help and the README)."""


class Verdict(str, Enum):
    """The outcome of a plan; :attr:`accepted` says whether it may be written."""

    OK = "ok"
    PARTIAL = "partial"
    UNRESOLVED = "unresolved"
    MISMATCHED = "mismatched"

    @property
    def accepted(self) -> bool:
        """True when the migration may go ahead (``ok`` or ``partial``)."""
        return self in (Verdict.OK, Verdict.PARTIAL)

    @property
    def exit_code(self) -> int:
        """The CLI's exit status for this verdict: 0 accepted, 1 otherwise."""
        return 0 if self.accepted else 1

    @property
    def label(self) -> str:
        """The word a report starts with: ``OK``, ``OK (partial)`` or ``FAIL``."""
        return {"ok": "OK", "partial": "OK (partial)"}.get(self.value, "FAIL")


def decide(alias: AliasPlan, *, allow_missing: bool, filled: Collection[str] = ()) -> Verdict:
    """The verdict of an alias plan.

    Args:
        alias: the plan.
        allow_missing: whether keys with no source may be left out.
        filled: the unresolved keys that take their value from a checkpoint of
            the new model (``fill_from``); they count as having a source.

    >>> from ckptmap.alias import AliasPlan
    >>> decide(AliasPlan({}, {}, [], [], [], []), allow_missing=False)
    <Verdict.OK: 'ok'>
    """
    if alias.mismatched:
        return Verdict.MISMATCHED
    if any(u.new_key not in filled for u in alias.unresolved):
        return Verdict.PARTIAL if allow_missing else Verdict.UNRESOLVED
    return Verdict.OK


def partial_sentence(missing: int) -> str:
    """What a ``partial`` verdict leaves out, as the CLI and the reports say it.

    >>> partial_sentence(3)
    '3 keys have no source and will not be in the output'
    """
    if missing == 1:
        return "1 key has no source and will not be in the output"
    return f"{missing:,} keys have no source and will not be in the output"
