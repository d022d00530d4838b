"""Checkpoints at URLs: HTTP (a server on 127.0.0.1 started here), memory:// and file://.

The HTTP server serves the fixtures folder with Range support and logs every
request as ``(method, path, Range header)``, so the tests can assert which
bytes a command fetched. Variants ignore Range, or answer 403 / 404.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.errors import CorruptCheckpointError
from ckptmap.readers import open_checkpoint
from ckptmap.readers.graph import read_model_spec
from ckptmap.storage import KvLocation

_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files with single byte ranges; ``server.mode`` picks a misbehaviour."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        self.server.log.append((self.command, self.path, self.headers.get("Range")))
        if self.server.mode in (403, 404):
            self.send_error(self.server.mode)
            return None
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        return path

    def do_HEAD(self) -> None:
        path = self._file()
        if path is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()

    def do_GET(self) -> None:
        path = self._file()
        if path is None:
            return
        data = path.read_bytes()
        match = _RANGE.match(self.headers.get("Range") or "")
        if match and self.server.mode != "ignore-range":
            start, last = int(match[1]), int(match[2])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            data = data[start : last + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/*")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, mode: str | int) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.mode = mode
        self.log: list[tuple[str, str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.log]


def _serve(root: Path, mode: str | int = "ok") -> Iterator[_Server]:
    server = _Server(root, mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def http_server() -> Iterator[_Server]:
    yield from _serve(FIXTURES)


@pytest.fixture
def server(http_server: _Server) -> _Server:
    http_server.log.clear()
    return http_server


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# -- inspect over HTTP ----------------------------------------------------------------


def test_inspect_a_prefix_url_reads_only_the_index(server: _Server) -> None:
    remote = run_json("inspect", f"{server.url}/ffm_v1_ps2/model.ckpt-100")
    local = run_json("inspect", str(FIXTURES / "ffm_v1_ps2" / "model.ckpt-100"))
    assert remote["tensors"] == local["tensors"]
    assert remote["totals"] == local["totals"]
    assert server.log == [("GET", "/ffm_v1_ps2/model.ckpt-100.index", None)]
    index_size = (FIXTURES / "ffm_v1_ps2" / "model.ckpt-100.index").stat().st_size
    assert remote["io"] == {
        "bytes_read": index_size,
        "requests": 1,
        "bytes_written": 0,
        "writes": 0,
    }
    assert remote["checkpoint"]["prefix"] == f"{server.url}/ffm_v1_ps2/model.ckpt-100"
    assert remote["checkpoint"]["shards"][1] == {
        "path": f"{server.url}/ffm_v1_ps2/model.ckpt-100.data-00001-of-00002",
        "size": None,
    }


def test_inspect_a_folder_url_reads_the_state_file_and_the_index(server: _Server) -> None:
    remote = run_json("inspect", f"{server.url}/ffm_v1_ps2/")
    local = run_json("inspect", str(FIXTURES / "ffm_v1_ps2"))
    assert remote["tensors"] == local["tensors"]
    assert server.paths() == ["/ffm_v1_ps2/checkpoint", "/ffm_v1_ps2/model.ckpt-100.index"]


def test_inspect_a_folder_url_without_slash(server: _Server) -> None:
    remote = run_json("inspect", f"{server.url}/ffm_v1", "--step", "50")
    assert remote["checkpoint"]["prefix"] == f"{server.url}/ffm_v1/model.ckpt-50"
    assert not [p for p in server.paths() if ".data-" in p]


def test_a_tensor_over_http_is_one_ranged_request(server: _Server) -> None:
    url = f"{server.url}/ffm_v1_ps2/model.ckpt-100"
    with open_checkpoint(url) as remote, open_checkpoint(FIXTURES / "ffm_v1_ps2") as local:
        server.log.clear()
        entry = local.entry("ffm/bias_net/w")
        values = remote.read("ffm/bias_net/w", verify=True)
        np.testing.assert_array_equal(values, local.read("ffm/bias_net/w"))
        shard = f"/ffm_v1_ps2/model.ckpt-100.data-{entry.shard_id:05d}-of-00002"
        last = entry.offset + entry.size - 1
        assert server.log == [("GET", shard, f"bytes={entry.offset}-{last}")]
        for key in local:
            np.testing.assert_array_equal(remote.read(key), local.read(key), err_msg=key)


def test_inspect_verify_and_stats_over_http(server: _Server) -> None:
    remote = run_json("inspect", f"{server.url}/ffm_v1_ps2", "--verify", "--stats")
    local = run_json("inspect", str(FIXTURES / "ffm_v1_ps2"), "--verify", "--stats")
    assert remote["tensors"] == local["tensors"]
    data_requests = [(path, rng) for _, path, rng in server.log if ".data-" in path]
    assert data_requests
    assert all(rng is not None and rng.startswith("bytes=") for _, rng in data_requests)


# -- check over HTTP ------------------------------------------------------------------


def test_check_over_http_reads_only_the_index_and_the_graph(server: _Server) -> None:
    remote = run_json(
        "check",
        "--old",
        f"{server.url}/ffm_v1_ps2/model.ckpt-100",
        "--new-graph",
        f"{server.url}/ffm_v2_ps3/graph.pbtxt",
    )
    local = run_json(
        "check",
        "--old",
        str(FIXTURES / "ffm_v1_ps2" / "model.ckpt-100"),
        "--new-graph",
        str(FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"),
    )
    for field in ("ok", "counts", "resolved", "unresolved", "mismatched", "suggested_rules"):
        assert remote[field] == local[field], field
    assert sorted(server.paths()) == [
        "/ffm_v1_ps2/model.ckpt-100.index",
        "/ffm_v2_ps3/graph.pbtxt",
    ]
    fetched = [
        FIXTURES / "ffm_v1_ps2" / "model.ckpt-100.index",
        FIXTURES / "ffm_v2_ps3/graph.pbtxt",
    ]
    assert remote["io"]["bytes_read"] == sum(path.stat().st_size for path in fetched)
    assert remote["io"]["requests"] == 2
    assert local["io"]["bytes_read"] == 0
    assert remote["old"] == f"{server.url}/ffm_v1_ps2/model.ckpt-100"


@pytest.mark.parametrize(
    "graph",
    ["ffm_v1/model.ckpt-100.meta", "ffm_v1/saved_model", "ffm_v1/model.ckpt-100"],
)
def test_graphs_at_urls_equal_local_ones(server: _Server, graph: str) -> None:
    remote = read_model_spec(f"{server.url}/{graph}")
    local = read_model_spec(FIXTURES / graph)
    assert remote.keys == local.keys
    assert not [p for p in server.paths() if ".data-" in p]


# -- bad servers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (403, "access denied (Forbidden [HTTP code 403]; check the URL and the credentials)"),
        (404, "checkpoint index file not found"),
    ],
)
def test_http_errors_are_one_line_input_errors(mode: int, message: str) -> None:
    for server in _serve(FIXTURES, mode):
        result = run("inspect", f"{server.url}/ffm_v1/model.ckpt-100.index")
        assert result.exit_code == 3
        assert result.stderr == (f"error: {server.url}/ffm_v1/model.ckpt-100.index: {message}\n")


def test_a_server_that_ignores_ranges() -> None:
    for server in _serve(FIXTURES, "ignore-range"):
        url = f"{server.url}/ffm_v1/model.ckpt-100"
        assert run("inspect", url, "--json").exit_code == 0  # the index is read whole
        result = run("inspect", url, "--tensor", "ffm/embeddings")
        assert result.exit_code == 3
        assert result.stderr.startswith(f"error: {url}.data-00000-of-00001: the server ignores ")
        assert "Range requests" in result.stderr
        assert result.stderr.count("\n") == 1


def test_an_unreachable_host() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("inspect", f"http://127.0.0.1:{port}/ckpt/model.ckpt-1")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: http://127.0.0.1:{port}/ckpt/model.ckpt-1.index: ")
    assert "cannot reach the store" in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_unknown_scheme_exits_3() -> None:
    result = run("inspect", "ftp://host/ckpt")
    assert result.exit_code == 3
    assert "unknown URL scheme 'ftp://' (supported: file://" in result.stderr


# -- memory:// and file:// -----------------------------------------------------------


def _upload(folder: Path, url: str) -> KvLocation:
    location = KvLocation(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            location.write(path.relative_to(folder).as_posix(), path.read_bytes())
    return location


def test_memory_store_equals_local() -> None:
    _upload(FIXTURES / "ffm_v1_ps2", "memory://remote-test/ffm_v1_ps2/")
    remote = run_json("inspect", "memory://remote-test/ffm_v1_ps2", "--verify")
    local = run_json("inspect", str(FIXTURES / "ffm_v1_ps2"), "--verify")
    assert remote["tensors"] == local["tensors"]
    assert [a["name"] for a in remote["assets"]] == [a["name"] for a in local["assets"]]
    assert remote["io"]["bytes_read"] > 0


def test_file_url_equals_local(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "ffm_v1", tmp_path / "ffm_v1")
    url = (tmp_path / "ffm_v1").as_uri()
    remote = run_json("inspect", url)
    local = run_json("inspect", str(tmp_path / "ffm_v1"))
    assert remote["tensors"] == local["tensors"]
    assert [(a["name"], a["legacy"]) for a in remote["assets"]] == [
        (a["name"], a["legacy"]) for a in local["assets"]
    ]
    with (
        open_checkpoint(url, step=50) as ckpt,
        open_checkpoint(FIXTURES / "ffm_v1", step=50) as ref,
    ):
        for key in ref:
            np.testing.assert_array_equal(ckpt.read(key), ref.read(key), err_msg=key)


def test_a_truncated_remote_shard_is_corrupt() -> None:
    folder = FIXTURES / "ffm_v1"
    location = _upload(folder, "memory://remote-test/truncated/")
    shard = "model.ckpt-100.data-00000-of-00001"
    location.write(shard, (folder / shard).read_bytes()[:100])
    with (
        open_checkpoint("memory://remote-test/truncated/model.ckpt-100") as ckpt,
        pytest.raises(CorruptCheckpointError) as caught,
    ):
        ckpt.read("ffm/embeddings")
    assert str(caught.value).startswith(f"memory://remote-test/truncated/{shard}: tensor ")
    assert "runs past the end of the data file" in str(caught.value)


def test_a_folder_url_that_cannot_be_listed_explains_itself(server: _Server) -> None:
    result = run("inspect", f"{server.url}/no-such-folder")
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: {server.url}/no-such-folder/: no checkpoint here: no <URL>.index and no "
        "'checkpoint' state file in this folder (this store cannot list folders: give the "
        "checkpoint prefix URL)\n"
    )


# -- remap from and to URLs -----------------------------------------------------------

_RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


def _remap_json(old: str, out: str, *extra: str) -> dict[str, Any]:
    return run_json(
        "remap", "--old", old, "--new-graph", str(FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"),
        "--out", out, "--rule", _RULE, *extra,
    )  # fmt: skip


def _assert_same_checkpoint(a: str | Path, b: str | Path) -> None:
    with open_checkpoint(a) as left, open_checkpoint(b) as right:
        assert left.keys() == right.keys()
        assert right.verify() == right.keys()
        for key in left:
            np.testing.assert_array_equal(left.read(key), right.read(key), err_msg=key)


def test_remap_from_a_url_equals_a_local_remap(server: _Server, tmp_path: Path) -> None:
    local = _remap_json(str(FIXTURES / "ffm_v1_ps2"), f"{tmp_path}/local/")
    server.log.clear()
    remote = _remap_json(f"{server.url}/ffm_v1_ps2", f"{tmp_path}/remote/")
    assert remote["old"] == f"{server.url}/ffm_v1_ps2/model.ckpt-100"
    _assert_same_checkpoint(local["output"]["prefix"], remote["output"]["prefix"])
    data = [(path, rng) for _, path, rng in server.log if ".data-" in path]
    assert data
    assert all(rng is not None for _, rng in data)  # only ranged reads of data
    assert remote["io"]["bytes_read"] > 0
    assert remote["io"]["requests"] == len(server.log)


def test_remap_to_a_url_uploads_index_last(tmp_path: Path) -> None:
    out = "memory://remote-test/remapped/"
    result = _remap_json(str(FIXTURES / "ffm_v1_ps2"), out)
    files = result["output"]["files"]
    assert files[-2:] == [f"{out}model.ckpt-100.index", f"{out}checkpoint"]
    assert all(".data-" in f or ".assets/" in f for f in files[:-2])
    assert result["io"]["bytes_written"] > result["output"]["bytes_written"]
    local = _remap_json(str(FIXTURES / "ffm_v1_ps2"), f"{tmp_path}/local/")
    _assert_same_checkpoint(local["output"]["prefix"], out)  # through the state file
    again = run(
        "remap", "--old", str(FIXTURES / "ffm_v1_ps2"),
        "--new-graph", str(FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"), "--out", out, "--rule", _RULE,
    )  # fmt: skip
    assert again.exit_code == 4
    assert again.stderr == (
        f"error: {out}model.ckpt-100.index: a checkpoint exists here; pass --force to replace it\n"
    )
    forced = _remap_json(str(FIXTURES / "ffm_v1_ps2"), out, "--force")
    assert forced["output"]["prefix"] == f"{out}model.ckpt-100"


def test_link_needs_local_paths(server: _Server, tmp_path: Path) -> None:
    result = run(
        "remap", "--old", f"{server.url}/ffm_v1_ps2",
        "--new-graph", str(FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"),
        "--out", f"{tmp_path}/new/", "--rule", _RULE, "--link",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--link needs a local old checkpoint and a local --out" in result.stderr


@pytest.mark.tf
def test_tensorflow_restores_a_remap_from_a_url(tf: Any, server: _Server, tmp_path: Path) -> None:
    result = _remap_json(f"{server.url}/ffm_v1_ps2", f"{tmp_path}/new/")
    prefix = Path(tf.train.latest_checkpoint(str(tmp_path / "new")))
    assert str(prefix) == result["output"]["prefix"]
    graph = tf.Graph()
    with graph.as_default():
        meta = FIXTURES / "ffm_v2_ps3" / "model.ckpt-100.meta"
        saver = tf.compat.v1.train.import_meta_graph(str(meta), clear_devices=True)
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(prefix))
            values = sess.run(variables)
    reader = tf.train.load_checkpoint(str(prefix))
    checked = 0
    for var, value in zip(variables, values, strict=True):
        info = var._save_slice_info  # noqa: SLF001 - TF's own record of the part
        key = info.full_name if info is not None else var.op.name
        expected = reader.get_tensor(key)
        if info is not None:
            index = tuple(
                slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape, strict=True)
            )
            expected = expected[index]
        np.testing.assert_array_equal(value, expected, err_msg=var.name)
        checked += 1
    assert checked == len(variables) > 0
