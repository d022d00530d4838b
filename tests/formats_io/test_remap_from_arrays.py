"""A safetensors file or npz archive as the old checkpoint of ``remap``: TF restores the result."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES, assert_same_values
from readers.test_source_contract import GOLDENS

from ckptmap import remap
from ckptmap.readers.source import open_source
from formats_io._arrays import npz_part, write_npz, write_safetensors

GOLDEN = GOLDENS["ffm_v1_ps2/model.ckpt-100"]


@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_remap_from_an_array_file_gives_the_fixture_back(tmp_path: Path, kind: str) -> None:
    golden = npz_part(GOLDEN)  # every ffm tensor is numeric
    write = write_safetensors if kind == "safetensors" else write_npz
    old = write(golden, tmp_path / f"model.{kind}")
    out = tmp_path / "out" / "model.ckpt-100"
    remap(old, FIXTURES / "ffm_v1_ps2" / "graph.pbtxt", out, continue_training=True)
    with open_source(out) as written, open_source(GOLDEN.prefix) as original:
        assert written.keys() == original.keys()
        for key in original:
            assert set(written.slices(key)) == set(original.slices(key)), key
            assert_same_values(written.read(key), original.read(key))


@pytest.mark.tf
def test_tensorflow_restores_a_remap_from_safetensors(tmp_path: Path, tf) -> None:  # type: ignore[no-untyped-def]
    golden = npz_part(GOLDEN)
    old = write_safetensors(golden, tmp_path / "model.safetensors")
    out = tmp_path / "out" / "model.ckpt-100"
    remap(old, FIXTURES / "ffm_v1_ps2" / "graph.pbtxt", out, continue_training=True)
    reader = tf.train.load_checkpoint(str(out))
    for tensor in golden.tensors:
        assert_same_values(reader.get_tensor(tensor.name), tensor.value)
