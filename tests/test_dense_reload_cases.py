"""Monolith's dense_reload_utils tests and required behaviours, carried over as pure tests.

Monolith's test builds a graph with ``global_step``, ``partition`` (1280 x 512
float32, ``variable_axis_size_partitioner(max_shard_bytes=1 << 17,
max_shards=100)``) and ``small_var`` (10 x 5), saves it, and then checks
``infer_variable_name``, ``calc_feed_dict`` (with an alias map from
``partition2/part_N`` and ``small_var2``), the alias-map listener and the
``clear_nn`` listener. Here the same checkpoint and model are described as specs
(no TensorFlow needed); one TensorFlow test confirms the part shapes we compute.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ckptmap.alias import (
    DEDUPLICATED_SCOPE,
    DENSE_RENUMBERED,
    EXACT,
    EXPLICIT,
    MISSING_DENSE_OFFSET,
    plan_aliases,
)
from ckptmap.dtypes import dtype_from_name
from ckptmap.errors import AliasError
from ckptmap.naming import (
    calc_reorder_info,
    dedupe_scopes,
    get_full_prefix,
    guess_name,
    node_name,
    split_trailing_number,
    strip_partition,
)
from ckptmap.spec import GraphVariable, ModelSpec, TensorSpec
from ckptmap.split import SliceSpec, assemble_slice, even_partition, plan_slice

F32 = dtype_from_name("float32")
I64 = dtype_from_name("int64")
FULL = (1280, 512)
MAX_SHARD_BYTES = 1 << 17


def axis_size_shards(
    shape: tuple[int, ...],
    itemsize: int,
    max_shard_bytes: int,
    axis: int = 0,
    max_shards: int | None = None,
) -> int:
    """Parts made by TF's variable_axis_size_partitioner (python/ops/partitioned_variables.py).

    bytes per slice along ``axis`` = elements / shape[axis] * itemsize; slices per
    shard = max(1, floor(max_shard_bytes / bytes per slice)); shards = ceil(shape[axis]
    / slices per shard), capped by max_shards.
    """
    bytes_per_slice = math.prod(shape) / shape[axis] * itemsize
    per_shard = max(1, math.floor(max_shard_bytes / bytes_per_slice))
    shards = math.ceil(shape[axis] / per_shard)
    return min(max_shards, shards) if max_shards else shards


PARTS = even_partition(FULL, 0, axis_size_shards(FULL, 4, MAX_SHARD_BYTES, max_shards=100))


def test_partitioner_rule_gives_20_parts_of_64_rows() -> None:
    # 512 floats = 2048 bytes per row; 131072 / 2048 = 64 rows per shard; 1280 / 64 = 20.
    assert len(PARTS) == 20
    assert {s.shape for s in PARTS} == {(64, 512)}
    assert [s.starts[0] for s in PARTS] == [64 * i for i in range(20)]
    assert PARTS[1].format() == "1280 512 64,64:0,512"


def old_checkpoint() -> dict[str, TensorSpec]:
    """The checkpoint Monolith's setUpClass saves, as the index lists it."""
    return {
        "global_step": TensorSpec("global_step", I64, ()),
        "partition": TensorSpec("partition", F32, FULL, tuple(PARTS)),
        "small_var": TensorSpec("small_var", F32, (10, 5)),
    }


def new_model(partition: str = "partition2", small: str = "small_var2") -> ModelSpec:
    """The graph of test_calc_feed_dict: partition2 (20 parts), small_var2, global_step."""
    variables = [
        GraphVariable("global_step", "global_step", I64, (), None, False, True),
        GraphVariable(small, small, F32, (10, 5)),
    ]
    variables += [
        GraphVariable(f"{partition}/part_{i}", partition, F32, s.shape, s)
        for i, s in enumerate(PARTS)
    ]
    keys = [
        TensorSpec("global_step", I64, ()),
        TensorSpec(partition, F32, FULL, tuple(PARTS)),
        TensorSpec(small, F32, (10, 5)),
    ]
    return ModelSpec.from_parts(keys, variables)


def monolith_alias_map(partition: str = "partition2") -> dict[str, str]:
    alias_map = {"small_var2": "small_var", "global_step": "global_step"}
    alias_map.update({f"{partition}/part_{i}": "partition" for i in range(len(PARTS))})
    return alias_map


# ------------------------------------------------------------ test_infer_variable_name


def test_infer_variable_name() -> None:
    names = [f"partition/part_{i}:0" for i in range(len(PARTS))]
    assert {strip_partition(n) for n in names} == {"partition:0"}
    assert node_name("small_var:0") == "small_var"


# ------------------------------------------------------------------ test_calc_feed_dict


