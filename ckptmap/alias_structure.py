"""Structural candidates: old keys that sit where an unresolved new key sits, by scope.

:func:`find_structure` learns which new scopes correspond to which old scopes from
the keys already matched (``enc_v2/attn/w <- encoder/attn/w`` gives
``enc_v2 <-> encoder``; every exact match gives its scopes to themselves, and the
two top scopes and scopes both models have correspond). An unresolved key ``A/S/L`` whose deepest
corresponding scope is ``A <-> O`` then has as candidates the unused old keys
``O/S'/L`` of the same dtype and shape: the same rest ``L`` (leaf name and
optimizer slot) under another layer ``S'``. All unresolved keys of one new layer
``A/S`` are weighed together; a pairing ``A/S <-> O/S'`` is confident only when
``S'`` is the single best layer for ``S`` and ``S`` the single best for ``S'``,
and becomes a suggested rule ``^A/S/(.*)$=O/S'/{}``. A confident pairing is
taken as a hypothesis (its old keys claimed, its scopes corresponding) and the
search runs again, so a renamed scope and a renamed layer inside it are both
found in one round. Ambiguity is left as ranked candidates. Pure: no files.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ckptmap.naming import node_name, strip_partition

__all__ = ["Pairing", "Structure", "find_structure"]

Sig = tuple[int, tuple[int, ...]]

_ROUNDS = 12  # rounds (a renamed scope, then layers inside it; one scope up)
_MAX_LAYERS = 8  # candidate layers kept per new layer


@dataclass(frozen=True, slots=True)
class Pairing:
    """A confident correspondence of a new layer with an old one.

    Attributes:
        new_scope: the new layer's scope (``enc_v2/proj``).
        old_scope: the old layer's scope (``encoder/fc``).
        rule: the ``PATTERN=FORMAT`` rule mapping the one onto the other.
        fitting: how many of the new layer's unresolved keys it resolves.
        size: how many unresolved keys the new layer has.
    """

    new_scope: str
    old_scope: str
    rule: str
    fitting: int
    size: int


@dataclass
class Structure:
    """What the scope structure says about the unresolved keys.

    Attributes:
        candidates: new key -> (old key, why) of the structural candidates, best first.
        pairings: new key -> the confident pairing that resolves it.
    """

    candidates: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    pairings: dict[str, tuple[Pairing, str]] = field(default_factory=dict)


def _base(key: str) -> str:
    return strip_partition(node_name(key))


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def scope_pairs(matches: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """New scope -> the old scopes it corresponds to, learned from matched keys."""
    corr: dict[str, set[str]] = defaultdict(set)
    corr[""].add("")
    seen: set[str] = {""}
    for new, old in matches:
        base = _base(new)
        if base == old:  # the same name: every scope above it to itself
            scope = old.rpartition("/")[0]
            while scope not in seen:
                seen.add(scope)
                corr[scope].add(scope)
                scope = scope.rpartition("/")[0]
            continue
        n, o = base.split("/"), old.split("/")
        common = 0
        while common < min(len(n), len(o)) and n[-1 - common] == o[-1 - common]:
            common += 1
        if common == 0:
            continue
        hn, ho = n[: len(n) - common], o[: len(o) - common]
        tail = n[len(n) - common :]
        for k in range(common):  # the tail's scopes, not its leaf
            corr["/".join(hn + tail[:k])].add("/".join(ho + tail[:k]))
    return corr


def _rule(new_scope: str, old_scope: str, rests: Sequence[str]) -> str:
    fmt = old_scope.replace("{", "{{").replace("}", "}}")
    if not any(rests):
        return f"^{re.escape(new_scope)}$={fmt}"
    if all(rests):
        return f"^{re.escape(new_scope)}/(.*)$={fmt}/{{}}"
    return f"^{re.escape(new_scope)}(/.*)?$={fmt}{{}}"


def find_structure(
    matches: Mapping[str, str],
    unresolved: Sequence[str],
    new_sigs: Mapping[str, Sig],
    old_sigs: Mapping[str, Sig],
) -> Structure:
    """Structural candidates and confident layer pairings of the unresolved keys.

    Args:
        matches: new key -> old key of every key already matched.
        unresolved: the new keys with no source.
        new_sigs: new key -> (dtype enum, shape).
        old_sigs: old key -> (dtype enum, shape).
    """
    out = Structure()
    corr = scope_pairs(matches.items())
    old_scopes = _scopes(old_sigs)
    for key in unresolved:  # a scope both models have corresponds to itself
        terms = _base(key).split("/")
        for i in range(1, len(terms)):
            if "/".join(terms[:i]) in old_scopes:
                corr["/".join(terms[:i])].add("/".join(terms[:i]))
    claimed = set(matches.values())
    pending = list(unresolved)
    start = {k: _base(k).count("/") for k in pending}  # deepest scope still to try
    for _ in range(_ROUNDS):
        # new layer (A, O, S) -> rest L -> new key
        units: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
        for key in pending:
            terms = _base(key).split("/")
            i = start[key]
            while i > 0 and "/".join(terms[:i]) not in corr:
                i -= 1
            scope, layer, rest = "/".join(terms[:i]), terms[i], "/".join(terms[i + 1 :])
            for old_scope in sorted(corr.get(scope, ())):
                units[(scope, old_scope, layer)][rest] = key
        if not units:
            break
        index = _old_index({o for _, o, _ in units}, old_sigs, claimed)
        best: dict[tuple[str, str, str], tuple[str, int]] = {}
        retry = False
        for unit, rests in units.items():
            scope, old_scope, layer = unit
            counts: dict[str, int] = defaultdict(int)
            for rest, key in rests.items():
                for old_layer in index.get((old_scope, rest, new_sigs[key]), ()):
                    counts[old_layer] += 1
            ranked = sorted(counts, key=lambda s: (-counts[s], s))[:_MAX_LAYERS]
            if not ranked and scope:  # nothing here: look one scope up next round
                for key in rests.values():
                    start[key] = min(start[key], scope.count("/"))
                retry = True
            for old_layer in ranked:
                for rest, key in rests.items():
                    old_key = _join(old_scope, old_layer, rest)
                    if old_key in old_sigs and old_sigs[old_key] == new_sigs[key]:
                        why = (
                            f"layer {_join(scope, layer)} <-> {_join(old_scope, old_layer)}"
                            f" ({counts[old_layer]} of {len(rests)} keys fit)"
                        )
                        found = out.candidates.setdefault(key, [])
                        if all(o != old_key for o, _ in found):
                            found.append((old_key, why))
            if ranked and (len(ranked) == 1 or counts[ranked[0]] > counts[ranked[1]]):
                best[unit] = (ranked[0], counts[ranked[0]])
        chosen: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
        for unit, (old_layer, _) in best.items():
            chosen[(unit[1], old_layer)].append(unit)
        progress = False
        for (old_scope, old_layer), picked in sorted(chosen.items()):
            if len(picked) != 1:
                continue  # two new layers want the same old one: ambiguous
            scope, _, layer = unit = picked[0]
            rests = units[unit]
            fitting = {
                r: k
                for r, k in rests.items()
                if old_sigs.get(_join(old_scope, old_layer, r)) == new_sigs[k]
            }
            new_scope, old_full = _join(scope, layer), _join(old_scope, old_layer)
            if "=" in old_full:
                continue  # a rule's format cannot hold "=" (PATTERN=FORMAT splits at the last)
            text = _rule(new_scope, old_full, list(fitting))  # maps new_scope/r to old_full/r
            pairing = Pairing(new_scope, old_full, text, len(fitting), len(rests))
            for rest, key in fitting.items():
                old_key = _join(old_full, rest)
                out.pairings[key] = (pairing, old_key)
                claimed.add(old_key)
            corr[new_scope].add(old_full)
            progress = True
        pending = [k for k in pending if k not in out.pairings]
        if not progress and not retry:
            break
    return out


def _scopes(keys: Iterable[str]) -> set[str]:
    """Every scope above a key (``""`` included), walking up until a known one."""
    scopes = {""}
    for key in keys:
        scope = key.rpartition("/")[0]
        while scope not in scopes:  # the set holds every scope above each of its scopes
            scopes.add(scope)
            scope = scope.rpartition("/")[0]
    return scopes


def _old_index(
    scopes: set[str], old_sigs: Mapping[str, Sig], claimed: set[str]
) -> dict[tuple[str, str, Sig], list[str]]:
    """(old scope, rest, sig) -> layers under the scope holding an unclaimed such key."""
    index: dict[tuple[str, str, Sig], list[str]] = defaultdict(list)
    for key, sig in old_sigs.items():
        if key in claimed:
            continue
        terms = key.split("/")
        for i in range(len(terms)):
            scope = "/".join(terms[:i])
            if scope in scopes:
                index[(scope, "/".join(terms[i + 1 :]), sig)].append(terms[i])
    return index
