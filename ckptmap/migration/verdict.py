"""THE verdict of a migration: the only place that decides ok / partial / unresolved / mismatched.

``check``, ``remap``, ``remap --dry-run``, the JUnit report and the in-graph
adapter (``ckptmap.tf``) all ask :func:`decide`, so they cannot disagree:

- ``ok``: every key the new model restores has a source of its shape and dtype;
- ``partial``: some keys have no source, none has a wrong one, and missing keys
  are allowed (``allow_missing``): the output leaves them out;
- ``unresolved``: some keys have no source and that is not allowed;
- ``mismatched``: some key's source has another shape or dtype — never accepted,
  whatever ``allow_missing`` says (the output would not restore).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ckptmap.alias import AliasPlan


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


def decide(alias: AliasPlan, *, allow_missing: bool) -> Verdict:
    """The verdict of an alias plan.

    >>> from ckptmap.alias import AliasPlan
    >>> decide(AliasPlan({}, {}, [], [], [], []), allow_missing=False)
    <Verdict.OK: 'ok'>
    """
    if alias.mismatched:
        return Verdict.MISMATCHED
    if alias.unresolved:
        return Verdict.PARTIAL if allow_missing else Verdict.UNRESOLVED
    return Verdict.OK
