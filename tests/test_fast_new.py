"""ckptmap._fast_new: the fast constructors build the objects the classes build."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from ckptmap._fast_new import fast_constructor
from ckptmap.dtypes import dtype_from_name
from ckptmap.inspect import TensorInfo, _make_info
from ckptmap.readers._bundle_index import TensorEntry, _make_entry
from ckptmap.spec import GraphVariable, TensorSpec, make_graph_variable, make_tensor_spec
from ckptmap.split import SliceSpec

F32 = dtype_from_name("float32")
PART = SliceSpec.parse("8 4 0,4:-")


@pytest.mark.parametrize(
    ("cls", "make", "args"),
    [
        (TensorSpec, make_tensor_spec, ("a/w", F32, (8, 4))),
        (TensorSpec, make_tensor_spec, ("a/w", F32, (8, 4), (PART,), True)),
        (GraphVariable, make_graph_variable, ("a/w/part_0", "a/w", F32, (4, 4), PART, False)),
        (TensorEntry, _make_entry, ("a/w", F32, (8, 4), 0, 16, 128, 7)),
        (TensorInfo, _make_info, ("a/w", "float32", (8, 4), 128, 0)),
    ],
)
def test_the_same_object_as_the_class_builds(
    cls: type, make: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    built, fast = cls(*args), make(*args)
    assert type(fast) is cls
    assert fast == built
    assert hash(fast) == hash(built)
    names = [f.name for f in dataclasses.fields(cls)]
    assert [getattr(fast, n) for n in names] == [getattr(built, n) for n in names]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(fast, dataclasses.fields(cls)[0].name, "b")  # still frozen


def test_keywords_and_defaults_work_as_for_the_class() -> None:
    fast = make_tensor_spec(key="k", dtype=F32, shape=(), dynamic=True)
    assert fast == TensorSpec("k", F32, (), dynamic=True)
    with pytest.raises(TypeError):
        make_tensor_spec("k", F32)  # type: ignore[call-arg]  # a field without default


def test_refuses_classes_it_cannot_build_alike() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            assert self.a > 0

    for cls in (NoSlots, Factory, Checked, int):
        with pytest.raises(TypeError):
            fast_constructor(cls)
