"""Damaged and hostile safetensors / npz files: one CkptmapError naming the file, nothing else.

Each case starts from a file the real producer wrote (safetensors.numpy,
numpy.savez) and changes one thing.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ckptmap.cli import main
from ckptmap.errors import CorruptCheckpointError, UnsupportedInputError
from ckptmap.readers.source import open_source

TENSORS = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b/c": np.array([1, -2], np.int64)}


def _good(path: Path) -> Path:
    from safetensors.numpy import save_file

    save_file(TENSORS, path, metadata={"note": "x"})
    return path


def _split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join(header: dict | bytes, data: bytes) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _edit(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        header, data = _split(raw)
        change(header)
        return _join(header, data)

    return edit


def _set(key: str, field: str, value: object) -> Callable[[dict], None]:
    def change(header: dict) -> None:
        header[key][field] = value

    return change


CASES = [
    pytest.param(lambda raw: raw[:5], "shorter than a header", id="tiny"),
    pytest.param(lambda raw: struct.pack("<Q", 2**62) + raw[8:], "declares a", id="huge-header"),
    pytest.param(lambda raw: raw[:40], "declares a", id="truncated-header"),
    pytest.param(lambda raw: _join(b"{not json", _split(raw)[1]), "not JSON", id="not-json"),
    pytest.param(lambda raw: _join(b"[1, 2]", b""), "not a JSON object", id="not-an-object"),
    pytest.param(lambda raw: _join(b'{"a": 1, "a": 2}', b""), "appears twice", id="duplicate-name"),
    pytest.param(_edit(_set("a", "shape", [2, -3])), "bad shape", id="negative-dim"),
    pytest.param(_edit(_set("a", "shape", [2, 4])), "needs 32", id="shape-vs-offsets"),
    pytest.param(_edit(_set("a", "data_offsets", [0])), "bad data_offsets", id="one-offset"),
    pytest.param(_edit(_set("a", "data_offsets", [8, 32])), "overlaps|gap", id="offsets-moved"),
    pytest.param(lambda raw: raw[:-3], "the file holds", id="truncated-data"),
    pytest.param(lambda raw: raw + b"xx", "the file holds", id="trailing-bytes"),
    pytest.param(_edit(_set("a", "extra", 1)), "exactly dtype", id="extra-field"),
    pytest.param(
        _edit(lambda h: h.__setitem__("__metadata__", {"ckptmap": "{}"})),
        "not of format",
        id="bad-manifest",
    ),
    pytest.param(
        _edit(lambda h: h.__setitem__("__metadata__", {"n": 1})),
        "strings to strings",
        id="metadata-not-strings",
    ),
]


@pytest.mark.parametrize(("damage", "message"), CASES)
def test_a_damaged_safetensors_header_is_one_corrupt_error(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    path = _good(tmp_path / "m.safetensors")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptCheckpointError, match=message) as info:
        open_source(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_an_unknown_dtype_is_unsupported(tmp_path: Path) -> None:
    path = _good(tmp_path / "m.safetensors")
    path.write_bytes(_edit(_set("a", "dtype", "F4"))(path.read_bytes()))
    with pytest.raises(UnsupportedInputError, match="'F4'"):
        open_source(path)


def test_inspect_of_a_damaged_file_is_one_line_and_exit_3(tmp_path: Path) -> None:
    path = _good(tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:-1])
    result = CliRunner().invoke(main, ["inspect", str(path)], catch_exceptions=False)
    assert result.exit_code == 3
    assert result.output.count("\n") == 1
    assert str(path) in result.output


def test_inspect_lists_a_safetensors_file(tmp_path: Path) -> None:
    path = _good(tmp_path / "m.safetensors")
    result = CliRunner().invoke(main, ["inspect", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "b/c" in result.output


def _npz(path: Path) -> Path:
    np.savez(path, **TENSORS)  # type: ignore[arg-type]
    return path


def test_a_pickled_npz_member_is_refused_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UnsupportedInputError, match="pickled arrays are never loaded"):
        open_source(path)


def test_an_npz_member_shorter_than_its_shape_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as archive:
        header = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118)
        text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000,), }"
        archive.writestr("a.npy", header + text.ljust(117) + b"\n" + b"\0" * 16)
    with pytest.raises(CorruptCheckpointError, match="needs 4000000"):
        open_source(path)


def test_an_npz_that_is_not_a_zip_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(CorruptCheckpointError, match="is not a zip archive"):
        open_source(path)


def test_a_bad_npz_manifest_is_corrupt(tmp_path: Path) -> None:
    path = _npz(tmp_path / "m.npz")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(
            "ckptmap.json",
            json.dumps(
                {"format": "ckptmap-arrays/1", "name": "", "tensors": {"a": {"dtype": "int8"}}}
            ),
        )
    with pytest.raises(CorruptCheckpointError, match="stored as float32"):
        open_source(path)


# -- the model folder as a trust boundary (storage/input_files.py), for array files too ---


def _sharded(folder: Path) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir()
    save_file({"a": TENSORS["a"]}, folder / "model-00001-of-00002.safetensors")
    save_file({"b/c": TENSORS["b/c"]}, folder / "model-00002-of-00002.safetensors")
    weight_map = {
        "a": "model-00001-of-00002.safetensors",
        "b/c": "model-00002-of-00002.safetensors",
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def _fifo(path: Path) -> None:
    import os

    path.unlink()
    os.mkfifo(path)


def _link_out(path: Path) -> None:
    outside = path.parent.parent / f"outside-{path.name}"
    path.rename(outside)
    path.symlink_to(outside)


@pytest.mark.parametrize("make", [_fifo, _link_out], ids=["fifo", "link-out-of-the-folder"])
@pytest.mark.parametrize(
    "victim",
    ["model.safetensors", "model.npz", "model-00002-of-00002.safetensors"],
    ids=["safetensors", "npz", "shard"],
)
def test_a_special_or_outside_array_file_is_refused_unopened(
    tmp_path: Path, make: Callable[[Path], None], victim: str
) -> None:
    """One line, exit 3, at once: a FIFO would block the open forever if it were opened."""
    import subprocess
    import sys

    if victim.startswith("model-"):
        folder = _sharded(tmp_path / "model")
    else:
        folder = tmp_path / "model"
        folder.mkdir()
        (_good if victim.endswith(".safetensors") else _npz)(folder / victim)
    make(folder / victim)
    done = subprocess.run(
        [sys.executable, "-m", "ckptmap", "inspect", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert victim in done.stderr
    assert "Traceback" not in done.stderr


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    folder = _sharded(tmp_path / "model")
    shard = folder / "model-00002-of-00002.safetensors"
    shard.rename(folder / "stored.bin")
    shard.symlink_to("stored.bin")
    with open_source(folder) as source:
        np.testing.assert_array_equal(source.read("b/c"), TENSORS["b/c"])
        np.testing.assert_array_equal(source.read_box("b/c", ((0, 1),)), TENSORS["b/c"][:1])
