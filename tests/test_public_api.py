"""The library surface re-exported by ``ckptmap`` (the README's library example)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import FIXTURES

import ckptmap

RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


def test_everything_in_all_resolves() -> None:
    for name in ckptmap.__all__:
        assert getattr(ckptmap, name) is not None, name
    assert sorted(dir(ckptmap)) == sorted(ckptmap.__all__)


def test_check_and_remap_are_functions_of_the_migration_package() -> None:
    import ckptmap.migration

    assert callable(ckptmap.check)
    assert callable(ckptmap.remap)
    assert ckptmap.check is ckptmap.migration.check
    assert ckptmap.plan_remap is ckptmap.migration.plan_remap
    assert type(ckptmap).__name__ == "module"  # no module-class swap


def test_readme_library_example(tmp_path: Path) -> None:
    old, new = FIXTURES / "ffm_v1", FIXTURES / "ffm_v2" / "graph.pbtxt"
    report = ckptmap.check(old, new, rules=[RULE])
    assert report.ok
    result = ckptmap.remap(old, new, f"{tmp_path}/", rules=[RULE])
    with ckptmap.open_checkpoint(tmp_path) as ckpt, ckptmap.open_checkpoint(old) as src:
        np.testing.assert_array_equal(
            ckpt.read("ffm/tower/dense/kernel"), src.read("ffm/tower/tower/dense_1/kernel")
        )
    assert result.prefix == tmp_path / "model.ckpt-100"


def test_import_is_light() -> None:
    heavy = "('numpy', 'tensorflow', 'rich.table', 'tensorstore')"
    code = f"import sys, ckptmap, ckptmap.cli; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
