"""Partition plans: split, merge, re-partition, TF's even partitions, slice plans, byte runs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ckptmap import split
from ckptmap.errors import CkptmapError
from ckptmap.split import (
    MAX_BYTE_RANGES,
    PartitionError,
    SliceSpec,
    SliceSpecError,
    assemble_slice,
    box_of,
    byte_ranges,
    check_tiling,
    even_partition,
    merge_slices,
    plan_slice,
)


def split_tensor(x: np.ndarray, slices: list[SliceSpec]) -> list[np.ndarray]:
    """The slices of ``x`` (what a partitioned variable's parts hold)."""
    return [x[s.index()] for s in slices]


def repartition(
    parts: list[tuple[SliceSpec, np.ndarray]], shape: tuple[int, ...], targets: list[SliceSpec]
) -> list[np.ndarray]:
    """Re-cut stored parts into ``targets`` the way a remap does: plan, then assemble."""
    specs, arrays = [s for s, _ in parts], [a for _, a in parts]
    check_tiling(specs, shape)
    return [np.array(assemble_slice(plan_slice(specs, shape, t), arrays)) for t in targets]


# ----------------------------------------------------------------------- strategies

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)


@st.composite
def grid_partitions(draw: st.DrawFn, shape: tuple[int, ...]) -> list[SliceSpec]:
    """Slices cutting ``shape`` into a grid, along any axes (not only the first)."""
    cuts = []
    for dim in shape:
        inner = draw(st.lists(st.integers(1, max(1, dim - 1)), max_size=3, unique=True))
        points = sorted({p for p in inner if 0 < p < dim})
        cuts.append([0, *points, dim])
    spell_whole = draw(st.booleans())  # "-" for an uncut dimension, as TF allows
    boxes: list[list[tuple[int, int]]] = [[]]
    for bounds in cuts:
        whole = len(bounds) == 2 and spell_whole
        extents = (
            [(0, -1)] if whole else [(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
        )
        boxes = [box + [ext] for box in boxes for ext in extents]
    order = draw(st.permutations(range(len(boxes))))  # stored order is not sorted (format §6.2)
    return [SliceSpec(shape, tuple(boxes[i])) for i in order]


@st.composite
def arrays_with_partition(draw: st.DrawFn) -> tuple[np.ndarray, list[SliceSpec]]:
    shape = draw(shapes)
    x = draw(hnp.arrays(np.int32, shape, elements=st.integers(-1000, 1000)))
    return x, draw(grid_partitions(shape))


@st.composite
def box_in(draw: st.DrawFn, shape: tuple[int, ...]) -> SliceSpec:
    extents = []
    for dim in shape:
        start = draw(st.integers(0, dim))
        length = draw(st.integers(0, dim - start))
        extents.append((start, length))
    return SliceSpec(shape, tuple(extents))


# ------------------------------------------------------------------- even_partition


def test_even_partition_matches_tfs_saver_specs() -> None:
    # tf-checkpoint-format.md §6.1: fixed_size_partitioner(3) on [10, 4] gives these specs.
    assert [s.format() for s in even_partition((10, 4), 0, 3)] == [
        "10 4 0,4:0,4",
        "10 4 4,3:0,4",
        "10 4 7,3:0,4",
    ]


def test_even_partition_on_axis_1_and_negative_axis() -> None:
    assert [s.format() for s in even_partition((6, 1280), 1, 5)] == [
        "6 1280 0,6:0,256",
        "6 1280 0,6:256,256",
        "6 1280 0,6:512,256",
        "6 1280 0,6:768,256",
        "6 1280 0,6:1024,256",
    ]
    assert even_partition((6, 5), -1, 2) == even_partition((6, 5), 1, 2)


def test_even_partition_ffm_embeddings() -> None:
    # fixtures/README.md: fixed_size_partitioner(3) on 200 rows gives 67, 67, 66.
    assert [s.shape for s in even_partition((200, 16), 0, 3)] == [(67, 16), (67, 16), (66, 16)]


@pytest.mark.parametrize(
    ("shape", "axis", "count", "message"),
    [
        ((), 0, 1, "scalar"),
        ((4,), 1, 1, "out of range"),
        ((4,), 0, 0, "into 0 parts"),
        ((4,), 0, 5, "into 5 parts"),
    ],
)
def test_even_partition_errors(shape: tuple[int, ...], axis: int, count: int, message: str) -> None:
    with pytest.raises(PartitionError, match=message):
        even_partition(shape, axis, count)


@settings(deadline=None)
@given(shapes, st.data())
def test_even_partition_tiles_the_shape(shape: tuple[int, ...], data: st.DataObject) -> None:
    axis = data.draw(st.integers(0, len(shape) - 1))
    count = data.draw(st.integers(1, max(1, shape[axis])))
    slices = even_partition(shape, axis, count)
    assert len(slices) == count
    sizes = [s.shape[axis] for s in slices]
    assert sizes == sorted(sizes, reverse=True)  # larger parts first
    assert max(sizes) - min(sizes) <= 1
    coverage = np.zeros(shape, dtype=np.int64)
    for s in slices:
        coverage[s.index()] += 1
    assert (coverage == 1).all()


# ---------------------------------------------------------------- split and merge


def test_split_then_merge_along_axis_1() -> None:
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    slices = even_partition(x.shape, 1, 4)
    parts = split_tensor(x, slices)
    assert [p.shape for p in parts] == [(4, 2), (4, 2), (4, 1), (4, 1)]
    np.testing.assert_array_equal(parts[1], x[:, 2:4])
    np.testing.assert_array_equal(merge_slices(list(zip(slices, parts, strict=True)), x.shape), x)


@settings(deadline=None)
@given(arrays_with_partition())
def test_split_then_merge_is_identity(case: tuple[np.ndarray, list[SliceSpec]]) -> None:
    x, slices = case
    parts = split_tensor(x, slices)
    assert [p.shape for p in parts] == [s.shape for s in slices]
    merged = merge_slices(list(zip(slices, parts, strict=True)), x.shape)
    assert merged.dtype == x.dtype
    np.testing.assert_array_equal(merged, x)


def _tiles(specs: list[SliceSpec], shape: tuple[int, ...]) -> bool:
    """The general tiling check alone (no overlap, full coverage), without the fast path."""
    boxes = [box_of(s, shape) for s in specs]
    covered = sum(split._volume(b) for b in boxes)
    return split._first_overlap(boxes) is None and covered == split._volume(box_of(None, shape))


@pytest.mark.parametrize(
    ("specs", "shape", "proven"),
    [
        (["6 4 0,2:-", "6 4 4,2:-", "6 4 2,2:-"], (6, 4), True),  # rows, stored out of order
        (["6 4 -:0,1", "6 4 -:1,3"], (6, 4), True),  # columns
        (["6 4 -:-"], (6, 4), True),
        (["6 4 0,3:-", "6 4 2,4:-"], (6, 4), False),  # overlap
        (["6 4 0,2:-", "6 4 3,3:-"], (6, 4), False),  # gap
        (["6 4 0,2:-", "6 4 2,2:-"], (6, 4), False),  # short of the end
        (["6 4 -:-", "6 4 -:-"], (6, 4), False),  # the whole tensor twice
        (["6 4 0,3:0,2", "6 4 0,3:2,2", "6 4 3,3:-"], (6, 4), False),  # two axes: left to the rest
        (["6 0 0,3:-", "6 0 3,3:-"], (6, 0), False),  # an empty dimension: left to the rest
    ],
)
def test_the_one_axis_fast_path(specs: list[str], shape: tuple[int, ...], proven: bool) -> None:
    slices = [SliceSpec.parse(s) for s in specs]
    assert split._cut_along_one_axis([box_of(s, shape) for s in slices], shape) is proven
    if proven:
        assert _tiles(slices, shape)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_one_axis_fast_path_proves_only_tilings(data: st.DataObject) -> None:
    """Whenever the fast path says "tiles", the general check agrees; on any boxes."""
    shape = data.draw(shapes)
    slices = data.draw(
        st.one_of(grid_partitions(shape), st.lists(box_in(shape), min_size=1, max_size=5))
    )
    boxes = [box_of(s, shape) for s in slices]
    if split._cut_along_one_axis(boxes, shape):
        assert _tiles(slices, shape)
        check_tiling(slices, shape)


def test_merge_string_slices() -> None:
    x = np.array([[b"a", b"b"], [b"c", b""], [b"\xff", b"e"]], dtype=object)
    slices = even_partition(x.shape, 0, 2)
    merged = merge_slices(list(zip(slices, split_tensor(x, slices), strict=True)), x.shape)
    assert merged.tolist() == x.tolist()


def _rows(spec: str) -> SliceSpec:
    return SliceSpec.parse(spec)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["4 2 0,2:0,2", "4 2 1,3:0,2"], "overlap"),
        (["4 2 0,2:0,2"], "cover 4 of the 8"),
        (["4 2 0,4:0,2", "4 2 0,4:-"], "overlap"),
    ],
)
def test_merge_refuses_gaps_and_overlaps(specs: list[str], message: str) -> None:
    parts = [(s, np.zeros(s.shape, np.float32)) for s in map(_rows, specs)]
    with pytest.raises(PartitionError, match=message):
        merge_slices(parts, (4, 2))


