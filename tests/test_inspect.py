"""The library behind ``ckptmap inspect`` (ckptmap/inspect.py): one report for every source."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES

from ckptmap.errors import TensorNotFoundError, UsageError
from ckptmap.inspect import inspect_checkpoint

pytest.importorskip("tensorstore")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ckptmap.convert import convert

    out = tmp_path_factory.mktemp("inspect") / "ffm_v1_ps2.zarr"
    convert(FIXTURES / "ffm_v1_ps2", out)
    return out


def _listing(report: object) -> list[tuple[str, str, tuple[int, ...], tuple[str, ...]]]:
    return [(t.name, t.dtype, t.shape, t.slices) for t in report.tensors]  # type: ignore[attr-defined]


def test_a_store_lists_like_its_checkpoint(store: Path) -> None:
    from_ckpt = inspect_checkpoint(FIXTURES / "ffm_v1_ps2")
    from_store = inspect_checkpoint(store)
    assert (from_ckpt.format, from_store.format) == ("tf", "zarr3")
    assert _listing(from_store) == _listing(from_ckpt)
    assert from_store.index == store / "zarr.json"
    assert from_store.shards == ()
    assert from_ckpt.num_shards == len(from_ckpt.shards) == 2


def test_stats_and_values_agree_between_sources(store: Path) -> None:
    key = "ffm/embeddings"
    ckpt = inspect_checkpoint(FIXTURES / "ffm_v1_ps2", tensor=key, stats=True)
    zarr = inspect_checkpoint(store, tensor=key, stats=True)
    assert ckpt.values is not None
    assert zarr.values is not None
    assert (ckpt.values == zarr.values).all()
    a, b = ckpt.tensors[0].stats, zarr.tensors[0].stats
    assert a is not None
    assert b is not None
    assert (a.min, a.max, a.nan, a.inf) == (b.min, b.max, b.nan, b.inf)
    assert a.mean == pytest.approx(b.mean)  # summed slice by slice vs whole: last bits differ
    assert a.std == pytest.approx(b.std)


def test_verify_is_for_checkpoints(store: Path) -> None:
    assert inspect_checkpoint(FIXTURES / "ffm_v1_ps2", verify=True).verified
    with pytest.raises(UsageError, match="a zarr store has none"):
        inspect_checkpoint(store, verify=True)


@pytest.mark.parametrize("where", ["ckpt", "store"])
def test_an_unknown_tensor(where: str, store: Path) -> None:
    path = FIXTURES / "ffm_v1_ps2" if where == "ckpt" else store
    with pytest.raises(TensorNotFoundError, match="no tensor 'nope'"):
        inspect_checkpoint(path, tensor="nope")


def test_a_step_with_a_store_is_a_usage_error(store: Path) -> None:
    with pytest.raises(UsageError, match="--step"):
        inspect_checkpoint(store, step=100)
