"""Alias plans: which old checkpoint key feeds each key a new model restores, and why.

:func:`plan_aliases` compares the old checkpoint's keys with a new model's
:class:`~ckptmap.spec.ModelSpec` and decides, for every key the new model's
saver restores, one old key (a :class:`Match` with its reason), or reports
why it cannot (:class:`Unresolved` with ranked candidates and a suggested
rule, or a :class:`Mismatch` of shape or dtype).

Sources are tried in this order: the user's explicit map, the user's rules,
then automatic generation after Monolith's ``CustomRestoreListener`` —
compatibility check, scope de-duplication, dense-layer renumbering per
bias-anchored prefix, missing-dense offsets and the built-in rule table —
made shape- and dtype-aware, deterministic, and unwilling to guess between two
plausible sources. docs/alias-heuristics.md describes every step with a worked
example and lists where and why ckptmap differs from Monolith.

Matching is by whole key: a partitioned variable is one key, and how its slices
are cut is :mod:`ckptmap.split`'s business. The module never reads files.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ckptmap.alias_structure import Structure, find_structure
from ckptmap.defaults import CANDIDATE_CUTOFF
from ckptmap.dtypes import DType
from ckptmap.errors import AliasError
from ckptmap.naming import (
    BUILTIN_RULES,
    DenseName,
    Rule,
    anchor_prefix,
    apply_rules,
    layer_number,
    may_be_dense,
    node_name,
    normalize_name,
    parse_dense,
    parse_rule,
    strip_partition,
)
from ckptmap.spec import GraphVariable, ModelSpec, TensorSpec
from ckptmap.split import Box, box_of, intersect

if TYPE_CHECKING:
    from difflib import SequenceMatcher
else:  # the same algorithm and scores as difflib's, compiled: about 4x faster
    from cydifflib import SequenceMatcher

__all__ = [
    "CLEAR_NN",
    "DEDUPLICATED_SCOPE",
    "DENSE_RENUMBERED",
    "EXACT",
    "EXPLICIT",
    "MISSING_DENSE_OFFSET",
    "PARTITION_MERGED",
    "AliasPlan",
    "Candidate",
    "Dropped",
    "Match",
    "Mismatch",
    "Unresolved",
    "plan_aliases",
    "suggest_rule",
]

EXACT = "exact"
PARTITION_MERGED = "partition-merged"
DEDUPLICATED_SCOPE = "deduplicated-scope"
DENSE_RENUMBERED = "dense-renumbered"
MISSING_DENSE_OFFSET = "missing-dense-offset"
EXPLICIT = "explicit"
CLEAR_NN = "clear_nn"
# Rules give "rule <pattern>" and "builtin-rule <pattern>".

MAX_CANDIDATES = 5  # candidates listed per unresolved key (plausible sources always listed)
_PRESELECT = 64  # old keys of one shape and dtype scored in full; more are pre-selected


# ------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Match:
    """One new key and the old key that feeds it.

    Attributes:
        new_key: the key the new model restores.
        old_key: the old checkpoint key it is read from.
        reason: why: ``exact``, ``partition-merged``, ``deduplicated-scope``,
            ``dense-renumbered``, ``missing-dense-offset``, ``explicit``,
            ``rule <pattern>`` or ``builtin-rule <pattern>``.
        detail: a sentence with the specifics (which layers, which entry).
    """

    new_key: str
    old_key: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An old key that could feed an unresolved new key (same shape and dtype).

    Attributes:
        old_key: the old key.
        score: name similarity in [0, 1] (difflib ratio of the normalised names).
        why: why it is listed.
    """

    old_key: str
    score: float
    why: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A new key with no source.

    Attributes:
        new_key: the key.
        dtype: its dtype.
        shape: its full shape.
        candidates: old keys of the same shape and dtype, most plausible first.
        suggested_rule: a ``PATTERN=FORMAT`` rule mapping ``new_key`` to the best
            candidate, when one candidate is best.
        suggested_entry: an alias-map entry ``(new_key, old_key)`` for the same.
        note: why the automatic steps gave up (two sources fit equally, ...).
        dynamic: the key takes a tensor of any shape (a lookup table's; ``shape``
            is then ``()`` and means nothing), see :class:`~ckptmap.spec.TensorSpec`.
    """

    new_key: str
    dtype: DType
    shape: tuple[int, ...]
    candidates: list[Candidate]
    suggested_rule: str | None = None
    suggested_entry: tuple[str, str] | None = None
    note: str = ""
    dynamic: bool = False


class Mismatch(NamedTuple):
    """A new key whose named source has another shape or dtype."""

    new_key: str
    old_key: str
    what: str


class Dropped(NamedTuple):
    """A new key deliberately not restored (``clear_nn``)."""

    new_key: str
    why: str


@dataclass(frozen=True, slots=True)
class AliasPlan:
    """Where every key of the new model comes from.

    Attributes:
        matches: new key -> its :class:`Match`, in key order.
        variable_sources: graph variable name -> old key, for every variable whose
            key is matched (a key without graph variables stands for itself).
        unresolved: new keys with no source, in key order.
        mismatched: new keys whose named source disagrees in shape or dtype.
        unused_old: old keys that feed nothing.
        dropped: new keys left to their initializers on purpose (``clear_nn``).
        old_names: for a TF2 object-based old checkpoint, old key -> the name
            users know it by (:mod:`ckptmap.readers.object_graph`); else empty.
        new_names: the same for the new keys, when the new model is an
            object-based checkpoint of itself (a template).
    """

    matches: dict[str, Match]
    variable_sources: dict[str, str]
    unresolved: list[Unresolved]
    mismatched: list[Mismatch]
    unused_old: list[str]
    dropped: list[Dropped]
    old_names: dict[str, str] = field(default_factory=dict)
    new_names: dict[str, str] = field(default_factory=dict)

    def old_name(self, key: str) -> str:
        """The name users know the old key by (the key itself in a name-based checkpoint)."""
        return self.old_names.get(key, key)

    def new_name(self, key: str) -> str:
        """The name users know the new key by (the key itself unless a template names it)."""
        return self.new_names.get(key, key)

    @property
    def by_name(self) -> bool:
        """Whether either side has names other than its keys (an object graph)."""
        return bool(self.old_names or self.new_names)

    @property
    def complete(self) -> bool:
        """True when every key the new model restores has a fitting source."""
        return not self.unresolved and not self.mismatched

    @property
    def is_identity(self) -> bool:
        """True when the old checkpoint restores as it is (Monolith: "no need alias reload")."""
        return (
            self.complete
            and not self.dropped
            and all(m.reason == EXACT for m in self.matches.values())
        )

    @property
    def suggested_rules(self) -> list[str]:
        """The distinct suggested rules of the unresolved keys, most useful first."""
        counts: dict[str, int] = defaultdict(int)
        for u in self.unresolved:
            if u.suggested_rule is not None:
                counts[u.suggested_rule] += 1
        return sorted(counts, key=lambda r: (-counts[r], r))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable description (stable: same plan, same document)."""
        return {
            "matches": {
                k: {"old_key": m.old_key, "reason": m.reason, "detail": m.detail}
                for k, m in self.matches.items()
            },
            "variable_sources": dict(self.variable_sources),
            "unresolved": [
                {
                    "new_key": u.new_key,
                    "dtype": u.dtype.name,
                    "shape": None if u.dynamic else list(u.shape),
                    "candidates": [
                        {"old_key": c.old_key, "score": c.score, "why": c.why}
                        | ({"name": self.old_name(c.old_key)} if self.by_name else {})
                        for c in u.candidates
                    ],
                    "suggested_rule": u.suggested_rule,
                    "suggested_entry": (
                        {u.suggested_entry[0]: u.suggested_entry[1]} if u.suggested_entry else None
                    ),
                    "note": u.note,
                }
                | ({"dynamic": True} if u.dynamic else {})
                | ({"name": self.new_name(u.new_key)} if self.by_name else {})
                for u in self.unresolved
            ],
            "mismatched": [
                {"new_key": m.new_key, "old_key": m.old_key, "what": m.what}
                | (
                    {"new_name": self.new_name(m.new_key), "old_name": self.old_name(m.old_key)}
                    if self.by_name
                    else {}
                )
                for m in self.mismatched
            ],
            "unused_old": list(self.unused_old),
            "dropped": [{"new_key": d.new_key, "why": d.why} for d in self.dropped],
            "suggested_rules": self.suggested_rules,
        }


