"""Remote reads planned ahead (storage/range_reads.py) against a real HTTP server on 127.0.0.1.

The server supports single byte ranges, logs every request and counts how
many it is answering at once; a per-request delay makes concurrency visible.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from ckptmap.cli import main
from ckptmap.readers import open_checkpoint
from ckptmap.storage import KvLocation
from ckptmap.storage.range_reads import RangeReader, ReadOptions, Want, plan_requests
from ckptmap.writers.tf_bundle import BundleWriter

_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
KEYS = 300


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms ACK wait)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.log.append((self.path, self.headers.get("Range")))
            server.active += 1
            server.peak = max(server.peak, server.active)
        try:
            time.sleep(server.delay)
            send = self._answer()
        finally:
            # not active once the answer is ready: the client may send its next
            # request as soon as the bytes arrive, before this thread runs again
            with server.lock:
                server.active -= 1
        send()

    def _answer(self) -> Callable[[], None]:
        path = Path(self.translate_path(self.path))
        if ".data-" in path.name and self.server.deny_data:
            return lambda: self.send_error(403)
        if not path.is_file():
            return lambda: self.send_error(404)
        data = path.read_bytes()
        match = _RANGE.match(self.headers.get("Range") or "")
        status, content_range = 200, ""
        if match:
            start, last = int(match[1]), int(match[2])
            data = data[start : last + 1]
            status, content_range = 206, f"bytes {start}-{start + len(data) - 1}/*"

        def send() -> None:
            self.send_response(status)
            if content_range:
                self.send_header("Content-Range", content_range)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        return send


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.lock = threading.Lock()
        self.log: list[tuple[str, str | None]] = []
        self.active = self.peak = 0
        self.delay = 0.0
        self.deny_data = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def data_requests(self) -> list[tuple[str, str | None]]:
        return [(path, rng) for path, rng in self.log if ".data-" in path]


@pytest.fixture(scope="module")
def many_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of KEYS small tensors (two shards) and a JSON spec renaming a few."""
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(16)
    variables = []
    with BundleWriter(folder / "model.ckpt", num_shards=2) as writer:
        for i in range(KEYS):
            key = f"net/layer_{i:03d}/w"
            writer.add_array(key, rng.standard_normal((16, 8)).astype(np.float32))
            new = key if i % 7 else f"net/renamed_{i:03d}/w"
            variables.append({"name": new, "dtype": "float32", "shape": [16, 8]})
        writer.commit()
    (folder / "new.json").write_text(json.dumps({"version": 1, "variables": variables}))
    return folder


