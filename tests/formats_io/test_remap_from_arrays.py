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


@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_rules_map_the_new_model_onto_renamed_keys_of_an_array_file(
    tmp_path: Path, kind: str
) -> None:
    """A state dict whose scope was renamed: check names what is missing, a rule resolves it."""
    import json

    import numpy as np
    from click.testing import CliRunner

    from ckptmap import check
    from ckptmap.cli import main

    golden = npz_part(GOLDEN)
    arrays = {t.name.replace("ffm/bias_net/", "ffm/old_bias/"): t.value for t in golden.tensors}
    assert "ffm/old_bias/w" in arrays
    old = tmp_path / f"m.{kind}"  # written by the format's own producer, no ckptmap manifest
    if kind == "npz":
        np.savez(old, **arrays)  # type: ignore[arg-type]
    else:
        from safetensors.numpy import save_file

        save_file({k: np.array(v, order="C") for k, v in arrays.items()}, str(old))
    graph = FIXTURES / "ffm_v1_ps2" / "graph.pbtxt"
    rule = "^ffm/bias_net/(.*)$=ffm/old_bias/{}"
    assert not check(old, graph).ok
    assert check(old, graph, rules=[rule]).ok
    result = CliRunner().invoke(main, ["check", "--old", str(old), "--new-graph", str(graph)])
    assert result.exit_code == 1
    assert "ffm/bias_net/w" in result.output
    suggested = CliRunner().invoke(
        main, ["check", "--old", str(old), "--new-graph", str(graph), "--json"]
    )
    assert json.loads(suggested.stdout)["suggested_rules"] == [rule]  # found structurally
    out = tmp_path / "out" / "model.ckpt-100"
    remap(old, graph, out, rules=[rule], continue_training=True)
    with open_source(out) as written:
        for t in golden.tensors:
            assert_same_values(written.read(t.name), t.value)