# ------------------------------------------------------------------------- helpers


def _disagreement(new: TensorSpec, old: TensorSpec) -> str | None:
    """Why ``old`` cannot feed ``new`` (dtype or full shape), or None if it can."""
    if new.dtype.enum != old.dtype.enum:
        return f"dtype {old.dtype.name} in the checkpoint, {new.dtype.name} in the model"
    if not new.dynamic and tuple(new.shape) != tuple(old.shape):
        return f"shape {list(old.shape)} in the checkpoint, {list(new.shape)} in the model"
    return None


def _escape_format(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def suggest_rule(new_name: str, old_key: str) -> str | None:
    """A ``PATTERN=FORMAT`` rule that maps ``new_name`` to ``old_key``.

    The rule keeps the longest common run of trailing scope terms and rewrites the
    rest, so it also covers the new name's siblings (optimizer slots, other
    variables of a renamed scope):

    >>> suggest_rule("ffm_v2/dense/kernel", "ffm/dense/kernel")
    '^ffm_v2/(.*)$=ffm/{}'

    Returns ``None`` when the names are equal or no rule can be written.
    """
    new_name = strip_partition(node_name(new_name))
    if new_name == old_key:
        return None
    new_terms, old_terms = new_name.split("/"), old_key.split("/")
    common = 0
    while (
        common < min(len(new_terms), len(old_terms))
        and new_terms[-1 - common] == old_terms[-1 - common]
    ):
        common += 1
    if common == 0:
        text = f"^{re.escape(new_name)}$={_escape_format(old_key)}"
    elif common == len(new_terms):  # the new name is the tail of the old key
        old_head = "/".join(old_terms[: len(old_terms) - common])
        text = f"^({re.escape(new_name)})$={_escape_format(old_head)}/{{}}"
    else:
        head = "/".join(new_terms[: len(new_terms) - common])
        old_head = "/".join(old_terms[: len(old_terms) - common])
        fmt = f"{_escape_format(old_head)}/{{}}" if old_head else "{}"
        text = f"^{re.escape(head)}/(.*)$={fmt}"
    if "=" in text.rpartition("=")[2] or "=" in old_key:
        return None
    try:
        rule = parse_rule(text)
    except AliasError:
        return None
    return text if rule.apply(new_name) == old_key else None


def _reversed_terms(name: str) -> str:
    return "/".join(reversed(name.split("/")))


def _similarity(a: str, b: str) -> float:
    return round(SequenceMatcher(None, b, a, autojunk=False).ratio(), 4)


def _most_similar(target: str, names: Mapping[str, str], count: int) -> list[tuple[str, float]]:
    """The ``count`` keys whose names are most like ``target``: (key, score), best first.

    Ties go to the smaller key. ``quick_ratio`` bounds ``ratio`` from above, so
    keys are scored in decreasing bound order until no bound can beat the last
    kept score; the result is the same as scoring every key.
    """
    if count <= 0:
        return []
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)  # the target's index is built once
    bounds = []
    for key, name in names.items():
        matcher.set_seq1(name)
        bounds.append((-round(matcher.quick_ratio(), 4), key))
    bounds.sort()
    best: list[tuple[float, str]] = []
    for neg_bound, key in bounds:
        if len(best) == count and -neg_bound < -best[-1][0]:
            break
        matcher.set_seq1(names[key])
        best.append((-round(matcher.ratio(), 4), key))
        best.sort()
        del best[count:]
    return [(key, -neg) for neg, key in best]