@pytest.fixture
def server(many_keys: Path) -> Iterator[_Server]:
    server = _Server(many_keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _remap(old: str, folder: Path, out: Path) -> Any:
    return CliRunner().invoke(
        main,
        ["remap", "--old", old, "--new-graph", str(folder / "new.json"), "--out", f"{out}/",
         "--rule", r"^net/renamed_(\d+)/w$=net/layer_{}/w", "--json"],
        catch_exceptions=False,
    )  # fmt: skip


def test_plan_merges_nearby_ranges_in_order_and_splits_long_ones() -> None:
    options = ReadOptions(gap_bytes=10, max_request_bytes=100)
    wants = [
        Want("a", 0, 40),
        Want("a", 45, 10),  # 5 bytes after: merged
        Want("a", 200, 10),  # too far: a new request
        Want("b", 210, 10),  # another file
        Want("b", 220, 250),  # longer than a request: parts
        Want("b", 0, 5),  # behind the last request: a new one
        Want("a", 212, 4),  # joins the last request of file a
    ]
    plan = plan_requests(wants, options)
    spans = [(r.name, r.start, r.end) for r in plan.requests]
    assert spans == [
        ("a", 0, 55), ("a", 200, 216), ("b", 210, 310), ("b", 310, 410), ("b", 410, 470),
        ("b", 0, 5),
    ]  # fmt: skip
    assert plan.requests[1].last_want == 6
    assert [sum(s.length for s in segs) for segs in plan.segments] == [w.length for w in wants]


def test_remap_from_http_makes_few_requests_and_equals_a_local_remap(
    many_keys: Path, server: _Server, tmp_path: Path
) -> None:
    local = _remap(str(many_keys / "model.ckpt"), many_keys, tmp_path / "local")
    assert local.exit_code == 0, local.stderr
    server.delay = 0.2  # long enough for the two shards' requests to overlap
    remote = _remap(f"{server.url}/model.ckpt", many_keys, tmp_path / "remote")
    assert remote.exit_code == 0, remote.stderr
    for name in sorted(p.name for p in (tmp_path / "local").iterdir()):
        assert (tmp_path / "remote" / name).read_bytes() == (
            tmp_path / "local" / name
        ).read_bytes(), name
    # The bound: every stored tensor in write order (the new keys sorted, so
    # the renamed ones come last and go back in the file; the tensors alternate
    # between the shards); nearby ranges of a shard merge.
    wants, _ = _shard_wants(many_keys)
    by_key = dict(zip((f"net/layer_{i:03d}/w" for i in range(KEYS)), wants, strict=True))
    new_keys = sorted(
        v["name"] for v in json.loads((many_keys / "new.json").read_text())["variables"]
    )
    order = [by_key[k.replace("renamed", "layer")] for k in new_keys]
    bound = len(plan_requests(order, ReadOptions()).requests)
    data = server.data_requests()
    assert bound == 3
    assert len(data) == bound
    assert server.peak > 1  # the shards are read at the same time
    assert all(rng is not None for _, rng in data)


def _shard_wants(ckpt_folder: Path) -> tuple[list[Want], list[bytes]]:
    with open_checkpoint(ckpt_folder / "model.ckpt") as ckpt:
        entries = [ckpt.entry(key) for key in sorted(ckpt.keys())]
        expected = [bytes(ckpt.raw_bytes(e)) for e in entries]
        wants = [Want(f"model.ckpt.data-{e.shard_id:05d}-of-00002", e.offset, e.size)
                 for e in entries]  # fmt: skip
    return wants, expected


def test_many_requests_are_in_flight_at_once(many_keys: Path, server: _Server) -> None:
    wants, expected = _shard_wants(many_keys)
    server.delay = 0.05
    options = ReadOptions(max_inflight=8, gap_bytes=0, max_request_bytes=4096)
    reader = RangeReader(KvLocation(server.url + "/"), wants, options)
    got = [bytes(data) for data in reader]
    assert got == expected
    assert len(server.data_requests()) == reader.request_count > 8
    assert 1 < server.peak <= 8


def test_a_budget_smaller_than_one_range_reads_one_at_a_time(
    many_keys: Path, server: _Server
) -> None:
    wants, expected = _shard_wants(many_keys)
    wants, expected = wants[:20], expected[:20]
    server.delay = 0.01
    options = ReadOptions(inflight_bytes=100, gap_bytes=0, max_request_bytes=64)
    reader = RangeReader(KvLocation(server.url + "/"), wants, options)
    assert [bytes(data) for data in reader] == expected
    assert server.peak == 1
    assert reader.request_count == len(server.data_requests()) == 20 * (16 * 8 * 4 // 64)


def test_a_failing_range_is_one_line_naming_the_url(
    many_keys: Path, server: _Server, tmp_path: Path
) -> None:
    server.deny_data = True
    result = _remap(f"{server.url}/model.ckpt", many_keys, tmp_path / "out")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{server.url}/model.ckpt.data-0000" in lines[0]
    assert "access denied" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_inspect_verify_over_http_plans_its_reads(many_keys: Path, server: _Server) -> None:
    result = CliRunner().invoke(main, ["inspect", f"{server.url}/model.ckpt", "--verify", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["tensors"] == KEYS
    assert len(server.data_requests()) == 2  # one per data file, not one per tensor


def test_check_and_inspect_over_http_read_only_the_index(many_keys: Path, server: _Server) -> None:
    spec = str(many_keys / "new.json")
    rule = r"^net/renamed_(\d+)/w$=net/layer_{}/w"
    check = ["check", "--old", f"{server.url}/model.ckpt", "--new-graph", spec, "--rule", rule]
    assert CliRunner().invoke(main, [*check, "--json"]).exit_code == 0
    assert (
        CliRunner().invoke(main, ["inspect", f"{server.url}/model.ckpt", "--json"]).exit_code == 0
    )
    assert server.log == [("/model.ckpt.index", None)] * 2
