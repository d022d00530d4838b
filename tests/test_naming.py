"""Name normalization: Monolith's helpers, their fixes, and the rule syntax."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptmap.errors import AliasError, CkptmapError
from ckptmap.naming import (
    BUILTIN_RULES,
    DenseName,
    Rule,
    anchor_prefix,
    apply_rules,
    calc_reorder_info,
    dedupe_scopes,
    get_full_prefix,
    guess_name,
    layer_number,
    node_name,
    normalize_name,
    parse_dense,
    parse_rule,
    split_trailing_number,
    strip_partition,
)

# Names built from the pieces that matter: scope separators, output suffixes,
# control-input marks, partition terms, digits, spaces and a little unicode.
NAME_PIECES = st.sampled_from(
    [
        "a",
        "b",
        "dense",
        "dense_1",
        "part_",
        "part_0",
        "part_12",
        "/",
        "/",
        ":",
        ":0",
        "^",
        " ",
        "7",
        "ü",
    ]
)
names = st.lists(NAME_PIECES, max_size=12).map("".join)


# ------------------------------------------------------------------------ node_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("dense/kernel", "dense/kernel"),
        ("dense/kernel:0", "dense/kernel"),
        ("  dense/kernel:0  ", "dense/kernel"),
        ("^dense/kernel", "dense/kernel"),
        ("dense/kernel/", "dense/kernel"),
        ("emb/part_0:12", "emb/part_0"),
        ("a:b", "a:b"),  # only a numeric suffix is an output index
        ("a:0x", "a:0x"),
        ("", ""),
        ("///", ""),
    ],
)
def test_node_name_strips_like_monolith(raw: str, expected: str) -> None:
    assert node_name(raw) == expected


def test_node_name_reaches_a_fixed_point_where_monolith_stops_early() -> None:
    # Monolith strips the trailing '/' before the ':0', leaving "a/"; one more pass gives "a".
    assert node_name("a/:0") == "a"
    assert node_name("^^a") == "a"


@settings(deadline=None)
@given(names)
def test_node_name_is_idempotent(name: str) -> None:
    once = node_name(name)
    assert node_name(once) == once


# ---------------------------------------------------------------------- dedupe_scopes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ffm/tower/tower/dense_1/kernel", "ffm/tower/dense_1/kernel"),
        ("a/b/a/c", "a/b/c"),  # any repeat, not only adjacent ones, as in Monolith
        ("a/b/c", "a/b/c"),
        ("tower/tower/dense:0", "tower/dense"),
        ("a//a", "a"),  # Monolith gives "a/", which is not a fixed point
    ],
)
def test_dedupe_scopes(raw: str, expected: str) -> None:
    assert dedupe_scopes(raw) == expected


@settings(deadline=None)
@given(names)
def test_dedupe_scopes_is_idempotent_and_keeps_first_occurrences(name: str) -> None:
    once = dedupe_scopes(name)
    assert dedupe_scopes(once) == once
    terms = once.split("/")
    assert len(terms) == len(set(terms))


# ---------------------------------------------------------------------- strip_partition


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("partition/part_3:0", "partition:0"),
        ("emb/part_0", "emb"),
        ("a/part_0/b", "a/b"),
        ("a/part_1/part_2", "a"),
        ("a/part_1x", "a/part_1x"),  # not a partition term; Monolith would give "ax"
        ("part_0", "part_0"),  # a top-level name, not a /part_N term
        ("a/part_", "a/part_"),
    ],
)
def test_strip_partition(raw: str, expected: str) -> None:
    assert strip_partition(raw) == expected


@settings(deadline=None)
@given(names)
def test_strip_partition_is_idempotent(name: str) -> None:
    once = strip_partition(name)
    assert strip_partition(once) == once
    assert "/part_0/" not in once + "/"


@settings(deadline=None)
@given(names)
def test_normalize_name_is_idempotent(name: str) -> None:
    once = normalize_name(name)
    assert normalize_name(once) == once


# ----------------------------------------------------------------- split_trailing_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("dense_3", ("dense_", 3)),
        ("dense_10", ("dense_", 10)),
        ("dense", ("dense", 0)),
        ("layer12", ("layer", 12)),
        ("123", ("1", 23)),  # the first character always stays in the head (Monolith)
        ("5", ("5", 0)),
        ("", ("", 0)),
        ("x²", ("x²", 0)),  # only ASCII digits count (Monolith would crash in int())
    ],
)
def test_split_trailing_number(raw: str, expected: tuple[str, int]) -> None:
    assert split_trailing_number(raw) == expected


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ("dense", ("dense", 0)),
        ("dense_1", ("dense", 1)),
        ("dense_10", ("dense", 10)),
        ("out_proj", ("out_proj", 0)),
        ("layer3", ("layer", 3)),
        ("_1", ("_", 1)),
    ],
)
def test_layer_number(layer: str, expected: tuple[str, int]) -> None:
    assert layer_number(layer) == expected


# ------------------------------------------------------------------- calc_reorder_info


@pytest.mark.parametrize(
    ("layers", "ordered", "expected"),
    [
        (["dense"], True, (False, "dense_")),
        (["dense_1"], True, (False, "dense_")),
        (["dense_2"], True, (True, "dense_")),
        (["dense", "dense_1"], True, (True, "dense_")),
        (["dense", "dense_1", "dense_2"], True, (True, "dense_")),
        (["dense_10", "dense_8", "dense_9"], False, (True, "dense_")),
        (["layer1"], True, (False, "layer")),
        (["out_proj"], True, (False, "out_proj")),
    ],
)
def test_calc_reorder_info(layers: list[str], ordered: bool, expected: tuple[bool, str]) -> None:
    assert calc_reorder_info(layers, is_ordered=ordered) == expected


def test_calc_reorder_info_sorts_numerically_when_unordered() -> None:
    # With is_ordered=False the last name is dense_10 (numeric order), not dense_9.
    assert calc_reorder_info(["dense_9", "dense_10", "layer_8"], is_ordered=False) == (
        True,
        "dense_",
    )


def test_calc_reorder_info_needs_a_name() -> None:
    with pytest.raises(AliasError, match="no layer names"):
        calc_reorder_info([])


# -------------------------------------------------------------- get_full_prefix, anchors


def test_get_full_prefix_takes_the_longest_prefix_ending_in_whole_terms() -> None:
    prefixes = {"tower", "a/tower", "b/c/tower", "atower/x"}
    assert get_full_prefix("tower", prefixes) == "b/c/tower"
    assert get_full_prefix("", prefixes) == "b/c/tower"  # everything ends with ""
    assert get_full_prefix("c/tower", prefixes) == "b/c/tower"
    assert get_full_prefix("zzz", prefixes) == "zzz"


def test_get_full_prefix_ignores_partial_terms_and_breaks_ties_by_name() -> None:
    assert get_full_prefix("tower", {"atower"}) == "tower"  # Monolith would pick "atower"
    assert get_full_prefix("t", ["b/t", "a/t"]) == "a/t"
    assert get_full_prefix("t", ["a/t", "b/t"]) == "a/t"


def test_anchor_prefix_keeps_a_prefix_that_has_its_own_bias() -> None:
    assert anchor_prefix("tower", {"tower", "x/tower"}) == "tower"
    assert anchor_prefix("", {"tower"}) == "tower"
    assert anchor_prefix("tower", {"x/tower"}) == "x/tower"
    assert anchor_prefix("tower", set()) == "tower"


# -------------------------------------------------------------------------- parse_dense


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ffm/tower/dense_1/kernel", DenseName("ffm/tower", "dense_1", "kernel", "")),
        ("dense/bias/Adam_1", DenseName("", "dense", "bias", "/Adam_1")),
        (
            "m/out_proj/trainable_kernel_norm",
            DenseName("m", "out_proj", "trainable_kernel_norm", ""),
        ),
        ("x/kernel/bias", DenseName("x", "kernel", "bias", "")),
        ("dcn/kernel_1", None),  # kernel_1 is a variable name, not kernel + "_1"
        ("kernel", None),
        ("dense/weights", None),
        ("", None),
        ("///", None),
        ("a/b-c/kernel", None),  # Monolith's \w+ layer names only
    ],
)
def test_parse_dense(name: str, expected: DenseName | None) -> None:
    assert parse_dense(name) == expected


def test_dense_name_parts() -> None:
    parsed = parse_dense("t/dense_10/kernel/Adam")
    assert parsed is not None
    assert (parsed.family, parsed.number, parsed.slot) == ("dense", 10, "kernel/Adam")


# -------------------------------------------------------------------------------- rules


def test_parse_rule_and_apply() -> None:
    rule = parse_rule("^model_v2/(.*)$=model/{}")
    assert rule == Rule("^model_v2/(.*)$", "model/{}")
    assert rule.apply("model_v2/dense/kernel") == "model/dense/kernel"
    assert rule.apply("other/dense") is None
    assert str(rule) == "^model_v2/(.*)$=model/{}"


def test_rule_splits_at_the_last_equals_sign() -> None:
    rule = parse_rule("^a(?=/)(.*)$=b{}")
    assert rule.pattern == "^a(?=/)(.*)$"
    assert rule.apply("a/x") == "b/x"


def test_rule_fills_missing_groups_with_empty_text() -> None:
    # Monolith's str.format would write "None" for a group that did not take part.
    rule = parse_rule(r"^dcn/kernel_(\d+)(/x)?$=kernel_{}{}")
    assert rule.apply("dcn/kernel_3") == "kernel_3"
    assert rule.apply("dcn/kernel_3/x") == "kernel_3/x"


def test_rule_named_and_numbered_groups() -> None:
    assert parse_rule("^(?P<top>[^/]+)/(.*)$={1}/{0}").apply("a/b") == "b/a"
    assert parse_rule("^(?P<top>[^/]+)/.*$=old_{top}").apply("a/b") == "old_a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-equals-sign", "missing '='"),
        ("=x", "empty pattern"),
        ("^a$=", "empty format"),
        ("^(a$=x", "bad regular expression"),
        ("^(a)$=x{}{}", "needs group 2"),
        ("^(a)$=x{2}", "needs group 3"),
        ("^(a)(b)$={}{1}", "mixes"),
        ("^(a)$={name}", "lacks"),
        ("^(a)$={:>4}", "conversion or spec"),
        ("^(a)$={!r}", "conversion or spec"),
        ("^(a)$=x{", "bad format"),
        ("^(a)$=x}", "bad format"),
    ],
)
def test_parse_rule_errors_are_alias_errors(text: str, message: str) -> None:
    with pytest.raises(AliasError, match=message) as info:
        parse_rule(text)
    assert isinstance(info.value, CkptmapError)
    assert "\n" not in str(info.value)


def test_builtin_rules_are_monoliths_name_mapping_in_order() -> None:
    assert [(r.pattern, r.format) for r in BUILTIN_RULES] == [
        (r"c_dot/mlp(.*)?$", "c_dot/compress_tower{}"),
        (r"^dcn/kernel_(\d+)/trainable_norm(.*)?$", "kernel_{}_trainable_norm{}"),
        (r"^dcn/kernel_(\d+)(.*)?$", "kernel_{}{}"),
        (r"^dcn/bias_(\d+)/trainable_norm(.*)?$", "bias_{}_trainable_norm{}"),
        (r"^dcn/bias_(\d+)(.*)?$", "bias_{}{}"),
    ]
    assert all(r.builtin for r in BUILTIN_RULES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("c_dot/mlp/dense/kernel", "c_dot/compress_tower/dense/kernel"),
        ("c_dot/mlp", "c_dot/compress_tower"),
        ("dcn/kernel_0", "kernel_0"),
        ("dcn/kernel_2/Adam", "kernel_2/Adam"),
        ("dcn/kernel_1/trainable_norm", "kernel_1_trainable_norm"),
        ("dcn/bias_3", "bias_3"),
        ("dcn/bias_3/trainable_norm/Adam_1", "bias_3_trainable_norm/Adam_1"),
        ("tower/dcn/kernel_0", "tower/dcn/kernel_0"),  # anchored at the start: unchanged
        ("dense/kernel", "dense/kernel"),
    ],
)
def test_guess_name_applies_the_builtin_table(name: str, expected: str) -> None:
    assert guess_name(name) == expected


def test_user_rules_come_first_and_first_match_wins() -> None:
    rules = [parse_rule("^dcn/(.*)$=cross/{}"), *BUILTIN_RULES]
    found = apply_rules("dcn/kernel_0", rules)
    assert found is not None
    assert found[0] is rules[0]
    assert found[1] == "cross/kernel_0"
    assert apply_rules("nothing", rules) is None


@settings(deadline=None)
@given(names)
def test_rules_never_raise_on_odd_names(name: str) -> None:
    for rule in BUILTIN_RULES:
        out = rule.apply(name)
        assert out is None or isinstance(out, str)
    assert isinstance(guess_name(name), str)