# ---------------------------------------------------------------- dense layer groups

# (anchored prefix, layer family) -> layer name -> slot ("kernel", "bias/Adam") -> keys
_Groups = dict[tuple[str, str], dict[str, dict[str, list[str]]]]


def _dense_groups(keys: Iterable[str], bias_keys: Iterable[str]) -> _Groups:
    """Group dense-layer keys by bias-anchored prefix and layer family."""
    bias_prefixes: dict[str, set[str]] = defaultdict(set)
    parsed_of: dict[str, DenseName | None] = {}  # the two sets are mostly the same keys
    for key in bias_keys:
        if not may_be_dense(key):
            continue
        parsed = parsed_of[key] = parse_dense(normalize_name(key))
        if parsed is not None and parsed.local == "bias":
            bias_prefixes[parsed.layer].add(parsed.prefix)
    groups: _Groups = {}
    for key in keys:
        if not may_be_dense(key):
            continue
        parsed = parsed_of[key] if key in parsed_of else parse_dense(normalize_name(key))
        if parsed is None:
            continue
        prefix = anchor_prefix(parsed.prefix, bias_prefixes.get(parsed.layer, ()))
        layers = groups.setdefault((prefix, parsed.family), {})
        layers.setdefault(parsed.layer, {}).setdefault(parsed.slot, []).append(key)
    return groups


def _layer_order(layers: Iterable[str]) -> list[str]:
    """Layers in numeric order (dense, dense_1, ..., dense_8, dense_9, dense_10)."""
    return sorted(layers, key=lambda name: (layer_number(name)[1], name))


def _has_collision(layers: Mapping[str, Mapping[str, list[str]]]) -> bool:
    return any(len(keys) > 1 for slots in layers.values() for keys in slots.values())


@dataclass(frozen=True, slots=True)
class _Alignment:
    pairs: tuple[tuple[str, str], ...]  # (new layer, old layer), in new layer order
    how: str


def _candidate_alignments(new_order: list[str], old_order: list[str]) -> list[_Alignment]:
    """Rank shifts and number offsets pairing every layer of the smaller side."""
    n, m = len(new_order), len(old_order)
    found: list[_Alignment] = []
    for d in range(min(0, m - n), max(0, m - n) + 1):
        pairs = tuple((new_order[i], old_order[i + d]) for i in range(n) if 0 <= i + d < m)
        step = f"#i{d:+d}" if d else "#i"
        found.append(_Alignment(pairs, f"new layer #i <- old layer {step} in numeric order"))
    old_by_number: dict[int, list[str]] = defaultdict(list)
    for name in old_order:
        old_by_number[layer_number(name)[1]].append(name)
    offsets = sorted(
        {layer_number(a)[1] - layer_number(b)[1] for a in new_order for b in old_order}
    )
    for c in offsets:
        pairs_list = []
        for name in new_order:
            olds = old_by_number.get(layer_number(name)[1] - c, [])
            if len(olds) > 1:
                break
            if olds:
                pairs_list.append((name, olds[0]))
        else:
            if len({old for _, old in pairs_list}) == len(pairs_list):
                how = f"new layer N <- old layer N{-c:+d}" if c else "new layer N <- old layer N"
                found.append(_Alignment(tuple(pairs_list), how))
    need = min(n, m)
    return [a for a in found if len(a.pairs) == need]