def test_merge_refuses_bad_parts() -> None:
    spec = _rows("4 2 0,4:0,2")
    with pytest.raises(PartitionError, match="holds an array of shape"):
        merge_slices([(spec, np.zeros((3, 2)))], (4, 2))
    a, b = even_partition((4, 2), 0, 2)
    with pytest.raises(PartitionError, match="dtype"):
        merge_slices([(a, np.zeros((2, 2), np.float32)), (b, np.zeros((2, 2), np.float64))], (4, 2))
    with pytest.raises(PartitionError, match="no slices"):
        merge_slices([], (4, 2))
    with pytest.raises(SliceSpecError, match="not of"):
        merge_slices([(spec, np.zeros((4, 2)))], (5, 2))


def test_merge_of_an_empty_tensor() -> None:
    spec = SliceSpec((0, 3), ((0, 0), (0, 3)))
    out = merge_slices([(spec, np.zeros((0, 3), np.int8))], (0, 3))
    assert out.shape == (0, 3)
    assert out.dtype == np.int8


# --------------------------------------------------------------------- repartition


def test_repartition_4_to_3_rows() -> None:
    x = np.arange(200 * 16, dtype=np.float32).reshape(200, 16)
    old = even_partition(x.shape, 0, 4)
    new = even_partition(x.shape, 0, 3)
    out = repartition(list(zip(old, split_tensor(x, old), strict=True)), x.shape, new)
    for spec, arr in zip(new, out, strict=True):
        np.testing.assert_array_equal(arr, x[spec.index()])


