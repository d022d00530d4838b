"""Name normalization: the string side of matching old checkpoint keys to new names.

Pure functions over strings, with the semantics of Monolith's
``dense_reload_utils`` helpers where those are sound (``node_name``,
``get_new_name``, ``split_name``, ``calc_reorder_info``, ``get_full_prefix``,
``get_guess_name`` and its ``_NameMapping`` table), and fixed where they are not
(see docs/alias-heuristics.md, "Differences from Monolith"):

- :func:`node_name`, :func:`dedupe_scopes` and :func:`strip_partition` are
  idempotent (Monolith's are not on inputs such as ``"a//a"`` or ``"a/:0"``).
- :func:`strip_partition` removes whole ``/part_N`` segments only.
- :func:`get_full_prefix` extends a prefix by whole scope terms only and breaks
  ties the same way every run.
- User rules (:class:`Rule`) fill missing optional groups with ``""``, not
  ``"None"``, and bad patterns or formats fail when parsed, not when applied.

Nothing here reads files or knows about shapes; :mod:`ckptmap.alias` does the
matching.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ckptmap.errors import AliasError

__all__ = [
    "BUILTIN_RULES",
    "DenseName",
    "Rule",
    "anchor_prefix",
    "apply_rules",
    "calc_reorder_info",
    "dedupe_scopes",
    "get_full_prefix",
    "guess_name",
    "layer_number",
    "may_be_dense",
    "node_name",
    "normalize_name",
    "parse_dense",
    "parse_rule",
    "split_trailing_number",
    "strip_partition",
]

# A whole "/part_<digits>" scope term, followed by another term, a ":N" output
# suffix or the end. Monolith's r"/part_\d+" also cut "/part_1x" down to "x".
_PART_SEGMENT = re.compile(r"/part_\d+(?=/|:|$)")

# Monolith's DensePat: ``<prefix>/<layer>/<bias|kernel|trainable_kernel_norm><suffix>``.
# Ours requires the suffix to start a new scope term ("/Adam"), so that
# "dcn/kernel_1" is not read as layer "dcn" with suffix "_1".
_DENSE = re.compile(r"^(?:(.*)/)?(\w+)/(bias|kernel|trainable_kernel_norm)(/.*)?$")

_ASCII_DIGITS = frozenset("0123456789")


def _is_number(text: str) -> bool:
    return bool(text) and all(c in _ASCII_DIGITS for c in text)


def _node_name_once(name: str) -> str:
    name = name.strip().rstrip("/")
    if name.startswith("^"):
        name = name[1:]
    head, sep, tail = name.rpartition(":")
    if sep and _is_number(tail):
        name = head
    return name


def _is_node_name(name: str) -> bool:
    """Whether :func:`node_name` leaves ``name`` as it is."""
    # strip() == name covers whitespace at both ends (and is True for "", which
    # node_name also leaves as it is)
    return ":" not in name and name.strip() == name and name[-1:] != "/" and name[:1] != "^"


def _repeats_a_term(name: str) -> bool:
    terms = name.split("/")
    return len(set(terms)) != len(terms)


def node_name(name: str) -> str:
    """The graph node name of a tensor or control-input name.

    Strips surrounding whitespace, trailing ``/``, a leading ``^`` (control
    input) and a numeric ``:N`` output suffix, as Monolith's ``node_name``
    does, repeated until nothing changes so that the result is stable.

    >>> node_name(" ^dense/kernel:0 ")
    'dense/kernel'
    >>> node_name("emb/part_0:12/")
    'emb/part_0'
    """
    if _is_node_name(name):
        return name  # the common case, checked cheaply
    while True:
        cleaned = _node_name_once(name)
        if cleaned == name:
            return cleaned
        name = cleaned


def dedupe_scopes(name: str) -> str:
    """Drop repeated scope terms, keeping the first of each (Monolith's ``get_new_name``).

    The name is passed through :func:`node_name` first.

    >>> dedupe_scopes("ffm/tower/tower/dense_1/kernel")
    'ffm/tower/dense_1/kernel'
    """
    cleaned = node_name(name)
    if not _repeats_a_term(cleaned):
        return cleaned
    while True:
        terms: list[str] = []
        seen: set[str] = set()
        for term in node_name(name).split("/"):
            if term not in seen:
                seen.add(term)
                terms.append(term)
        deduped = "/".join(terms)
        if deduped == name:
            return deduped
        name = deduped


def strip_partition(name: str) -> str:
    """Remove ``/part_N`` scope terms (Monolith's ``infer_variable_name`` for one name).

    >>> strip_partition("partition/part_3:0")
    'partition:0'
    """
    if "/part_" not in name:
        return name  # nothing to remove (the common case, checked cheaply)
    return _PART_SEGMENT.sub("", name)


def normalize_name(name: str) -> str:
    """:func:`node_name`, then :func:`strip_partition`, then :func:`dedupe_scopes`."""
    if _is_node_name(name) and "/part_" not in name and not _repeats_a_term(name):
        return name  # none of the three changes it (the common case, checked cheaply)
    return _normalize_changed(name)


@functools.lru_cache(maxsize=1 << 18)
def _normalize_changed(name: str) -> str:
    return dedupe_scopes(strip_partition(node_name(name)))


def split_trailing_number(name: str) -> tuple[str, int]:
    """Split the trailing decimal digits off ``name`` (Monolith's ``split_name``).

    Returns ``(head, number)``, or ``(name, 0)`` when there are none. Like
    Monolith, the first character always stays in the head, so a name is never
    all number.

    >>> split_trailing_number("dense_10")
    ('dense_', 10)
    >>> split_trailing_number("dense")
    ('dense', 0)
    """
    end = len(name)
    start = end
    while start > 1 and name[start - 1] in _ASCII_DIGITS:
        start -= 1
    if start == end:
        return name, 0
    return name[:start], int(name[start:])


def layer_number(layer: str) -> tuple[str, int]:
    """The family and the number of a layer name, for renumbering.

    ``dense``, ``dense_1`` and ``dense_10`` are family ``dense`` with numbers 0,
    1 and 10; ``out_proj`` is family ``out_proj`` number 0.
    """
    head, number = split_trailing_number(layer)
    if head == layer:
        return layer, 0
    return head.rstrip("_") or head, number


def calc_reorder_info(names: Sequence[str], is_ordered: bool = True) -> tuple[bool, str]:
    """Monolith's ``calc_reorder_info``: should these layer names be renumbered, and to what base.

    ``names`` are layer names of one prefix (``dense``, ``dense_1``, ...). When
    ``is_ordered`` is false they are first sorted by their trailing number.
    Returns ``(need_reorder, base)``: ``need_reorder`` is false only for a single
    layer numbered 0 or 1; ``base`` is ``"dense_"`` when the last name's head is
    ``"dense"``, else that head.

    Raises:
        AliasError: if ``names`` is empty.
    """
    if not names:
        raise AliasError("calc_reorder_info: no layer names given (pass at least one)")
    ordered = list(names)
    if not is_ordered:
        ordered.sort(key=lambda n: split_trailing_number(n)[1])
    _, start = split_trailing_number(ordered[0])
    base, end = split_trailing_number(ordered[-1])
    keep = start in (0, 1) and end - start == len(ordered) - 1 and len(ordered) == 1
    return not keep, "dense_" if base == "dense" else base


def _ends_with_terms(prefix: str, short: str) -> bool:
    return short == "" or prefix == short or prefix.endswith("/" + short)


def get_full_prefix(short_prefix: str, prefixes: Iterable[str]) -> str:
    """The longest of ``prefixes`` that ends with ``short_prefix`` (Monolith's ``get_full_prefix``).

    "Ends with" is by whole scope terms (``a/tower`` ends with ``tower``;
    ``atower`` does not). Ties go to the smallest string. Returns
    ``short_prefix`` itself when none qualifies.
    """
    best: str | None = None
    for p in prefixes:
        if not _ends_with_terms(p, short_prefix):
            continue
        if best is None or len(p) > len(best) or (len(p) == len(best) and p < best):
            best = p
    return short_prefix if best is None else best


def anchor_prefix(prefix: str, bias_prefixes: Iterable[str]) -> str:
    """The prefix a dense variable is grouped under: its own when its layer has a bias there.

    Otherwise the longest bias prefix of the same layer that ends with it, as in
    Monolith's bias-anchored grouping (a kernel created outside the layer's
    scope joins the layer whose bias it sits next to).
    """
    prefixes = set(bias_prefixes)
    if prefix in prefixes:
        return prefix
    return get_full_prefix(prefix, prefixes)


@dataclass(frozen=True, slots=True)
class DenseName:
    """A name parsed as a dense-layer variable: ``<prefix>/<layer>/<local><suffix>``.

    Attributes:
        prefix: the scopes above the layer, without a trailing ``/`` (may be empty).
        layer: the layer's own scope term (``dense_3``, ``out_proj``).
        local: ``bias``, ``kernel`` or ``trainable_kernel_norm``.
        suffix: what follows the local name, ``""`` or starting with ``/`` (``/Adam``).
    """

    prefix: str
    layer: str
    local: str
    suffix: str

    @property
    def family(self) -> str:
        return layer_number(self.layer)[0]

    @property
    def number(self) -> int:
        return layer_number(self.layer)[1]

    @property
    def slot(self) -> str:
        """The variable within its layer: ``kernel``, ``bias/Adam``."""
        return self.local + self.suffix


def may_be_dense(name: str) -> bool:
    """Whether :func:`parse_dense` could accept ``name``, or its :func:`normalize_name`.

    The pattern needs ``/bias``, ``/kernel`` or ``/trainable_kernel_norm``;
    normalising only removes text (an output suffix, ``/part_N`` terms, repeated
    terms), which never creates one of them.
    """
    return "/bias" in name or "/kernel" in name or "/trainable_kernel_norm" in name


def parse_dense(name: str) -> DenseName | None:
    """Parse ``name`` as a dense-layer variable, or return ``None``.

    >>> parse_dense("ffm/tower/dense_1/kernel/Adam")
    DenseName(prefix='ffm/tower', layer='dense_1', local='kernel', suffix='/Adam')
    """
    if not may_be_dense(name):
        return None
    matched = _DENSE.match(name)
    if matched is None:
        return None
    prefix, layer, local, suffix = matched.groups()
    return DenseName(prefix or "", layer, local, suffix or "")


# ----------------------------------------------------------------------------- rules


def _check_format(text: str, fmt: str, regex: re.Pattern[str]) -> None:
    """Reject formats ``str.format`` could not fill from ``regex``'s groups."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as err:
        raise AliasError(
            f"rule {text!r}: bad format {fmt!r} ({err}; write {{}} for a group)"
        ) from err
    auto = 0
    numbered = False
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if spec or conversion:
            raise AliasError(
                f"rule {text!r}: format field {{{name}...}} has a conversion or spec"
                " (use plain {}, {0} or {name})"
            )
        if name == "":
            auto += 1
            index = auto - 1
        elif name.isdigit():
            numbered = True
            index = int(name)
        elif name in regex.groupindex:
            continue
        else:
            raise AliasError(f"rule {text!r}: format names group {name!r}, which the pattern lacks")
        if auto and numbered:
            raise AliasError(f"rule {text!r}: format mixes {{}} and {{N}} fields (use one style)")
        if index >= regex.groups:
            raise AliasError(
                f"rule {text!r}: format needs group {index + 1} but the pattern has"
                f" {regex.groups} (add a (...) group or drop a {{}})"
            )


@dataclass(frozen=True, slots=True)
class Rule:
    """A name rule ``PATTERN=FORMAT``, as in Monolith's ``add_mapping_rules``.

    The pattern is matched (``re.match``, anchored at the start) against a new
    name without ``/part_N``; the format is filled with the match's groups by
    ``str.format`` (positional and named; a group that did not take part gives
    ``""``) to give an old checkpoint key.

    Attributes:
        pattern: the regular expression.
        format: the ``str.format`` template of the old key.
        builtin: whether the rule is one of Monolith's built-in ones.

    Raises:
        AliasError: if the pattern is not a valid regular expression or the format
            asks for groups the pattern does not have.
    """

    pattern: str
    format: str
    builtin: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = f"{self.pattern}={self.format}"
        try:
            regex = re.compile(self.pattern)
        except re.error as err:
            raise AliasError(f"rule {text!r}: bad regular expression ({err})") from err
        _check_format(text, self.format, regex)
        object.__setattr__(self, "regex", regex)

    def apply(self, name: str) -> str | None:
        """The old key this rule gives for ``name``, or ``None`` if the pattern does not match."""
        matched = self.regex.match(name)
        if matched is None:
            return None
        groups = tuple(g if g is not None else "" for g in matched.groups())
        named = {k: (v if v is not None else "") for k, v in matched.groupdict().items()}
        return self.format.format(*groups, **named)

    def __str__(self) -> str:
        return f"{self.pattern}={self.format}"


def parse_rule(text: str) -> Rule:
    """Parse ``PATTERN=FORMAT`` into a :class:`Rule`.

    The text is split at its last ``=`` (checkpoint keys never contain one, while
    a pattern may, as in ``(?=...)``).

    >>> parse_rule("^model_v2/(.*)$=model/{}").apply("model_v2/dense/kernel")
    'model/dense/kernel'

    Raises:
        AliasError: if there is no ``=``, either side is empty, the pattern is not
            a valid regular expression, or the format does not fit the pattern.
    """
    pattern, sep, fmt = text.rpartition("=")
    if not sep:
        raise AliasError(
            f"rule {text!r}: missing '=' (write PATTERN=FORMAT, e.g. ^model_v2/(.*)$=model/{{}})"
        )
    if not pattern or not fmt:
        side = "pattern" if not pattern else "format"
        raise AliasError(f"rule {text!r}: empty {side} (write PATTERN=FORMAT)")
    return Rule(pattern, fmt)


# Monolith's _NameMapping, in its order (first match wins).
BUILTIN_RULES: tuple[Rule, ...] = (
    Rule(r"c_dot/mlp(.*)?$", "c_dot/compress_tower{}", builtin=True),
    Rule(r"^dcn/kernel_(\d+)/trainable_norm(.*)?$", "kernel_{}_trainable_norm{}", builtin=True),
    Rule(r"^dcn/kernel_(\d+)(.*)?$", "kernel_{}{}", builtin=True),
    Rule(r"^dcn/bias_(\d+)/trainable_norm(.*)?$", "bias_{}_trainable_norm{}", builtin=True),
    Rule(r"^dcn/bias_(\d+)(.*)?$", "bias_{}{}", builtin=True),
)


def apply_rules(name: str, rules: Iterable[Rule]) -> tuple[Rule, str] | None:
    """The first rule matching ``name`` and the old key it gives, or ``None``."""
    for rule in rules:
        out = rule.apply(name)
        if out is not None:
            return rule, out
    return None


def guess_name(name: str, rules: Iterable[Rule] = BUILTIN_RULES) -> str:
    """Monolith's ``get_guess_name``: the first matching rule's result, else ``name``.

    >>> guess_name("dcn/kernel_2/trainable_norm")
    'kernel_2_trainable_norm'
    """
    found = apply_rules(name, rules)
    return name if found is None else found[1]
