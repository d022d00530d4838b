"""Shared fixtures and the TensorFlow-marker policy.

Tests marked ``@pytest.mark.tf`` need TensorFlow. Without it they are skipped,
unless ``CKPTMAP_REQUIRE_TF=1`` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

_HAVE_TF = importlib.util.find_spec("tensorflow") is not None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("tf") is None or _HAVE_TF:
        return
    if os.environ.get("CKPTMAP_REQUIRE_TF") == "1":
        pytest.fail("TensorFlow is required (CKPTMAP_REQUIRE_TF=1) but not installed")
    pytest.skip("needs TensorFlow (pip install ckptmap[tf])")


@pytest.fixture(scope="session")
def tf():  # type: ignore[no-untyped-def]
    """The tensorflow module, imported once, quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow

    return tensorflow


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def fixture_copy(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Copy a fixture folder into tmp_path and return the copy's path."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(FIXTURES / name, dst)
        return dst

    return copy


@pytest.fixture
def opened_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The resolved path of every file this process opens from now on (os.open, open,
    io.open): the proof that a command read nothing outside a folder (tests run as
    root, so file modes prove nothing)."""
    opened: list[str] = []
    real_os_open = os.open

    def os_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(os.path.realpath(os.fspath(path)))
        return real_os_open(path, *args, **kwargs)

    def recording(real: Callable[..., object]) -> Callable[..., object]:
        def wrapper(file, *args, **kwargs):  # type: ignore[no-untyped-def]
            if isinstance(file, (str, bytes, os.PathLike)):
                opened.append(os.path.realpath(os.fsdecode(file)))
            return real(file, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", recording(builtins.open))
    monkeypatch.setattr(io, "open", recording(io.open))
    return opened
