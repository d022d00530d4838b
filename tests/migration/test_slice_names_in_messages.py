"""Messages name a stored slice as ``name[slice spec]``, never by its raw index key.

A slice entry's index key is ``00``, the tensor key in OrderedCode and the
extents as OrderedCode numbers; printed as it is it shows NUL bytes and lone
surrogates. One byte flipped inside the first stored slice of
``ffm/embeddings`` (TF-written ``ffm_v1``): ``convert`` and ``remap`` must name
``ffm/embeddings[0,50:0,16]``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES, flip_byte, table_entries

from ckptmap.cli import main
from ckptmap.formats.slice_key import encode_slice_key
from ckptmap.proto import ckptmap_tf_pb2

SLICE = encode_slice_key(b"ffm/embeddings", [(0, 50), (0, 16)])
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    old = tmp_path / "ffm_v1"
    shutil.copytree(FIXTURES / "ffm_v1", old)
    value = dict(table_entries(old / "model.ckpt-100.index"))[SLICE]
    entry = ckptmap_tf_pb2.BundleEntryProto.FromString(value)
    flip_byte(old / "model.ckpt-100.data-00000-of-00001", entry.offset + 5)
    return old


@pytest.mark.parametrize(
    "command",
    [
        ("convert", "--to", "zarr3", "--out", "{out}/store.zarr"),
        ("remap", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt", "--rule", RULE,
         "--out", "{out}/"),
        ("remap", "--new-graph", FIXTURES / "ffm_v1" / "graph.pbtxt", "--out", "{out}/"),
    ],
    ids=["convert", "remap-repartition", "remap-copy"],
)  # fmt: skip
def test_a_corrupt_slice_is_named_by_its_tensor_and_spec(
    damaged: Path, tmp_path: Path, command: tuple[str | Path, ...]
) -> None:
    out = tmp_path / "out"
    name, *rest = (str(a).replace("{out}", str(out)) for a in command)
    result = run(name, "--old", damaged, *rest)
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "CRC32C mismatch" in line
    assert "ffm/embeddings[0,50:0,16]" in line
    assert "\x00" not in line
    assert "\\x00" not in line
    assert "\\udc" not in line.encode("unicode_escape").decode()
    assert not out.exists() or not any(out.iterdir())
