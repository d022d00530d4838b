"""How ``remap`` handles CRC32C: each source byte read once, corruption never masked.

Real fixtures (written by TensorFlow) with one byte flipped in a copy of the old
checkpoint. In ``ffm_v1`` -> ``ffm_v2`` the embedding (and its Adam slots) is
re-partitioned, so its new pieces are cut from runs of the old slices
(``ranges``); the dense layers are renamed only (``copy``: checked against
their stored CRC, then copied by the kernel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pytest
from helpers import FIXTURES

from ckptmap.errors import CorruptCheckpointError
from ckptmap.formats.crc import unmask_crc
from ckptmap.migration import execute, plan_remap
from ckptmap.readers import open_checkpoint

RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"
NEW = FIXTURES / "ffm_v2" / "graph.pbtxt"
PREFIX = "model.ckpt-100"


def flip_byte(old: Path, key: str, *, slice_index: int | None = None, at: int = 5) -> Path:
    """Flip one byte inside the stored bytes of ``key`` (or of one stored slice of it)."""
    with open_checkpoint(old / PREFIX) as ckpt:
        entry = ckpt.entry(key) if slice_index is None else ckpt.slice_entries(key)[slice_index][1]
        path = ckpt.shard_path(entry.shard_id)
        pos = entry.offset + at
    with open(path, "r+b") as f:
        f.seek(pos)
        byte = f.read(1)
        f.seek(pos)
        f.write(bytes([byte[0] ^ 0x5A]))
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_output_piece_carries_the_crc_of_its_bytes(tmp_path: Path) -> None:
    plan = plan_remap(FIXTURES / "ffm_v1", NEW, rules=[RULE])
    result = execute(plan, tmp_path / "out" / "m")
    with open_checkpoint(result.prefix) as out:
        for key in out:
            pieces = [e for _, e in out.slice_entries(key)] or [out.entry(key)]
            for entry in pieces:
                with open(out.shard_path(entry.shard_id), "rb") as f:
                    f.seek(entry.offset)
                    data = f.read(entry.size)
                assert unmask_crc(entry.crc32c) == google_crc32c.value(data), key


def test_a_corrupt_source_of_cut_pieces_stops_the_remap(tmp_path: Path, fixture_copy: Any) -> None:
    old = fixture_copy("ffm_v1")
    shard = flip_byte(old, "ffm/embeddings/Adam", slice_index=1, at=37)
    plan = plan_remap(old, NEW, rules=[RULE])
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError) as caught:
        execute(plan, f"{out}/")
    message = str(caught.value)
    assert "'ffm/embeddings/Adam[50,50:0,16]'" in message  # name[slice spec]
    assert "CRC32C mismatch" in message
    assert caught.value.path == str(shard)
    assert "\n" not in message
    assert leftovers(out) == []  # nothing published, no temporary files


def test_without_verify_a_corrupt_cut_source_is_not_checked(
    tmp_path: Path, fixture_copy: Any
) -> None:
    old = fixture_copy("ffm_v1")
    flip_byte(old, "ffm/embeddings", slice_index=2)
    plan = plan_remap(old, NEW, rules=[RULE])
    result = execute(plan, tmp_path / "out" / "m", verify=False)
    with open_checkpoint(result.prefix) as out, open_checkpoint(old / PREFIX) as src:
        np.testing.assert_array_equal(
            out.read("ffm/embeddings", verify=True), src.read("ffm/embeddings")
        )


def test_a_corrupt_copied_tensor_is_refused_before_anything_is_written(
    tmp_path: Path, fixture_copy: Any
) -> None:
    old = fixture_copy("ffm_v1")
    shard = flip_byte(old, "ffm/tower/tower/dense_1/kernel", at=100)  # -> ffm/tower/dense/kernel
    plan = plan_remap(old, NEW, rules=[RULE])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CorruptCheckpointError) as info:
        execute(plan, out / "m")  # copied unchanged, but its stored CRC is checked first
    assert str(info.value).startswith(
        f"{shard}: tensor 'ffm/tower/tower/dense_1/kernel': CRC32C mismatch in bytes "
    )
    assert sorted(p.name for p in out.iterdir()) == []  # not even a staging folder


def test_without_verify_a_corrupt_copy_stays_detectable_in_the_output(
    tmp_path: Path, fixture_copy: Any
) -> None:
    old = fixture_copy("ffm_v1")
    flip_byte(old, "ffm/tower/tower/dense_1/kernel", at=100)  # -> ffm/tower/dense/kernel
    plan = plan_remap(old, NEW, rules=[RULE])
    result = execute(plan, tmp_path / "out" / "m", verify=False)  # copies are not read
    with open_checkpoint(result.prefix) as out:
        with pytest.raises(CorruptCheckpointError, match="ffm/tower/dense/kernel"):
            out.read("ffm/tower/dense/kernel", verify=True)
        out.read("ffm/tower/dense/bias", verify=True)  # the rest is intact