# --------------------------------------------------------------------------- planner


class _Planner:
    """The state of one :func:`plan_aliases` run."""

    cutoff: float = 0.0

    def __init__(self, old: Mapping[str, TensorSpec], new: ModelSpec) -> None:
        self.old = {k: old[k] for k in sorted(old)}
        self.new = new
        self.new_keys = sorted(new.keys)
        self.vars_of: dict[str, list[GraphVariable]] = defaultdict(list)
        for var in sorted(new.variables.values(), key=lambda v: v.name):
            self.vars_of[var.key].append(var)
        self.pending: set[str] = set(self.new_keys)
        self.matches: dict[str, Match] = {}
        self.mismatch: dict[str, Mismatch] = {}
        self.plausible: dict[str, list[str]] = {}
        self.notes: dict[str, str] = {}
        self.dropped: list[Dropped] = []
        self.dropped_keys: set[str] = set()
        self._use_counts: dict[str, int] | None = None
        self.structure = Structure()
        self._orders: dict[tuple[int, tuple[int, ...]], tuple[list[tuple[str, str]], ...]] = {}

    # -- indexes of the old keys, built on first use (a model whose keys all
    # match by name needs none of them)

    @functools.cached_property
    def by_strip(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = defaultdict(list)
        for key in self.old:
            index[strip_partition(node_name(key))].append(key)
        return index

    @functools.cached_property
    def old_norm(self) -> dict[str, str]:
        return {key: normalize_name(key) for key in self.old}

    @functools.cached_property
    def by_norm(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = defaultdict(list)
        for key, norm in self.old_norm.items():
            index[norm].append(key)
        return index

    @functools.cached_property
    def by_sig(self) -> dict[tuple[int, tuple[int, ...]], list[str]]:
        index: dict[tuple[int, tuple[int, ...]], list[str]] = defaultdict(list)
        for key, spec in self.old.items():
            index[(spec.dtype.enum, tuple(spec.shape))].append(key)
        return index

    def pool(self, spec: TensorSpec) -> list[str]:
        """The old keys that could feed ``spec``: same shape and dtype (any shape for a
        dynamic key, such as a lookup table's)."""
        if spec.dynamic:
            return [k for k, old in self.old.items() if old.dtype.enum == spec.dtype.enum]
        return self.by_sig.get((spec.dtype.enum, tuple(spec.shape)), [])

    # -- bookkeeping

    def pending_keys(self) -> list[str]:
        return [k for k in self.new_keys if k in self.pending]

    def fits(self, new_key: str, old_key: str) -> str | None:
        return _disagreement(self.new.keys[new_key], self.old[old_key])

    def accept(self, new_key: str, old_key: str, reason: str, detail: str = "") -> None:
        self.matches[new_key] = Match(new_key, old_key, reason, detail)
        self.pending.discard(new_key)
        self.mismatch.pop(new_key, None)

    def note_mismatch(self, new_key: str, old_key: str, what: str) -> None:
        self.mismatch.setdefault(new_key, Mismatch(new_key, old_key, what))

    def give_up(self, new_key: str, plausible: list[str], note: str) -> None:
        """Stop looking for a source: ``plausible`` fit equally (or none is known)."""
        self.pending.discard(new_key)
        self.mismatch.pop(new_key, None)
        self.plausible[new_key] = plausible
        self.notes[new_key] = note

    def is_global_step(self, key: str) -> bool:
        return node_name(key) == "global_step" or any(
            v.is_global_step for v in self.vars_of.get(key, ())
        )

    # -- clear_nn

    def drop_for_clear_nn(self, continue_training: bool) -> None:
        """Monolith's clear_nn: every variable is re-initialised; global_step kept to continue."""
        for key in self.new_keys:
            if self.is_global_step(key):
                if continue_training:
                    continue
                why = f"{CLEAR_NN}: global_step starts again (set continue_training to keep it)"
            else:
                why = f"{CLEAR_NN}: dense variable re-initialised, not restored"
            self.dropped.append(Dropped(key, why))
            self.dropped_keys.add(key)
            self.pending.discard(key)

    # -- explicit map

    def resolve_entry(self, name: object, value: object) -> tuple[str, str, Box | None]:
        """(new key, old key, claimed box or None for the whole key) of one map entry."""
        if not isinstance(name, str) or not isinstance(value, str):
            raise AliasError(f"alias map entry {name!r}: {value!r}: names and keys must be strings")
        wanted = node_name(name)
        var = self.new.variables.get(wanted)
        if var is not None and var.key in self.new.keys:
            key, box = (
                var.key,
                (box_of(var.slice, var.slice.full_shape) if var.slice is not None else None),
            )
        elif wanted in self.new.keys:
            key, box = wanted, None
        else:
            close = difflib.get_close_matches(wanted, [*self.new.keys, *self.new.variables], 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AliasError(
                f"alias map entry {name!r}: the new model restores no variable or key"
                f" {wanted!r} (fix the entry or remove it{hint})"
            )
        old_key = value if value in self.old else node_name(value)
        if old_key not in self.old:
            close = difflib.get_close_matches(value, list(self.old), 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AliasError(
                f"alias map entry {name!r} -> {value!r}: the old checkpoint has no key"
                f" {value!r} (fix the entry{hint})"
            )
        return key, old_key, box

    def match_explicit(self, explicit: Mapping[str, str]) -> None:
        claims: dict[str, list[tuple[str, str, Box | None]]] = defaultdict(list)
        for name in sorted(explicit, key=str):
            key, old_key, box = self.resolve_entry(name, explicit[name])
            for other_name, other_old, other_box in claims[key]:
                if other_old != old_key:
                    _raise_conflict(key, (other_name, other_old, other_box), (name, old_key, box))
            claims[key].append((name, old_key, box))
        for key in sorted(claims):
            entries = claims[key]
            old_key = entries[0][1]
            names = ", ".join(repr(n) for n, _, _ in entries)
            what = self.fits(key, old_key)
            if what is None:
                self.accept(key, old_key, EXPLICIT, f"alias map entry {names}")
            else:
                self.mismatch[key] = Mismatch(key, old_key, f"{what} (alias map entry {names})")
                self.pending.discard(key)

    # -- user rules

    def match_rules(self, rules: Sequence[Rule]) -> None:
        for key in self.pending_keys():
            name = strip_partition(node_name(key))
            for rule in rules:
                out = rule.apply(name)
                if out is None:
                    continue
                olds = self.lookup(out)
                fitting = [o for o in olds if self.fits(key, o) is None]
                if len(fitting) == 1:
                    self.accept(key, fitting[0], f"rule {rule.pattern}", f"{rule} gives {out!r}")
                    break
                if len(fitting) > 1:
                    self.give_up(key, fitting, f"rule {rule} gives {out!r}, which several keys fit")
                    break
                if olds:
                    what = self.fits(key, olds[0]) or ""
                    self.note_mismatch(key, olds[0], f"{what} (rule {rule})")
                else:
                    self.notes.setdefault(key, f"rule {rule} gives {out!r}, not in the checkpoint")

    def lookup(self, name: str) -> list[str]:
        """Old keys called ``name``: the exact key, else all with the same normalised name."""
        if name in self.old:
            return [name]
        return list(self.by_norm.get(normalize_name(name), []))

    # -- automatic generation

    def match_exact(self) -> bool:
        """Match every pending key that has a fitting old key of the same name.

        Returns True when that left nothing pending (Monolith's compatibility check).
        """
        for key in self.pending_keys():
            if key in self.old:
                what = self.fits(key, key)
                if what is None:
                    self.accept(key, key, EXACT)
                else:
                    self.note_mismatch(key, key, what)
        return not self.pending

    def all_exact(self) -> bool:
        new, old = self.new.keys, self.old  # fits() inlined: this runs once per key
        return all(k in old and _disagreement(new[k], old[k]) is None for k in self.pending)

    def match_auto(self) -> None:
        if self.all_exact():  # each fits its own name: what match_exact does, less its checks
            keys = self.pending_keys()
            for key in keys:  # accept() of each, in one pass
                self.matches[key] = Match(key, key, EXACT)
            self.pending.difference_update(keys)
            if self.mismatch:
                for key in keys:
                    self.mismatch.pop(key, None)
            return
        self.match_dense_groups()
        for key in self.pending_keys():
            self.match_by_name(key)

    def match_by_name(self, key: str) -> None:
        """Exact, then partition-merged, then de-duplicated scopes, then built-in rules."""
        if key in self.old and self.fits(key, key) is None:  # the first step, without the rest
            self.accept(key, key, EXACT)
            return
        base = strip_partition(node_name(key))
        steps: list[tuple[str, list[str], str]] = [
            (EXACT, [key] if key in self.old else [], ""),
            (PARTITION_MERGED, [o for o in self.by_strip.get(base, []) if o != key], ""),
            (DEDUPLICATED_SCOPE, self.by_norm.get(normalize_name(key), []), ""),
        ]
        found = apply_rules(base, BUILTIN_RULES)
        if found is not None:
            rule, out = found
            steps.append(
                (f"builtin-rule {rule.pattern}", self.lookup(out), f"{rule} gives {out!r}")
            )
        tried: set[str] = set()
        for reason, names, detail in steps:
            olds = [o for o in names if o not in tried]
            tried.update(olds)
            fitting = [o for o in olds if self.fits(key, o) is None]
            if len(fitting) == 1:
                self.accept(key, fitting[0], reason, detail)
                return
            if len(fitting) > 1:
                self.give_up(key, fitting, f"{len(fitting)} old keys fit by {reason} equally")
                return
            if reason == EXACT and olds:
                self.note_mismatch(key, key, self.fits(key, key) or "")

    def match_dense_groups(self) -> None:
        old_groups = _dense_groups(self.old, self.old)
        live = [k for k in self.new_keys if k not in self.dropped_keys]
        new_groups = _dense_groups(self.pending_keys(), live)
        for group in sorted(new_groups):
            new_layers = new_groups[group]
            old_layers = old_groups.get(group)
            if old_layers is None or _has_collision(old_layers) or _has_collision(new_layers):
                continue
            self.align_group(group, new_layers, old_layers)

    def layer_fits(
        self, new_slots: Mapping[str, list[str]], old_slots: Mapping[str, list[str]]
    ) -> bool:
        shared = [s for s in new_slots if s in old_slots]
        return bool(shared) and all(
            self.fits(new_slots[s][0], old_slots[s][0]) is None for s in shared
        )

    def alignment_fits(
        self,
        alignment: Iterable[tuple[str, str]],
        new_layers: Mapping[str, Mapping[str, list[str]]],
        old_layers: Mapping[str, Mapping[str, list[str]]],
    ) -> bool:
        return all(self.layer_fits(new_layers[a], old_layers[b]) for a, b in alignment)

    def align_group(
        self,
        group: tuple[str, str],
        new_layers: Mapping[str, Mapping[str, list[str]]],
        old_layers: Mapping[str, Mapping[str, list[str]]],
    ) -> None:
        """Pair the group's new layers with old layers, if shapes single out one way."""
        new_order, old_order = _layer_order(new_layers), _layer_order(old_layers)
        need = min(len(new_order), len(old_order))
        identity = tuple((n, n) for n in new_order if n in old_layers)
        if len(identity) == need and self.alignment_fits(identity, new_layers, old_layers):
            self.assign_layers(
                group,
                _Alignment(identity, "layer names line up"),
                new_layers,
                old_layers,
                old_order,
            )
            return
        valid: dict[tuple[tuple[str, str], ...], _Alignment] = {}
        for alignment in _candidate_alignments(new_order, old_order):
            if alignment.pairs not in valid and self.alignment_fits(
                alignment.pairs, new_layers, old_layers
            ):
                valid[alignment.pairs] = alignment
        if len(valid) == 1:
            only = next(iter(valid.values()))
            how = f"{only.how}; the only alignment whose shapes agree"
            self.assign_layers(
                group, _Alignment(only.pairs, how), new_layers, old_layers, old_order
            )
        elif len(valid) > 1:
            self.report_ambiguous_layers(
                group, list(valid.values()), new_layers, old_layers, old_order
            )

    def assign_layers(
        self,
        group: tuple[str, str],
        alignment: _Alignment,
        new_layers: Mapping[str, Mapping[str, list[str]]],
        old_layers: Mapping[str, Mapping[str, list[str]]],
        old_order: list[str],
    ) -> None:
        where = group[0] or "the top scope"
        for new_layer, old_layer in alignment.pairs:
            rank = old_order.index(old_layer)
            for slot, keys in sorted(new_layers[new_layer].items()):
                key = keys[0]
                old_slot = old_layers[old_layer].get(slot)
                if old_slot is None:
                    self.give_up(key, [], f"layer {old_layer} feeding {new_layer} has no {slot}")
                    continue
                old_key = old_slot[0]
                reason = _layer_reason(key, old_key, new_layer, old_layer, rank)
                detail = f"layer {new_layer} <- {old_layer} under {where} ({alignment.how})"
                self.accept(key, old_key, reason, detail)

    def report_ambiguous_layers(
        self,
        group: tuple[str, str],
        alignments: list[_Alignment],
        new_layers: Mapping[str, Mapping[str, list[str]]],
        old_layers: Mapping[str, Mapping[str, list[str]]],
        old_order: list[str],
    ) -> None:
        where = group[0] or "the top scope"
        options: dict[str, list[str]] = defaultdict(list)
        for alignment in alignments:
            for new_layer, old_layer in alignment.pairs:
                if old_layer not in options[new_layer]:
                    options[new_layer].append(old_layer)
        agreed = tuple(
            (n, olds[0])
            for n, olds in options.items()
            if len(olds) == 1 and all(any(p[0] == n for p in a.pairs) for a in alignments)
        )
        how = "every alignment whose shapes agree pairs these layers"
        self.assign_layers(group, _Alignment(agreed, how), new_layers, old_layers, old_order)
        for new_layer in _layer_order(n for n in options if (n, options[n][0]) not in agreed):
            olds = _layer_order(options[new_layer])
            for slot, keys in sorted(new_layers[new_layer].items()):
                plausible = [old_layers[o][slot][0] for o in olds if slot in old_layers[o]]
                note = (
                    f"layers under {where} align {len(alignments)} ways with matching shapes;"
                    f" {new_layer} could be {', '.join(olds)}"
                )
                self.give_up(keys[0], plausible, note)

    # -- the report

    def candidates(self, key: str) -> list[Candidate]:
        """Plausible sources, then old keys placed alike by scope, then similar names."""
        spec = self.new.keys[key]
        sig = (spec.dtype.enum, tuple(spec.shape))
        pool = self.pool(spec)
        plausible = self.plausible.get(key, [])
        target = normalize_name(key)
        used = self.use_counts()
        first = [
            Candidate(o, _similarity(target, self.old_norm[o]), "plausible; " + _why(spec, used[o]))
            for o in plausible
        ]
        seen = set(plausible)
        for old_key, why in self.structure.candidates.get(key, []):
            if old_key not in seen and len(first) < MAX_CANDIDATES:
                seen.add(old_key)
                score = _similarity(target, self.old_norm[old_key])
                first.append(Candidate(old_key, score, f"{why}; {_why(spec, used[old_key])}"))
        if len(pool) > _PRESELECT and key in self.structure.pairings and not plausible:
            return first  # the structure answers; no name similarity over a big pool
        if len(pool) > _PRESELECT and not spec.dynamic:
            pool = self.neighbours(sig, target)
        names = {o: self.old_norm[o] for o in pool if o not in seen}
        scored = _most_similar(target, names, MAX_CANDIDATES - len(first))
        return first + [
            Candidate(o, score, _why(spec, used[o])) for o, score in scored if score >= self.cutoff
        ]

    def neighbours(self, sig: tuple[int, tuple[int, ...]], target: str) -> list[str]:
        """Old keys of one signature whose names sort next to ``target``.

        Two orders: by normalised name (shared leading scopes) and by reversed
        scope terms (shared trailing terms, as in a renamed top scope). A big pool
        thus costs two binary searches per key instead of a comparison per old key.
        """
        if sig not in self._orders:
            pool = self.by_sig[sig]
            self._orders[sig] = (
                sorted((self.old_norm[o], o) for o in pool),
                sorted((_reversed_terms(self.old_norm[o]), o) for o in pool),
            )
        found: set[str] = set()
        half = _PRESELECT // 8  # keys on each side of the target, in each order
        for order, probe in zip(self._orders[sig], (target, _reversed_terms(target)), strict=True):
            at = bisect.bisect_left(order, (probe, ""))
            found.update(o for _, o in order[max(0, at - half) : at + half])
        return sorted(found)

    def use_counts(self) -> dict[str, int]:
        if self._use_counts is None:
            counts: dict[str, int] = defaultdict(int)
            for m in self.matches.values():
                counts[m.old_key] += 1
            self._use_counts = counts
        return self._use_counts

    def same_normalised(self, key: str, cands: Sequence[Candidate]) -> str | None:
        """The one candidate whose normalised name is the key's (scopes de-duplicated)."""
        if len(self.plausible.get(key, [])) >= 2:
            return None
        target = normalize_name(key)
        same = [c.old_key for c in cands if self.old_norm[c.old_key] == target]
        return same[0] if len(same) == 1 else None

    def unresolved(self, key: str) -> Unresolved:
        """The report of one key with no source: candidates, a confident fix, and why."""
        spec = self.new.keys[key]
        cands = self.candidates(key)
        rule = entry = None
        why = ""
        paired = self.structure.pairings.get(key)
        if paired is not None and len(self.plausible.get(key, [])) < 2:
            pairing, old_key = paired
            entry, rule = (key, old_key), pairing.rule
            why = (
                f"no old key of this name; {pairing.old_scope} is the one old scope whose"
                f" unused keys fit {pairing.new_scope} ({pairing.fitting} of"
                f" {pairing.size} keys)"
            )
        elif (same := self.same_normalised(key, cands)) is not None:
            entry, rule = (key, same), suggest_rule(key, same)
            why = f"no old key of this name; {same} is the one with the same normalised name"
        elif not self.pool(spec):
            why = f"no old key of this {'dtype' if spec.dynamic else 'shape and dtype'}"
        elif cands:
            best = ", ".join(f"{c.old_key} ({c.score:.2f})" for c in cands[:2])
            why = f"no confident candidate; best: {best}"
        else:
            names = {o: self.old_norm[o] for o in self.pool(spec)}
            (o, score), *_ = _most_similar(normalize_name(key), names, 1)
            why = (
                f"no confident candidate; best: {o} ({score:.2f}, below the"
                f" candidate cutoff {self.cutoff:g})"
            )
        note = self.notes.get(key, "")
        if key not in self.plausible:  # a note of the automatic steps stands alone
            note = f"{why} ({note})" if note else why
        return Unresolved(
            key, spec.dtype, tuple(spec.shape), cands, rule, entry, note, dynamic=spec.dynamic
        )

    def finish(self) -> AliasPlan:
        sources: dict[str, str] = {}
        for key in self.new_keys:
            match = self.matches.get(key)
            if match is None:
                continue
            names = [v.name for v in self.vars_of.get(key, [])] or [key]
            for name in names:
                sources[name] = match.old_key
        missing = [
            k
            for k in self.new_keys
            if k not in self.matches and k not in self.mismatch and k not in self.dropped_keys
        ]
        if missing:
            self.structure = find_structure(
                {k: m.old_key for k, m in self.matches.items()},
                missing,
                {k: (s.dtype.enum, tuple(s.shape)) for k, s in self.new.keys.items()},
                {k: (s.dtype.enum, tuple(s.shape)) for k, s in self.old.items()},
            )
        unresolved = [self.unresolved(k) for k in missing]
        used = {m.old_key for m in self.matches.values()}
        return AliasPlan(
            matches={k: self.matches[k] for k in self.new_keys if k in self.matches},
            variable_sources=dict(sorted(sources.items())),
            unresolved=unresolved,
            mismatched=[
                self.mismatch[k]
                for k in self.new_keys
                if k in self.mismatch and k not in self.matches
            ],
            unused_old=[k for k in self.old if k not in used],
            dropped=sorted(self.dropped),
        )


def _why(spec: TensorSpec, uses: int) -> str:
    shape = (
        f"same dtype {spec.dtype.name} (any shape)"
        if spec.dynamic
        else f"same shape {list(spec.shape)} and dtype {spec.dtype.name}"
    )
    return f"{shape}; already feeds {uses} key(s)" if uses else f"{shape}; unused"


def _layer_reason(new_key: str, old_key: str, new_layer: str, old_layer: str, rank: int) -> str:
    if new_layer == old_layer:
        if new_key == old_key:
            return EXACT
        if normalize_name(new_key) == normalize_name(old_key):
            return DEDUPLICATED_SCOPE
        return DENSE_RENUMBERED  # same layer, found through its bias-anchored prefix
    # Monolith's missing-dense offset maps new numbers down onto old ranks; every
    # other renumbering (same rank, or an old layer gone before this one) is plain.
    if layer_number(new_layer)[1] > rank:
        return MISSING_DENSE_OFFSET
    return DENSE_RENUMBERED


def _raise_conflict(
    key: str, first: tuple[str, str, Box | None], second: tuple[str, str, Box | None]
) -> None:
    (name_a, old_a, box_a), (name_b, old_b, box_b) = first, second
    overlap = box_a is None or box_b is None or intersect(box_a, box_b) is not None
    if overlap:
        raise AliasError(
            f"alias map entries {name_a!r} -> {old_a!r} and {name_b!r} -> {old_b!r} both feed"
            f" the same slice of {key!r} (keep one of them)"
        )
    raise AliasError(
        f"alias map entries {name_a!r} -> {old_a!r} and {name_b!r} -> {old_b!r} feed parts of"
        f" {key!r} from different old keys (ckptmap reads a whole key from one old key:"
        f" map {key!r} itself)"
    )


def plan_aliases(
    old: Mapping[str, TensorSpec],
    new: ModelSpec,
    *,
    explicit: Mapping[str, str] | None = None,
    rules: Sequence[Rule | str] = (),
    auto: bool = True,
    clear_nn: bool = False,
    continue_training: bool = False,
    candidate_cutoff: float = CANDIDATE_CUTOFF,
    map_file: str | os.PathLike[str] | None = None,
) -> AliasPlan:
    """Decide which old checkpoint key feeds each key the new model restores.

    Args:
        old: the old checkpoint's keys (full entries) and their specs.
        new: the new model.
        explicit: the user's map, new name -> old key. A new name is a key or a
            graph variable name (``emb/part_3``, ``:0`` allowed); it wins over
            everything else.
        rules: the user's rules (:class:`~ckptmap.naming.Rule` or ``PATTERN=FORMAT``
            text), tried in order after the explicit map and before the automatic
            steps.
        auto: run the automatic steps (scope de-duplication, dense renumbering,
            missing-dense offsets, built-in rules). Same-name keys always match.
        clear_nn: Monolith's ``clear_nn``: restore no variable (each is dropped and
            keeps its initializer), except ``global_step`` with ``continue_training``.
        continue_training: with ``clear_nn``, keep ``global_step``.
        candidate_cutoff: list an old key as a candidate of an unresolved key only
            when its name similarity (0 to 1) reaches this; the plausible sources
            an automatic step could not choose between are always listed.
        map_file: the file ``explicit`` was read from; errors about its entries
            name it.

    Returns:
        The plan. It never raises for odd names; what cannot be decided is in
        ``unresolved`` or ``mismatched``.

    Raises:
        AliasError: an explicit entry names a new variable or old key that does
            not exist, two entries feed the same slice from different old keys, an
            entry is not a string, a rule is invalid, or ``explicit`` is combined
            with ``clear_nn``.

    Example:
        >>> from ckptmap.dtypes import BY_NAME
        >>> f32 = BY_NAME["float32"]
        >>> old = {"model/w": TensorSpec("model/w", f32, (4,))}
        >>> new = ModelSpec.from_parts([TensorSpec("model_v2/w", f32, (4,))])
        >>> plan = plan_aliases(old, new, rules=[parse_rule("^model_v2/(.*)$=model/{}")])
        >>> plan.matches["model_v2/w"].reason
        'rule ^model_v2/(.*)$'
    """
    if clear_nn and explicit:
        raise AliasError(
            "clear_nn re-initialises every variable, so an explicit alias map has nothing"
            " to feed (Monolith refuses the same); drop one of them"
        )
    parsed = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
    planner = _Planner(old, new)
    planner.cutoff = candidate_cutoff
    if clear_nn:
        planner.drop_for_clear_nn(continue_training)
    if explicit:
        try:
            planner.match_explicit(explicit)
        except AliasError as err:
            if map_file is None:
                raise
            raise AliasError(f"{os.fspath(map_file)}: {err}") from None
    planner.match_rules(parsed)
    if auto:
        planner.match_auto()
    else:
        planner.match_exact()
    return planner.finish()
