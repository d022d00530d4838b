"""The Source contract: every checkpoint reader passes the same cases (ckptmap.readers.source).

:class:`SourceContract` holds the cases; each subclass opens one kind of
source for every golden fixture it covers (``location``) and says what it is.
A new reader adds a subclass here. The expected values are TensorFlow's own
reading of the fixtures (fixtures/golden).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import FIXTURES, GOLDEN_JSONS, Golden, assert_same_values, load_golden

from ckptmap.errors import TensorNotFoundError, UsageError
from ckptmap.readers.source import Source, can_copy_bytes, open_source
from ckptmap.split import box_of
from ckptmap.storage import KvLocation

GOLDENS = {g.id: g for g in (load_golden(p) for p in GOLDEN_JSONS)}
BUNDLES = [
    "ffm_v1/model.ckpt-100",
    "ffm_v1_ps2/model.ckpt-100",
    "dtype_zoo/zoo",
    "tf2_module/ckpt-1",
]
CONVERTED = ["ffm_v1_ps2/model.ckpt-100", "dtype_zoo/zoo"]  # partitioned keys; every dtype


def _part(value: np.ndarray, box: tuple[tuple[int, int], ...]) -> np.ndarray:
    """The box of an array, as an array even for a scalar."""
    index: tuple[Any, ...] = (*[slice(a, b) for a, b in box], Ellipsis)
    part: np.ndarray = value[index]
    return part


def _box_inside(shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """A box away from the edges of a tensor, so it cuts across stored slices."""
    return tuple((d // 3, d - d // 4) if d > 1 else (0, d) for d in shape)


class SourceContract:
    """The cases; a subclass provides ``location`` (a fixture) and the class attributes.

    Attributes:
        FORMAT: the ``format`` the source reports.
        COPIES_BYTES: whether :func:`can_copy_bytes` holds for it.
        HAS_CHECKSUMS: whether :meth:`Source.verify` checks anything (otherwise
            it is a usage error).
    """

    FORMAT: ClassVar[str]
    COPIES_BYTES: ClassVar[bool]
    HAS_CHECKSUMS: ClassVar[bool] = True

    @pytest.fixture
    def golden(self, golden_id: str) -> Golden:
        return GOLDENS[golden_id]

    @pytest.fixture
    def source(self, location: str) -> Iterator[Source]:
        with open_source(location) as opened:
            yield opened

    def test_it_is_a_source_of_its_format(self, source: Source) -> None:
        assert isinstance(source, Source)
        assert source.format == self.FORMAT
        assert can_copy_bytes(source) is self.COPIES_BYTES
        assert source.byte_order in ("<", ">")
        assert source.url
        assert source.where
        assert isinstance(list(source.assets), list)

    def test_keys_and_specs_agree_with_tensorflow(self, source: Source, golden: Golden) -> None:
        expected = {t.name: (t.dtype, t.shape) for t in golden.tensors}
        keys = source.keys()
        assert sorted(keys) == sorted(expected)
        assert keys == sorted(keys, key=lambda k: k.encode("utf-8", "surrogateescape"))
        assert list(source) == keys
        assert len(source) == len(keys)
        assert all(key in source for key in keys)
        specs = source.specs()
        assert list(specs) == keys
        for key, spec in specs.items():
            assert (spec.dtype.name, spec.shape) == expected[key], key
            assert spec.key == key
            assert source.slices(key) == spec.slices

    def test_read_equals_tensorflow(self, source: Source, golden: Golden) -> None:
        for tensor in golden.tensors:
            assert_same_values(source.read(tensor.name), tensor.value)

    def test_read_box_of_a_partitioned_tensor_is_a_slice_of_it(
        self, source: Source, golden: Golden
    ) -> None:
        partitioned = [t for t in golden.tensors if source.slices(t.name)]
        if golden.id in ("ffm_v1_ps2/model.ckpt-100", "dtype_zoo/zoo"):
            assert partitioned, "the fixture has partitioned tensors"
        for tensor in partitioned:
            boxes = [_box_inside(tensor.shape), tuple((0, d) for d in tensor.shape)]
            boxes += [box_of(spec, tensor.shape) for spec in source.slices(tensor.name)]
            for box in boxes:
                part = source.read_box(tensor.name, box)
                assert_same_values(part, _part(tensor.value, box))

    def test_read_box_of_any_tensor(self, source: Source, golden: Golden) -> None:
        for tensor in golden.tensors:
            box = _box_inside(tensor.shape)
            part = source.read_box(tensor.name, box)
            assert_same_values(part, _part(tensor.value, box))
            empty = tuple((0, 0) for _ in tensor.shape)
            if tensor.shape:
                assert source.read_box(tensor.name, empty).size == 0

    def test_values_are_read_only(self, source: Source, golden: Golden) -> None:
        tensor = max(golden.tensors, key=lambda t: int(np.prod(t.shape)))
        assert not source.read(tensor.name).flags.writeable
        assert not source.read_box(tensor.name, _box_inside(tensor.shape)).flags.writeable

    def test_a_box_outside_the_tensor_is_a_usage_error(
        self, source: Source, golden: Golden
    ) -> None:
        tensor = next(t for t in golden.tensors if t.shape)
        outside = tuple((0, d + 1) for d in tensor.shape)
        with pytest.raises(UsageError, match="does not fit"):
            source.read_box(tensor.name, outside)
        with pytest.raises(UsageError, match="does not fit"):
            source.read_box(tensor.name, ((0, 1),) * (len(tensor.shape) + 1))

    def test_verify(self, source: Source) -> None:
        if self.HAS_CHECKSUMS:
            assert source.verify() == source.keys()
        else:
            with pytest.raises(UsageError, match="has none"):
                source.verify()

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda s: s.read("no/such/key"), id="read"),
            pytest.param(lambda s: s.read_box("no/such/key", ()), id="read_box"),
            pytest.param(lambda s: s.slices("no/such/key"), id="slices"),
        ],
    )
    def test_a_missing_key_is_not_found(self, source: Source, call: Any) -> None:
        assert "no/such/key" not in source
        with pytest.raises(TensorNotFoundError) as info:
            call(source)
        assert info.value.key == "no/such/key"
        assert "no tensor 'no/such/key'" in str(info.value)

    def test_the_context_manager_closes(self, location: str) -> None:
        opened = open_source(location)
        closed: list[bool] = []
        close = opened.close

        def counted_close() -> None:
            closed.append(True)
            close()

        opened.close = counted_close  # type: ignore[method-assign]
        with opened as entered:
            assert entered is opened
        assert closed == [True]
        with pytest.raises(RuntimeError), opened:
            raise RuntimeError("inside")
        assert closed == [True, True]


class TestLocalBundle(SourceContract):
    FORMAT = "tf"
    COPIES_BYTES = True

    @pytest.fixture(params=BUNDLES)
    def golden_id(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def location(self, golden: Golden) -> str:
        return str(golden.prefix)


_UPLOADS = itertools.count()


class TestBundleAtAUrl(SourceContract):
    """The same bundles in a ``memory://`` store: every byte is read by range."""

    FORMAT = "tf"
    COPIES_BYTES = True

    @pytest.fixture(params=BUNDLES)
    def golden_id(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def location(self, golden: Golden) -> str:
        url = f"memory://source-contract/{next(_UPLOADS)}/"
        store = KvLocation(url)
        folder = golden.prefix.parent
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                store.write(path.relative_to(folder).as_posix(), path.read_bytes())
        return url + golden.prefix.name


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A zarr3 store converted from each fixture in CONVERTED."""
    pytest.importorskip("tensorstore")
    from ckptmap.convert import convert

    out = {}
    for golden_id in CONVERTED:
        path = tmp_path_factory.mktemp("contract") / "store.zarr"
        convert(GOLDENS[golden_id].prefix, path)
        out[golden_id] = path
    return out


class TestZarrStore(SourceContract):
    """A zarr3 store written by ``ckptmap convert`` from the fixture."""

    FORMAT = "zarr3"
    COPIES_BYTES = False
    HAS_CHECKSUMS = False

    @pytest.fixture(params=CONVERTED)
    def golden_id(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def location(self, golden_id: str, stores: dict[str, Path]) -> str:
        return str(stores[golden_id])

    def test_it_names_its_original_checkpoint(self, source: Source, golden: Golden) -> None:
        assert source.name == golden.prefix.name
        assert source.where == f"{source.url}/zarr.json"


def test_step_with_a_zarr_store_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("tensorstore")
    from ckptmap.convert import convert

    store = tmp_path / "store.zarr"
    convert(FIXTURES / "dtype_zoo" / "zoo", store)
    with pytest.raises(UsageError, match="--step picks a checkpoint in a model folder"):
        open_source(store, step=1)


class TestV1Checkpoint(SourceContract):
    """A TensorFlow V1 checkpoint (one table file; two for the sharded one)."""

    FORMAT = "tf-v1"
    COPIES_BYTES = False

    @pytest.fixture(params=["tf1_v1", "tf1_v1_sharded"])
    def golden_id(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def golden(self, golden_id: str) -> Golden:
        return load_golden(FIXTURES / "golden_v1" / golden_id / "model.ckpt-3.json")

    @pytest.fixture
    def location(self, golden_id: str) -> str:
        return str(FIXTURES / golden_id)
