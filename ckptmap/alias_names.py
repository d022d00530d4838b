"""The alias engine in the names users know, for TF2 object-based checkpoints.

An object-based checkpoint's keys (``optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE``)
say little; its object graph names each key (``hidden/kernel``,
``hidden/kernel/m``, ``global_step``: :mod:`ckptmap.readers.object_graph`).
:func:`plan_aliases_by_name` runs :func:`ckptmap.alias.plan_aliases` on those
*user names*, on the old side when the old checkpoint is object-based and on
the new side when the new model is given as an object-based checkpoint of
itself (a template), and returns the plan in real checkpoint keys:

* explicit map entries may name either side by user name, by a full name
  only one key has (``adam/iteration``) or by key;
* rules (``PATTERN=FORMAT``) and the automatic steps see user names, so
  ``^proj/(.*)$=hidden/{}`` reads as it would for a name-based checkpoint.
  Rules fall back to keys: a rule whose pattern matches no new user name but
  some new key of a template is applied to the keys
  (``^model/layer_with_weights-0/(.*)$=...``), and a rule's result that is
  no old user name but an old key (or a full name only one key has) stands for
  that key;
* the plan's new and old keys (matches, sources, candidates, unused keys,
  mismatches) are the real keys; the sentences (reasons, notes) and the
  suggested rules and entries stay in user names, which is what a user
  writes back into a map or a rule.

Without an object graph on either side this is :func:`plan_aliases` itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckptmap.alias import AliasPlan, Match, Unresolved, plan_aliases
from ckptmap.naming import Rule, node_name, parse_rule, strip_partition
from ckptmap.spec import GraphVariable, ModelSpec, TensorSpec

if TYPE_CHECKING:
    from ckptmap.readers.object_graph import ObjectNames

__all__ = ["plan_aliases_by_name"]


def plan_aliases_by_name(
    old: Mapping[str, TensorSpec],
    new: ModelSpec,
    *,
    old_names: ObjectNames | None = None,
    new_names: ObjectNames | None = None,
    explicit: Mapping[str, str] | None = None,
    rules: Sequence[Rule | str] = (),
    **options: Any,
) -> AliasPlan:
    """:func:`~ckptmap.alias.plan_aliases` matching on user names, planned in real keys.

    Args:
        old: the old checkpoint's keys and specs.
        new: the new model.
        old_names: the old checkpoint's object graph names (``None``: name-based).
        new_names: the new model's, when it is an object-based template.
        explicit: the user's map; either side by user name, unique full name or key.
        rules: the user's rules, over user names.
        options: the other keywords of :func:`~ckptmap.alias.plan_aliases`.

    Raises:
        AliasError: as :func:`~ckptmap.alias.plan_aliases` does.
    """
    old_user = _renaming(old, old_names)
    new_user = _renaming(new.keys, new_names)
    if not old_user and not new_user:
        return plan_aliases(old, new, explicit=explicit, rules=rules, **options)
    renamed_old = {
        old_user.get(k, k): dataclasses.replace(s, key=old_user.get(k, k)) for k, s in old.items()
    }
    renamed_new = _rename_model(new, new_user)
    if explicit is not None:
        explicit = {
            _user_term(name, new_names, new_user): _user_term(value, old_names, old_user)
            for name, value in explicit.items()
        }
    named_rules = _with_key_fallback(rules, renamed_new, new_user, old_names, old_user)
    plan = plan_aliases(renamed_old, renamed_new, explicit=explicit, rules=named_rules, **options)
    return _in_keys(plan, _inverse(old_user), _inverse(new_user))


@dataclass(frozen=True, slots=True)
class _FallbackRule(Rule):
    """A user rule over user names that falls back to keys (see the module docstring).

    ``apply`` gets a new user name: with ``on_keys`` the pattern is matched
    against the key that name stands for; the result is translated into the
    old user name it means when it is an old key or a unique full name.
    """

    on_keys: bool = False
    new_key: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    old_names: ObjectNames | None = field(default=None, compare=False, repr=False)
    old_user: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def apply(self, name: str) -> str | None:
        out = Rule.apply(self, self.new_key.get(name, name) if self.on_keys else name)
        if out is None:
            return None
        return str(_user_term(out, self.old_names, self.old_user))


def _with_key_fallback(
    rules: Sequence[Rule | str],
    new: ModelSpec,
    new_user: Mapping[str, str],
    old_names: ObjectNames | None,
    old_user: Mapping[str, str],
) -> list[Rule]:
    """The user's rules as :class:`_FallbackRule` objects over ``new`` (a model in user names).

    A rule is applied to keys when its pattern matches none of the new user
    names but at least one key that has a user name (``new_user``).
    """
    names = [strip_partition(node_name(k)) for k in new.keys]
    new_key = {user: key for key, user in new_user.items()}
    fallback: list[Rule] = []
    for given in rules:
        rule = given if isinstance(given, Rule) else parse_rule(given)
        on_keys = not any(rule.regex.match(n) for n in names) and any(
            rule.regex.match(k) for k in new_user
        )
        fallback.append(
            _FallbackRule(
                rule.pattern,
                rule.format,
                rule.builtin,
                on_keys=on_keys,
                new_key=new_key,
                old_names=old_names,
                old_user=old_user,
            )
        )
    return fallback


def _renaming(keys: Mapping[str, TensorSpec], names: ObjectNames | None) -> dict[str, str]:
    """Key -> user name for the keys that have another name; empty if names would collide."""
    if names is None:
        return {}
    renaming = {k: names.user_name(k) for k in keys if names.user_name(k) != k}
    taken = set(keys) - set(renaming)
    if len(set(renaming.values())) != len(renaming) or taken & set(renaming.values()):
        return {}
    return renaming


def _user_term(name: object, names: ObjectNames | None, renaming: Mapping[str, str]) -> Any:
    """The user name a map entry's side means (a user name, a unique full name, a key)."""
    if not isinstance(name, str) or names is None:
        return name
    key = names.key_of(name)
    return renaming.get(key, name) if key is not None else name


