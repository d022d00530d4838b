"""Every message about a stored slice names it ``name[slice spec]``, never by its
raw index key (``00``, OrderedCode bytes, lone surrogates): issue 15 item 6.

Copies of the TF-written ``ffm_v1`` are damaged in the first stored slice of
``ffm/embeddings`` (rows 0-49 of [200, 16]): a flipped data byte (CRC32C), a
data file cut inside it, or a slice entry whose shape disagrees with its
spec; each command that meets it exits 3 with one line and writes nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES, flip_byte, rewrite_entry, table_entries, truncate, write_table

from ckptmap.cli import main
from ckptmap.formats.slice_key import decode_slice_key, encode_slice_key, key_label
from ckptmap.proto import ckptmap_tf_pb2

SLICE = encode_slice_key(b"ffm/embeddings", [(0, 50), (0, 16)])
LABEL = "'ffm/embeddings[0,50:0,16]'"
DATA = "model.ckpt-100.data-00000-of-00001"
INDEX = "model.ckpt-100.index"


def _run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _entry(old: Path) -> Any:
    return ckptmap_tf_pb2.BundleEntryProto.FromString(dict(table_entries(old / INDEX))[SLICE])


def _flip(old: Path) -> None:
    flip_byte(old / DATA, _entry(old).offset + 5)


def _cut(old: Path) -> None:
    truncate(old / DATA, _entry(old).offset + 100)


def _reshape(old: Path) -> None:
    def change(entry: Any) -> None:
        entry.shape.dim[0].size = 49

    rewrite_entry(old / INDEX, SLICE, change)


DAMAGE: dict[str, Callable[[Path], None]] = {"crc": _flip, "cut": _cut, "shape": _reshape}
COMMANDS = {
    "inspect-verify": ("inspect", "{old}", "--verify"),
    "inspect-tensor": ("inspect", "{old}", "--tensor", "ffm/embeddings"),
    "convert-npz": ("convert", "--old", "{old}", "--to", "npz", "--out", "{out}/m.npz"),
    "convert-safetensors": (
        "convert", "--old", "{old}", "--to", "safetensors", "--out", "{out}/m.safetensors",
    ),
    "convert-zarr3": ("convert", "--old", "{old}", "--to", "zarr3", "--out", "{out}/m.zarr"),
    "remap": ("remap", "--old", "{old}", "--new-graph", FIXTURES / "ffm_v1" / "graph.pbtxt",
              "--out", "{out}/"),
    "diff-values": ("diff", "{old}", FIXTURES / "ffm_v1", "--values"),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_slice_is_named_by_its_tensor_and_spec(
    damage: str, command: str, tmp_path: Path
) -> None:
    if (command, damage) == ("inspect-tensor", "crc"):
        pytest.skip("--tensor reads without checking CRCs (--verify does)")
    old, out = tmp_path / "ffm_v1", tmp_path / "out"
    shutil.copytree(FIXTURES / "ffm_v1", old)
    DAMAGE[damage](old)
    args = [str(a).replace("{old}", str(old)).replace("{out}", str(out)) for a in COMMANDS[command]]
    result = _run(*args)
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert LABEL in line, line
    assert "\x00" not in line
    assert "\\x00" not in line
    assert "\\udc" not in line.encode("unicode_escape").decode()
    assert "(slice " not in line
    assert not out.exists() or not any(out.iterdir())


# -- V1 checkpoints: every tensor is stored as slices, each a record of the table file --

V1_SLICE = encode_slice_key(b"emb", [(4, 3), (0, 4)])


def _v1_record(old: Path, change: Callable[[Any], None]) -> None:
    """Rewrite the record of ``emb``'s second stored slice (rows 4-6) of the copied V1 file."""
    path = old / "model.ckpt-3"
    entries = table_entries(path)
    for i, (key, value) in enumerate(entries):
        if key == V1_SLICE:
            record = ckptmap_tf_pb2.SavedTensorSlices.FromString(value)
            change(record.data)
            entries[i] = (key, record.SerializeToString())
    write_table(path, entries)


def _short_content(data: Any) -> None:
    assert not data.data.tensor_content  # TF's V1 writer puts float32 values in float_val
    del data.data.float_val[-1]


def _other_extent(data: Any) -> None:
    data.slice.extent[0].start = 5


@pytest.mark.parametrize("change", [_short_content, _other_extent], ids=["content", "extent"])
@pytest.mark.parametrize(
    "command",
    [
        ("inspect", "{old}", "--tensor", "emb"),
        ("convert", "--old", "{old}", "--to", "npz", "--skip-unsupported", "--out", "{out}/m.npz"),
        ("remap", "--old", "{old}", "--new-graph", FIXTURES / "tf1_v1" / "model.ckpt-3.meta",
         "--out", "{out}/"),
    ],
    ids=["inspect", "convert", "remap"],
)  # fmt: skip
def test_a_damaged_v1_slice_is_named_by_its_tensor_and_spec(
    change: Callable[[Any], None], command: tuple[str | Path, ...], tmp_path: Path
) -> None:
    old, out = tmp_path / "tf1_v1", tmp_path / "out"
    shutil.copytree(FIXTURES / "tf1_v1", old)
    _v1_record(old, change)
    result = _run(*(str(a).replace("{old}", str(old)).replace("{out}", str(out)) for a in command))
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "tensor 'emb[4,3:0,4]'" in line, line
    if change is _other_extent:
        assert "its record names 'emb[5,3:0,4]'" in line
    assert "\\x00" not in line
    assert "' slice " not in line  # the old "'emb' slice 10 4 4,3:0,4"
    assert not out.exists() or not any(out.iterdir())


def test_slice_keys_of_v1_scalars_decode() -> None:
    """TF's V1 writer stores a scalar as one rank-0 slice: ``00 name 00 01 00``."""
    keys = {key for key, _ in table_entries(FIXTURES / "tf1_v1" / "model.ckpt-3") if key}
    assert encode_slice_key(b"global_step", []) in keys
    labels = {key_label(key) for key in keys}
    assert {"global_step", "scalar/float32", "emb[0,4:0,4]", "dtypes/bool[-:-]"} <= labels
    assert all(not label.startswith("slice key") for label in labels)
    assert decode_slice_key(encode_slice_key(b"global_step", [])) == (b"global_step", [])