def test_calc_feed_dict() -> None:
    alias_map = monolith_alias_map()
    model = new_model()
    plan = plan_aliases(old_checkpoint(), model, explicit=alias_map)
    assert plan.complete
    assert {k: m.old_key for k, m in plan.matches.items()} == {
        "global_step": "global_step",
        "partition2": "partition",
        "small_var2": "small_var",
    }
    # The "feed dict": one array per alias-map entry, cut from the stored pieces.
    stored = old_checkpoint()
    x = np.arange(math.prod(FULL), dtype=np.float32).reshape(FULL)
    arrays = {
        "partition": [x[p.index()] for p in PARTS],
        "small_var": [np.ones((10, 5), np.float32)],
    }
    arrays["global_step"] = [np.array(0, np.int64)]
    feed = {}
    for name in alias_map:
        var = model.variables[name]
        source = plan.variable_sources[name]
        old = stored[source]
        target = var.slice or SliceSpec.full(old.shape)
        slice_plan = plan_slice(old.slices or None, old.shape, target)
        feed[name] = assemble_slice(slice_plan, arrays[source])
    assert len(feed) == len(alias_map)
    for i, part in enumerate(PARTS):
        got = feed[f"partition2/part_{i}"]
        assert got.shape == part.shape == (64, 512)
        np.testing.assert_array_equal(got, x[part.index()])
    assert feed["small_var2"].shape == (10, 5)


def test_calc_feed_dict_repartitions_when_the_new_model_cuts_differently() -> None:
    # Not in Monolith's test (its np.split assumes the first axis): cut along axis 1.
    cols = even_partition(FULL, 1, 3)
    x = np.arange(math.prod(FULL), dtype=np.float32).reshape(FULL)
    for target in cols:
        got = assemble_slice(plan_slice(PARTS, FULL, target), [x[p.index()] for p in PARTS])
        np.testing.assert_array_equal(got, x[target.index()])


def test_calc_feed_dict_is_not_needed_when_names_already_match() -> None:
    # Monolith's calc_feed_dict returns None when every inferred name is in the checkpoint.
    plan = plan_aliases(old_checkpoint(), new_model("partition", "small_var"))
    assert plan.is_identity


# ------------------------------------------------------------- test_alias_map_listener


def test_alias_map_listener() -> None:
    plan = plan_aliases(old_checkpoint(), new_model(), explicit=monolith_alias_map())
    assert plan.unresolved == []
    assert plan.mismatched == []
    assert {m.reason for m in plan.matches.values()} == {EXPLICIT}
    assert set(plan.variable_sources) == set(new_model().variables)


def test_alias_map_is_needed_without_one() -> None:
    # Monolith's auto generation gives up on partition2/small_var2; so do we, with advice.
    plan = plan_aliases(old_checkpoint(), new_model())
    assert plan.matches["global_step"].reason == EXACT
    by_key = {u.new_key: u for u in plan.unresolved}
    assert set(by_key) == {"partition2", "small_var2"}
    assert by_key["partition2"].suggested_entry == ("partition2", "partition")
    assert by_key["small_var2"].suggested_rule == "^small_var2$=small_var"


# -------------------------------------------------------------- test_clear_nn_listener


def test_clear_nn_listener() -> None:
    plan = plan_aliases(old_checkpoint(), new_model(), clear_nn=True)
    assert plan.matches == {}
    assert {d.new_key for d in plan.dropped} == {"global_step", "partition2", "small_var2"}
    kept = plan_aliases(old_checkpoint(), new_model(), clear_nn=True, continue_training=True)
    assert {k: m.old_key for k, m in kept.matches.items()} == {"global_step": "global_step"}
    with pytest.raises(AliasError):  # Monolith asserts alias_map is None under clear_nn
        plan_aliases(old_checkpoint(), new_model(), clear_nn=True, explicit=monolith_alias_map())


# ------------------------------------------------- the seed's Required Behavior items


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" a/b ", "a/b"), ("a/b/", "a/b"), ("^a/b", "a/b"), ("a/b:0", "a/b"), ("a/b:x", "a/b:x")],
)
def test_required_node_name(raw: str, expected: str) -> None:
    assert node_name(raw) == expected


def test_required_get_new_name() -> None:
    assert dedupe_scopes("tower/tower/dense/kernel:0") == "tower/dense/kernel"
    assert dedupe_scopes("a/b/a/b/c") == "a/b/c"


def test_required_get_guess_name() -> None:
    assert guess_name("dcn/kernel_0/trainable_norm") == "kernel_0_trainable_norm"
    assert guess_name("c_dot/mlp/dense/bias") == "c_dot/compress_tower/dense/bias"
    assert guess_name("not/mapped") == "not/mapped"


def test_required_split_name() -> None:
    assert split_trailing_number("dense_12") == ("dense_", 12)
    assert split_trailing_number("bias") == ("bias", 0)


def test_required_calc_reorder_info() -> None:
    assert calc_reorder_info(["dense"]) == (False, "dense_")
    assert calc_reorder_info(["dense", "dense_1"]) == (True, "dense_")
    assert calc_reorder_info(["dense_3"]) == (True, "dense_")


