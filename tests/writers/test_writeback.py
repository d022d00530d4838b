"""Writeback: the disk writes of a copied range start while the next range is copied."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ckptmap.writers._tensor_bytes import Writeback, _sync_file_range


def test_ranges_handed_to_writeback_are_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with Writeback(fd) as writeback:
            for start in range(0, len(data), 1024 * 1024):
                chunk = data[start : start + 1024 * 1024]
                os.pwrite(fd, chunk, start)
                writeback.start(start, len(chunk))
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_linux_uses_sync_file_range() -> None:
    assert _sync_file_range() is not None


def test_a_failing_writeback_is_only_a_hint(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "x", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        with Writeback(fd) as writeback:  # a read-only descriptor: whatever the kernel says
            writeback.start(0, 4096)  # never raises
            writeback.start(0, 0)  # nothing to write: no call at all
    finally:
        os.close(fd)
