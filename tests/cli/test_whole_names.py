"""Tables never cut a key: they fold it, on an 80-column terminal; piped, they are full width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ckptmap.cli._render import KEY_FLOOR, TEXT_FLOOR, fit_widths

from ._terminal import (
    assert_terminal_left_clean,
    run_piped,
    run_pty,
    table_column,
    table_lines,
)

ROOT = Path(__file__).resolve().parents[2]
OLD = ROOT / "fixtures" / "ffm_v1"
NEW_GRAPH = ROOT / "fixtures" / "ffm_v2" / "graph.pbtxt"
UNRESOLVED = ["ffm/global_bias/w", "ffm/global_bias/w/Adam", "ffm/global_bias/w/Adam_1"]
LONG_KEY = "/".join(f"scope_{i:02d}" for i in range(34))[:300]
SHORT_KEYS = ["ffm/global_bias/w", "ffm/global_bias/w/Adam", "ffm/global_bias/w/Adam_1"]


@pytest.fixture(scope="module")
def long_key_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short keys and one of 300 characters."""
    from ckptmap.writers.tf_bundle import BundleWriter

    prefix = tmp_path_factory.mktemp("long") / "model.ckpt-1"
    with BundleWriter(prefix) as writer:
        for i, key in enumerate([*SHORT_KEYS, LONG_KEY]):
            writer.add_array(key, np.full((200, 1), i, dtype=np.float32))
        writer.commit()
    return prefix


def test_the_long_key_is_300_characters() -> None:
    assert len(LONG_KEY) == 300


def test_check_at_80_columns_shows_adam_and_adam_1_whole(tmp_path: Path) -> None:
    run = run_pty(["check", "--old", OLD, "--new-graph", NEW_GRAPH], columns=80, cwd=tmp_path)
    assert run.code == 1
    assert_terminal_left_clean(run.raw)
    assert max(map(len, table_lines(run.lines, "new key", "dtype"))) <= 80
    assert sorted(table_column(run.lines, "new key", "dtype")) == UNRESOLVED
    for key in UNRESOLVED:  # short keys are not even folded
        assert any(line.strip().startswith(f"{key} ") for line in run.lines), key
    assert "…" not in run.text


def test_remap_failure_table_on_a_terminal_keeps_keys_whole(tmp_path: Path) -> None:
    args = ["remap", "--old", OLD, "--new-graph", NEW_GRAPH, "--out", f"{tmp_path}/new/"]
    run = run_pty(args, columns=80, cwd=tmp_path)
    assert run.code == 1
    assert "…" not in run.text
    for key in UNRESOLVED:
        assert key in run.text


def test_inspect_at_80_columns_folds_long_keys_and_keeps_the_other_columns(tmp_path: Path) -> None:
    from ckptmap.inspect import inspect_checkpoint

    names = [t.name for t in inspect_checkpoint(OLD).tensors]
    run = run_pty(["inspect", OLD], columns=80, cwd=tmp_path)
    assert run.code == 0
    table = table_lines(run.lines, "name", "dtype")
    assert max(map(len, table)) <= 80
    assert table_column(run.lines, "name", "dtype", footer=True) == names
    assert " 12.5 KiB  4 on axis 0 " in run.text  # size and slices unwrapped
    assert "…" not in run.text


def test_inspect_at_80_columns_folds_only_the_long_key(
    long_key_checkpoint: Path, tmp_path: Path
) -> None:
    run = run_pty(["inspect", long_key_checkpoint], columns=80, cwd=tmp_path)
    assert run.code == 0
    assert_terminal_left_clean(run.raw)
    assert max(map(len, table_lines(run.lines, "name", "dtype"))) <= 80
    assert sorted(table_column(run.lines, "name", "dtype", footer=True)) == sorted(
        [*SHORT_KEYS, LONG_KEY]
    )
    for key in SHORT_KEYS:  # the other rows stay one line each
        assert any(line.strip().startswith(f"{key} ") for line in run.lines), key
    assert "…" not in run.text


def test_inspect_with_a_columns_variable(long_key_checkpoint: Path, tmp_path: Path) -> None:
    run = run_pty(
        ["inspect", long_key_checkpoint], env={"COLUMNS": "80"}, columns=132, cwd=tmp_path
    )
    assert run.code == 0
    assert max(map(len, table_lines(run.lines, "name", "dtype"))) <= 80
    assert sorted(table_column(run.lines, "name", "dtype", footer=True)) == sorted(
        [*SHORT_KEYS, LONG_KEY]
    )


def test_piped_tables_are_full_width(long_key_checkpoint: Path, tmp_path: Path) -> None:
    run = run_piped(["inspect", long_key_checkpoint], env={"COLUMNS": "80"}, cwd=tmp_path)
    assert run.code == 0
    lines = run.stdout.splitlines()
    for key in [*SHORT_KEYS, LONG_KEY]:  # each key whole, on its row's one line
        assert any(line.split()[:2] == [key, "float32"] for line in lines if line.strip()), key
    assert "…" not in run.stdout


def test_piped_remap_failure_table_is_full_width(tmp_path: Path) -> None:
    args = ["remap", "--old", OLD, "--new-graph", NEW_GRAPH, "--out", f"{tmp_path}/new/"]
    run = run_piped(args, cwd=tmp_path)
    assert run.code == 1
    assert "…" not in run.stderr
    rows = [line.split() for line in run.stderr.splitlines()]
    for key in UNRESOLVED:
        assert any(row[:1] == [key] for row in rows), key


# -- the width allocation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "keys", "room", "expected"),
    [
        # fits: unchanged
        ([[10], [7], [30]], {0}, 60, [10, 7, 30]),
        # text columns give way first, the widest first
        ([[24], [7], [5], [40], [60]], {0}, 70, [24, 7, 5, 17, 17]),
        # a key far longer than the rest folds at the width of the usual keys
        ([[22, 24, 300], [7], [8]], {0}, 68, [53, 7, 8]),
        ([[22, 24, 300], [7], [8], [40]], {0}, 60, [24, 7, 8, 21]),
        # then text columns to their floor, then keys to theirs
        ([[40], [40], [30]], {0, 1}, 50, [19, 19, TEXT_FLOOR]),
        ([[40], [40], [30]], {0, 1}, 44, [KEY_FLOOR, KEY_FLOOR, TEXT_FLOOR]),
        # then all of them, the widest first
        ([[40], [40], [30]], {0, 1}, 40, [14, 14, TEXT_FLOOR]),
        # short columns are never widened
        ([[3], [100]], {0}, 20, [3, 17]),
    ],
)
def test_fit_widths(cells: list[list[int]], keys: set[int], room: int, expected: list[int]) -> None:
    widths = fit_widths(cells, keys, room)
    assert widths == expected
    assert sum(widths) <= max(room, len(cells))
