"""The check report: a remap plan's verdict and everything behind it, as text, JSON and JUnit.

A check is a remap plan without the writing: it reads the old checkpoint's
index and the new model's description, never tensor data, and reports every
key the new model restores that has no source, or a source of another shape or
dtype, with candidates and a rule or alias-map entry that would fix it. Its
verdict is the plan's (:mod:`ckptmap.migration.verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from ckptmap.alias import (
    DEDUPLICATED_SCOPE,
    DENSE_RENUMBERED,
    EXACT,
    EXPLICIT,
    MISSING_DENSE_OFFSET,
    PARTITION_MERGED,
)
from ckptmap.migration.plan import FILLED, RemapPlan
from ckptmap.migration.verdict import Verdict
from ckptmap.storage import location_text


def reason_sentence(reason: str, detail: str, source: str) -> str:
    """Why a key got its source, as a sentence (``--explain`` and the JSON's ``why``).

    Args:
        reason: the match's reason code (docs/alias-heuristics.md).
        detail: the match's specifics (which layers, which rule or entry).
        source: the old key (for ``filled``, the checkpoint filled from).

    >>> reason_sentence("exact", "", "w")
    'the old checkpoint has the same key'
    """
    if reason == EXACT:
        return "the old checkpoint has the same key"
    if reason == PARTITION_MERGED:
        return f"{source} is the same variable once /part_N terms are removed"
    if reason == DEDUPLICATED_SCOPE:
        return f"{source} has the same name once repeated scopes are removed"
    if reason == DENSE_RENUMBERED:
        return f"the same dense layer, renumbered: {detail}" if detail else reason
    if reason == MISSING_DENSE_OFFSET:
        what = "the dense layers shifted past a dropped one (Monolith's missing-dense offset)"
        return f"{what}: {detail}" if detail else what
    if reason == EXPLICIT:
        return f"named by the {detail}" if detail else "named by the alias map"
    if reason.startswith("rule "):
        return f"the user's rule {detail}" if detail else reason
    if reason.startswith("builtin-rule "):
        return f"the built-in rule {detail}" if detail else reason
    if reason == FILLED:
        return f"no source in the old checkpoint; filled from {source}"
    return detail or reason


@dataclass(frozen=True)
class CheckReport:
    """The verdict of a check and everything behind it.

    Attributes:
        plan: the remap plan the check made.
    """

    plan: RemapPlan

    @property
    def verdict(self) -> Verdict:
        """The one verdict (the plan's)."""
        return self.plan.verdict

    @property
    def ok(self) -> bool:
        """True when the verdict is accepted: ``ok``, or ``partial`` with ``allow_missing``."""
        return self.plan.accepted

    @property
    def complete(self) -> bool:
        """True when every key the new model restores has a source of matching shape and dtype."""
        return self.plan.complete

    @property
    def restores_directly(self) -> bool:
        """True when the old checkpoint restores into the new model as it is, without a remap."""
        return self.plan.alias.is_identity and all(
            t.action in ("copy", "convert") or t.dtype.copyable for t in self.plan.tensors
        )

    def why(self, key: str) -> str:
        """The reason sentence of a resolved or filled key."""
        plan = self.plan
        if key in plan.filled_keys and plan.fill_from is not None:
            return reason_sentence(FILLED, "", location_text(plan.fill_from))
        m = plan.alias.matches[key]
        return reason_sentence(m.reason, m.detail, m.old_key)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (schema in docs/json-schema.md)."""
        alias = self.plan.alias.to_json()
        filled = self.plan.filled_keys
        notes = {u["new_key"]: u["note"] for u in alias["unresolved"]}
        alias["unresolved"] = [u for u in alias["unresolved"] if u["new_key"] not in filled]
        fill_from = self.plan.fill_from
        return {
            "ok": self.ok,
            "verdict": self.verdict.value,
            "old": location_text(self.plan.old_prefix),
            "new": self.plan.new_source,
            "restores_directly": self.restores_directly,
            "counts": {
                "keys": len(self.plan.tensors)
                + len(alias["unresolved"])
                + len(alias["mismatched"])
                + len(alias["dropped"])
                + len(filled),
                "resolved": len(self.plan.tensors),
                "filled": len(filled),
                "unresolved": len(alias["unresolved"]),
                "mismatched": len(alias["mismatched"]),
                "dropped": len(alias["dropped"]),
                "unused_old": len(alias["unused_old"]),
            },
            "resolved": [
                {
                    "key": t.key,
                    "source": t.source,
                    "reason": t.reason,
                    "why": self.why(t.key),
                    "action": t.action,
                }
                for t in self.plan.tensors
            ],
            "fill_from": location_text(fill_from) if fill_from is not None else None,
            "filled": [
                {
                    "key": t.key,
                    "reason": t.reason,
                    "why": self.why(t.key),
                    "action": t.action,
                    "note": notes[t.key],
                }
                for t in self.plan.filled
            ],
            "unresolved": alias["unresolved"],
            "mismatched": alias["mismatched"],
            "dropped": alias["dropped"],
            "unused_old": alias["unused_old"],
            "suggested_rules": alias["suggested_rules"],
            "suggested_alias_map": {
                u["new_key"]: next(iter(u["suggested_entry"].values()))
                for u in alias["unresolved"]
                if u["suggested_entry"]
            },
        }

    def to_junit(self) -> str:
        """The report as JUnit XML: one test case per key the new model restores."""
        data = self.to_json()
        partial = self.verdict is Verdict.PARTIAL  # missing keys allowed: skipped, not failed
        counts = data["counts"]
        suite = ElementTree.Element(
            "testsuite",
            name="ckptmap check",
            tests=str(counts["keys"]),
            failures=str(counts["mismatched"] + (0 if partial else counts["unresolved"])),
            errors="0",
            skipped=str(counts["dropped"] + (counts["unresolved"] if partial else 0)),
        )
        cases: list[tuple[str, ElementTree.Element]] = []
        for item in data["resolved"]:
            case = ElementTree.Element("testcase", classname="restore", name=item["key"])
            out = ElementTree.SubElement(case, "system-out")
            out.text = f"from {item['source']} ({item['reason']}, {item['action']})"
            cases.append((item["key"], case))
        for item in data["filled"]:
            case = ElementTree.Element("testcase", classname="restore", name=item["key"])
            out = ElementTree.SubElement(case, "system-out")
            out.text = f"filled from {data['fill_from']} ({item['note']})"
            cases.append((item["key"], case))
        for item in data["unresolved"]:
            case = ElementTree.Element("testcase", classname="restore", name=item["new_key"])
            fail = (
                ElementTree.SubElement(
                    case, "skipped", message="no source; left out of the output (allow_missing)"
                )
                if partial
                else ElementTree.SubElement(
                    case, "failure", message="no source in the old checkpoint", type="unresolved"
                )
            )
            lines = [
                f"{c['old_key']} (score {c['score']:.2f}: {c['why']})" for c in item["candidates"]
            ]
            if item["suggested_rule"]:
                lines.append(f"suggested rule: --rule '{item['suggested_rule']}'")
            fail.text = "\n".join(lines) or "no candidate of the same shape and dtype"
            cases.append((item["new_key"], case))
        for item in data["mismatched"]:
            case = ElementTree.Element("testcase", classname="restore", name=item["new_key"])
            ElementTree.SubElement(
                case, "failure", message=f"{item['old_key']}: {item['what']}", type="mismatched"
            )
            cases.append((item["new_key"], case))
        for item in data["dropped"]:
            case = ElementTree.Element("testcase", classname="restore", name=item["new_key"])
            ElementTree.SubElement(case, "skipped", message=item["why"])
            cases.append((item["new_key"], case))
        for _, case in sorted(cases, key=lambda c: c[0]):
            suite.append(case)
        ElementTree.indent(suite)
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
