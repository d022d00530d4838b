"""TensorBytes' CRC32C pass: data mapped a window at a time, checksummed in place."""

from __future__ import annotations

import mmap
import os
import random
from pathlib import Path

import google_crc32c
import pytest

from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.writers import _tensor_bytes
from ckptmap.writers._tensor_bytes import TensorBytes

FIXTURE = Path(__file__).resolve().parents[1].parent / "fixtures" / "ffm_v1"


def test_windows_cover_any_range_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranges that start off a page, span several windows or end inside one."""
    window = 4 * mmap.ALLOCATIONGRANULARITY
    monkeypatch.setattr(_tensor_bytes, "_CRC_WINDOW", window)
    data = os.urandom(9 * window + 123)
    path = tmp_path / "shard.bin"
    path.write_bytes(data)
    rng = random.Random(3)
    ranges = [(0, len(data)), (1, window), (window - 1, 2), (len(data) - 1, 1), (17, 0)]
    ranges += [(o, rng.randrange(len(data) - o + 1)) for o in rng.sample(range(len(data)), 40)]
    with open_checkpoint(FIXTURE) as ckpt:
        stream = TensorBytes(ckpt)
        src = stream._crc_files.open(path)
        for offset, size in ranges:
            got = stream._mapped_crc(src, offset, size, f"range {offset}+{size}")
            assert got == google_crc32c.value(data[offset : offset + size]), (offset, size)
    assert path.read_bytes() == data  # the private mapping wrote nothing back
