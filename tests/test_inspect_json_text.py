"""``InspectReport.to_json_text`` equals ``json.dumps(report.to_json())`` (the CLI prints it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckptmap.inspect import inspect_checkpoint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
INDEXES = sorted(p for p in FIXTURES.rglob("*.index") if "golden" not in p.parts)


@pytest.mark.parametrize("index", INDEXES, ids=lambda p: str(p.relative_to(FIXTURES)))
@pytest.mark.parametrize("stats", [False, True], ids=["listing", "stats"])
def test_text_is_json_dumps(index: Path, stats: bool) -> None:
    report = inspect_checkpoint(index, stats=stats)
    assert report.to_json_text() == json.dumps(report.to_json())


def test_names_escaped_as_json_does(tmp_path: Path) -> None:
    from ckptmap.writers.tf_bundle import BundleWriter

    np = pytest.importorskip("numpy")
    prefix = tmp_path / "model.ckpt"
    with BundleWriter(prefix) as writer:
        for key in ('a"quote', "back\\slash", "tab\t", "é/ü", "\u2603", "ctl\x01"):
            writer.add_array(key, np.zeros((2, 3), np.float32))
        writer.commit()
    report = inspect_checkpoint(prefix)
    assert report.to_json_text() == json.dumps(report.to_json())
    assert json.loads(report.to_json_text())["totals"]["tensors"] == 6