def test_required_get_full_prefix() -> None:
    assert get_full_prefix("tower", {"tower", "model/tower"}) == "model/tower"
    assert get_full_prefix("tower", set()) == "tower"


def _dense(prefix: str, layer: str, fan_in: int, fan_out: int) -> list[TensorSpec]:
    return [
        TensorSpec(f"{prefix}/{layer}/kernel", F32, (fan_in, fan_out)),
        TensorSpec(f"{prefix}/{layer}/bias", F32, (fan_out,)),
    ]


def test_required_dense_mapping_update() -> None:
    # Monolith renames the old layers of a prefix to dense_0, dense_1, ... by numeric
    # rank, after de-duplicating scopes; a new model named that way maps by rank.
    old = [
        *_dense("t/t", "dense", 8, 4),
        *_dense("t/t", "dense_1", 4, 2),
        *_dense("t/t", "dense_2", 2, 1),
    ]
    new = [
        *_dense("t", "dense_0", 8, 4),
        *_dense("t", "dense_1", 4, 2),
        *_dense("t", "dense_2", 2, 1),
    ]
    plan = plan_aliases({s.key: s for s in old}, ModelSpec.from_parts(new))
    assert {k: (m.old_key, m.reason) for k, m in plan.matches.items()} == {
        "t/dense_0/kernel": ("t/t/dense/kernel", DENSE_RENUMBERED),
        "t/dense_0/bias": ("t/t/dense/bias", DENSE_RENUMBERED),
        "t/dense_1/kernel": ("t/t/dense_1/kernel", DEDUPLICATED_SCOPE),
        "t/dense_1/bias": ("t/t/dense_1/bias", DEDUPLICATED_SCOPE),
        "t/dense_2/kernel": ("t/t/dense_2/kernel", DEDUPLICATED_SCOPE),
        "t/dense_2/bias": ("t/t/dense_2/bias", DEDUPLICATED_SCOPE),
    }


def test_required_miss_dense_map() -> None:
    # New layers numbered from 3 (Keras' global numbering) map onto old ranks 0, 1, 2,
    # exactly as Monolith's miss_dense_map does (offset = smallest missing number).
    old = [
        *_dense("t", "dense", 8, 4),
        *_dense("t", "dense_1", 4, 2),
        *_dense("t", "dense_2", 2, 1),
    ]
    new = [
        *_dense("t", "dense_3", 8, 4),
        *_dense("t", "dense_4", 4, 2),
        *_dense("t", "dense_5", 2, 1),
    ]
    plan = plan_aliases({s.key: s for s in old}, ModelSpec.from_parts(new))
    assert {k: m.old_key for k, m in plan.matches.items()} == {
        "t/dense_3/kernel": "t/dense/kernel",
        "t/dense_3/bias": "t/dense/bias",
        "t/dense_4/kernel": "t/dense_1/kernel",
        "t/dense_4/bias": "t/dense_1/bias",
        "t/dense_5/kernel": "t/dense_2/kernel",
        "t/dense_5/bias": "t/dense_2/bias",
    }
    assert {m.reason for m in plan.matches.values()} == {MISSING_DENSE_OFFSET}


def test_required_compatibility_check_ignores_partition_terms() -> None:
    # Step 2 of Monolith's auto generation: names without /part_N all in the checkpoint.
    plan = plan_aliases(old_checkpoint(), new_model("partition", "small_var"))
    assert all(m.reason == EXACT for m in plan.matches.values())
    assert plan.variable_sources["partition/part_7"] == "partition"


# ------------------------------------------------------------------- the TF oracle


@pytest.mark.tf
@pytest.mark.parametrize(
    ("shape", "max_shard_bytes", "max_shards"),
    [(FULL, MAX_SHARD_BYTES, 100), ((1000, 3), 1000, None), ((7, 300), 5000, 3)],
)
def test_partitioner_parts_match_tensorflow(
    tf, shape: tuple[int, int], max_shard_bytes: int, max_shards: int | None
) -> None:  # type: ignore[no-untyped-def]
    graph = tf.Graph()
    with graph.as_default():
        partitioner = tf.compat.v1.variable_axis_size_partitioner(
            max_shard_bytes=max_shard_bytes, max_shards=max_shards
        )
        var = tf.compat.v1.get_variable(
            "partition", shape=shape, dtype=tf.float32, partitioner=partitioner
        )
        parts = var._get_variable_list()
        names = [p.name for p in parts]
        specs = [p._save_slice_info.spec for p in parts]
    ours = even_partition(
        shape, 0, axis_size_shards(shape, 4, max_shard_bytes, max_shards=max_shards)
    )
    assert specs == [s.format() for s in ours]
    assert {strip_partition(n) for n in names} == {f"{var.name}:0"}