def _rename_model(spec: ModelSpec, renaming: Mapping[str, str]) -> ModelSpec:
    if not renaming:
        return spec

    def variable(var: GraphVariable) -> GraphVariable:
        name = renaming.get(var.name, var.name) if var.name == var.key else var.name
        return dataclasses.replace(var, name=name, key=renaming.get(var.key, var.key))

    variables = [variable(v) for v in spec.variables.values()]
    return dataclasses.replace(
        spec,
        keys={
            renaming.get(k, k): dataclasses.replace(s, key=renaming.get(k, k))
            for k, s in spec.keys.items()
        },
        variables={v.name: v for v in variables},
        restored_into={renaming.get(k, k): v for k, v in spec.restored_into.items()},
    )


def _inverse(renaming: Mapping[str, str]) -> dict[str, str]:
    return {user: key for key, user in renaming.items()}


def _in_keys(plan: AliasPlan, old_key: Mapping[str, str], new_key: Mapping[str, str]) -> AliasPlan:
    """``plan`` with every user name of a key replaced by the key (sentences unchanged)."""

    def old(name: str) -> str:
        return old_key.get(name, name)

    def new(name: str) -> str:
        return new_key.get(name, name)

    def unresolved(u: Unresolved) -> Unresolved:
        return dataclasses.replace(
            u,
            new_key=new(u.new_key),
            candidates=[dataclasses.replace(c, old_key=old(c.old_key)) for c in u.candidates],
        )

    matches = [
        Match(new(m.new_key), old(m.old_key), m.reason, m.detail) for m in plan.matches.values()
    ]
    return dataclasses.replace(
        plan,
        matches={m.new_key: m for m in sorted(matches, key=lambda m: m.new_key)},
        variable_sources=dict(sorted((new(v), old(k)) for v, k in plan.variable_sources.items())),
        unresolved=sorted((unresolved(u) for u in plan.unresolved), key=lambda u: u.new_key),
        mismatched=sorted(
            m._replace(new_key=new(m.new_key), old_key=old(m.old_key)) for m in plan.mismatched
        ),
        unused_old=sorted(old(k) for k in plan.unused_old),
        dropped=sorted(d._replace(new_key=new(d.new_key)) for d in plan.dropped),
        old_names=dict(_inverse(old_key)),
        new_names=dict(_inverse(new_key)),
    )