@settings(deadline=None)
@given(shapes, st.data())
def test_repartition_n_to_m_to_n_is_identity(shape: tuple[int, ...], data: st.DataObject) -> None:
    x = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    first = data.draw(grid_partitions(shape))
    second = data.draw(grid_partitions(shape))
    there = repartition(list(zip(first, split_tensor(x, first), strict=True)), shape, second)
    back = repartition(list(zip(second, there, strict=True)), shape, first)
    for spec, arr in zip(first, back, strict=True):
        np.testing.assert_array_equal(arr, x[spec.index()])


def test_repartition_across_axes() -> None:
    x = np.arange(6 * 8).reshape(6, 8)
    rows = even_partition(x.shape, 0, 3)
    cols = even_partition(x.shape, 1, 4)
    out = repartition(list(zip(rows, split_tensor(x, rows), strict=True)), x.shape, cols)
    np.testing.assert_array_equal(np.concatenate(out, axis=1), x)


# ---------------------------------------------------------------------- plan_slice


def test_plan_slice_direct_when_a_stored_piece_equals_the_target() -> None:
    stored = even_partition((10, 4), 0, 3)
    plan = plan_slice(stored, (10, 4), stored[1])
    assert plan.direct
    assert [p.index for p in plan.pieces] == [1]


def test_plan_slice_from_a_whole_tensor() -> None:
    target = _rows("10 4 4,3:0,4")
    plan = plan_slice(None, (10, 4), target)
    assert not plan.direct
    (piece,) = plan.pieces
    assert piece.source is None
    assert piece.source_box == ((4, 7), (0, 4))
    assert piece.target_box == ((0, 3), (0, 4))
    full = plan_slice(None, (10, 4), SliceSpec.full((10, 4)))
    assert full.direct


def test_plan_slice_row_target_from_column_pieces() -> None:
    stored = even_partition((6, 8), 1, 2)  # columns 0-3 and 4-7
    target = _rows("6 8 2,2:0,8")
    plan = plan_slice(stored, (6, 8), target)
    assert [(p.index, p.source_box, p.target_box) for p in plan.pieces] == [
        (0, ((2, 4), (0, 4)), ((0, 2), (0, 4))),
        (1, ((2, 4), (0, 4)), ((0, 2), (4, 8))),
    ]
    x = np.arange(48).reshape(6, 8)
    got = assemble_slice(plan, split_tensor(x, stored))
    np.testing.assert_array_equal(got, x[2:4])


def test_plan_slice_reports_missing_coverage_and_overlaps() -> None:
    stored = [_rows("10 4 0,4:0,4"), _rows("10 4 4,3:0,4")]  # rows 7-9 missing
    with pytest.raises(PartitionError, match="cover 12 of the 16 elements"):
        plan_slice(stored, (10, 4), _rows("10 4 4,4:0,4"))
    overlapping = [_rows("10 4 0,6:0,4"), _rows("10 4 4,6:0,4")]
    with pytest.raises(PartitionError, match="overlap"):
        plan_slice(overlapping, (10, 4), _rows("10 4 3,3:0,4"))
    with pytest.raises(SliceSpecError):
        plan_slice(stored, (12, 4), _rows("10 4 4,3:0,4"))


