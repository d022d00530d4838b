"""The storage seam (ckptmap/storage/): names, specs, local and kvstore locations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES

from ckptmap.errors import (
    MissingInputError,
    OutputError,
    RangeError,
    UnsupportedInputError,
    UsageError,
)
from ckptmap.storage import (
    KvLocation,
    LocalLocation,
    is_url,
    kvstore_spec,
    location_text,
    measure_io,
    open_location,
    open_parent,
    split_name,
)
from ckptmap.storage.kvstore import _coalesce

# -- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/ckpt/model.ckpt-100",
        "https://example.com/a/b",
        "gs://bucket/run/model.ckpt-1",
        "s3://bucket/run",
        "memory://store/x",
        "file:///tmp/ckpt/model.ckpt-1",
    ],
)
def test_a_url_survives_pathlib(url: str) -> None:
    assert location_text(Path(url)) == url
    assert is_url(Path(url))


def test_memory_root_survives_pathlib() -> None:
    assert str(Path("memory://")) == "memory:"
    assert location_text(Path("memory://")) == "memory://"


@pytest.mark.parametrize("path", ["ckpt/model.ckpt-100", "/abs/ckpt", "C:/data/ckpt", "a:b"])
def test_local_paths_are_not_urls(path: str) -> None:
    assert location_text(path) == path
    assert not is_url(path)


def test_split_name() -> None:
    assert split_name("http://h/a/c.index") == ("http://h/a/", "c.index")
    assert split_name("http://h/a/") == ("http://h/a/", "")
    assert split_name("memory://x") == ("memory://", "x")
    assert split_name("ckpt/model.ckpt-1") == ("ckpt", "model.ckpt-1")


@pytest.mark.parametrize(
    ("url", "spec"),
    [
        (
            "http://127.0.0.1:8000/a/b/",
            {"driver": "http", "base_url": "http://127.0.0.1:8000", "path": "/a/b/"},
        ),
        ("https://h/", {"driver": "http", "base_url": "https://h", "path": "/"}),
        ("gs://bucket/run1/", {"driver": "gcs", "bucket": "bucket", "path": "run1/"}),
        ("s3://bucket/run1/", {"driver": "s3", "bucket": "bucket", "path": "run1/"}),
        ("memory://store/x/", {"driver": "memory", "path": "store/x/"}),
        ("memory://", {"driver": "memory", "path": ""}),
        ("file:///tmp/a%20b/", {"driver": "file", "path": "/tmp/a b/"}),
    ],
)
def test_kvstore_spec(url: str, spec: dict[str, str]) -> None:
    assert kvstore_spec(url) == spec


def test_unknown_scheme_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedInputError) as caught:
        open_parent("ftp://host/ckpt/model.ckpt-1")
    assert str(caught.value) == (
        "ftp://host/ckpt/model.ckpt-1: unknown URL scheme 'ftp://' (supported: file://, "
        "memory://, http://, https://, gs://, s3://, or a local path)"
    )


def test_a_url_without_host_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="names no bucket"):
        kvstore_spec("gs:///run/")


def test_coalesce_groups_touching_ranges() -> None:
    groups = _coalesce([(100, 50), (0, 100), (10_000, 8), (150, 10)])
    assert groups == [(0, 160, [1, 0, 3]), (10_000, 10_008, [2])]


def test_open_location_picks_the_kind(tmp_path: Path) -> None:
    assert isinstance(open_location(tmp_path), LocalLocation)
    remote = open_location("memory://picks/")
    assert isinstance(remote, KvLocation)
    assert remote.where("a.index") == "memory://picks/a.index"


# -- behaviour shared by every kind of location -------------------------------------


@pytest.fixture(params=["local", "file", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> LocalLocation | KvLocation:
    if request.param == "local":
        return LocalLocation(tmp_path)
    if request.param == "file":
        return KvLocation(tmp_path.as_uri() + "/")
    return KvLocation(f"memory://{tmp_path.name}/")


def test_write_then_read(location: LocalLocation | KvLocation) -> None:
    data = bytes(range(256)) * 40
    location.write("sub/data", data)
    assert location.exists("sub/data")
    assert not location.exists("sub/other")
    assert location.read_all("sub/data") == data
    assert location.read("sub/data", 1000, 24) == data[1000:1024]
    assert location.read_ranges("sub/data", [(5, 3), (0, 5), (9000, 100), (10, 0)]) == [
        data[5:8],
        data[0:5],
        data[9000:9100],
        b"",
    ]
    assert location.list("sub/") == ["sub/data"]
    location.delete("sub/data")
    assert not location.exists("sub/data")


def test_missing_file(location: LocalLocation | KvLocation) -> None:
    with pytest.raises(MissingInputError, match="no such file"):
        location.read_all("nothing")
    with pytest.raises(MissingInputError, match="no such file"):
        location.read("nothing", 0, 4)


def test_range_past_the_end(location: LocalLocation | KvLocation) -> None:
    location.write("short", b"0123456789")
    with pytest.raises(RangeError) as caught:
        location.read("short", 8, 4)
    assert "past the end of the file" in str(caught.value)
    assert caught.value.offset == 8


def test_remote_bytes_are_counted() -> None:
    location = KvLocation("memory://counted/")
    with measure_io() as io:
        location.write("a", b"x" * 100)
        location.read_ranges("a", [(0, 10), (20, 10)])  # one request: the ranges are close
        location.read_all("a")
    assert io.to_json() == {"bytes_read": 130, "requests": 2, "bytes_written": 100, "writes": 1}


def test_local_bytes_are_not_counted(tmp_path: Path) -> None:
    location = LocalLocation(tmp_path)
    with measure_io() as io:
        location.write("a", b"x" * 100)
        location.read_all("a")
    assert io.bytes_read == io.bytes_written == 0


def test_memory_stores_persist_within_the_process() -> None:
    KvLocation("memory://persist/").write("k", b"v")
    assert KvLocation("memory://persist/").read_all("k") == b"v"


def test_a_write_that_fails_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OutputError, match="cannot write"):
        KvLocation(blocker.as_uri() + "/").write("under-a-file", b"x")


# -- local commands never import tensorstore -----------------------------------------

_NO_TENSORSTORE = """
import json, sys
from click.testing import CliRunner
from ckptmap.cli import main
results = [
    CliRunner().invoke(main, args, catch_exceptions=False).exit_code
    for args in json.loads(sys.argv[1])
]
print(json.dumps({"codes": results, "loaded": "tensorstore" in sys.modules}))
"""


def test_local_commands_do_not_import_tensorstore(tmp_path: Path) -> None:
    commands = [
        ["inspect", str(FIXTURES / "ffm_v1_ps2"), "--json"],
        ["inspect", str(FIXTURES / "ffm_v1"), "--tensor", "ffm/embeddings", "--verify"],
        ["check", "--old", str(FIXTURES / "ffm_v1"), "--new-graph", str(FIXTURES / "ffm_v1")],
        ["remap", "--old", str(FIXTURES / "ffm_v1_ps2"), "--new-graph",
         str(FIXTURES / "ffm_v1" / "graph.pbtxt"), "--out", f"{tmp_path}/out/", "--json"],
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _NO_TENSORSTORE, json.dumps(commands)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == {"codes": [0, 0, 0, 0], "loaded": False}