def test_plan_slice_empty_target_needs_no_pieces() -> None:
    plan = plan_slice(None, (5, 2), SliceSpec((5, 2), ((3, 0), (0, 2))))
    assert plan.pieces == ()
    assert assemble_slice(plan, [np.zeros((5, 2))]).shape == (0, 2)


def test_assemble_slice_checks_its_inputs() -> None:
    stored = even_partition((6, 2), 0, 2)
    plan = plan_slice(stored, (6, 2), _rows("6 2 2,2:0,2"))
    with pytest.raises(PartitionError, match="missing"):
        assemble_slice(plan, [np.zeros((3, 2))])
    with pytest.raises(PartitionError, match="too small"):
        assemble_slice(plan, [np.zeros((3, 2)), np.zeros((0, 2))])
    direct = plan_slice(stored, (6, 2), stored[1])
    with pytest.raises(PartitionError, match="must be the requested slice"):
        assemble_slice(direct, [np.zeros((3, 2)), np.zeros((2, 2))])
    with pytest.raises(PartitionError, match="no stored arrays"):
        assemble_slice(plan, [])


@settings(deadline=None)
@given(arrays_with_partition(), st.data())
def test_plan_slice_assembles_any_box(
    case: tuple[np.ndarray, list[SliceSpec]], data: st.DataObject
) -> None:
    x, stored = case
    target = data.draw(box_in(x.shape))
    plan = plan_slice(stored, x.shape, target)
    got = assemble_slice(plan, split_tensor(x, stored))
    np.testing.assert_array_equal(got, x[target.index()])


# ---------------------------------------------------------------------- byte_ranges


def test_byte_ranges_first_axis_slice_is_one_run() -> None:
    assert byte_ranges((10, 4), 4, _rows("10 4 4,3:0,4")) == [(64, 48)]
    assert byte_ranges((10, 4), 4, _rows("10 4 4,3:-")) == [(64, 48)]
    assert byte_ranges((10, 4), 8, SliceSpec.full((10, 4))) == [(0, 320)]


def test_byte_ranges_second_axis_slice_is_one_run_per_row() -> None:
    assert byte_ranges((3, 4), 4, _rows("3 4 0,3:1,2")) == [(4, 8), (20, 8), (36, 8)]
    assert byte_ranges((3, 4), 4, _rows("3 4 1,1:1,2")) == [(20, 8)]


def test_byte_ranges_scalar_empty_strings_and_limits() -> None:
    assert byte_ranges((), 4, SliceSpec((), ())) == [(0, 4)]
    assert byte_ranges((4, 2), 4, SliceSpec((4, 2), ((1, 0), (0, 2)))) == []
    assert byte_ranges((4, 2), 0, _rows("4 2 0,2:0,2")) is None  # strings: no fixed size
    rows = MAX_BYTE_RANGES + 1
    assert byte_ranges((rows, 4), 1, SliceSpec((rows, 4), ((0, rows), (0, 2)))) is None
    assert (
        len(
            byte_ranges((rows, 4), 1, SliceSpec((rows, 4), ((0, rows), (0, 2))), max_ranges=rows)
            or []
        )
        == rows
    )
    with pytest.raises(SliceSpecError, match="negative"):
        byte_ranges((4, 2), -1, _rows("4 2 0,2:0,2"))
    with pytest.raises(SliceSpecError):
        byte_ranges((5, 2), 4, _rows("4 2 0,2:0,2"))


@settings(deadline=None)
@given(
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    st.sampled_from([np.int8, np.int16, np.float32, np.complex128]),
    st.data(),
)
def test_byte_ranges_equal_numpy_slicing(
    shape: tuple[int, ...], dtype: type, data: st.DataObject
) -> None:
    x = np.arange(int(np.prod(shape)), dtype=np.int64).astype(dtype).reshape(shape)
    target = data.draw(box_in(shape))
    ranges = byte_ranges(shape, x.itemsize, target, max_ranges=10_000)
    assert ranges is not None
    flat = x.tobytes()
    got = b"".join(flat[off : off + size] for off, size in ranges)
    assert got == np.ascontiguousarray(x[target.index()]).tobytes()
    offsets = [off for off, _ in ranges]
    assert offsets == sorted(offsets)
    assert all(size > 0 for _, size in ranges)


def test_box_of_and_error_hierarchy() -> None:
    assert box_of(_rows("3 8 -:2,4"), (3, 8)) == ((0, 3), (2, 6))
    assert box_of(None, (3, 8)) == ((0, 3), (0, 8))
    assert issubclass(PartitionError, CkptmapError)
    assert issubclass(PartitionError, ValueError)
