"""Transient failures: an HTTP server on 127.0.0.1 that answers 503 or drops the connection.

tensorstore retries such requests with backoff (the policy comes from
ckptmap's RetryPolicy, ``CKPTMAP_STORAGE_RETRIES`` and ``[storage] retries``);
after the last retry ckptmap fails in one line naming the URL and the last
status. The server counts every request, so the number of attempts is checked.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main


class _Flaky(http.server.SimpleHTTPRequestHandler):
    """Fails the first ``server.failures`` GETs (``server.mode``: 503 or drop), then serves."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests += 1
            failing = self.server.requests <= self.server.failures
        if not failing:
            super().do_GET()
        elif self.server.mode == "503":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:  # drop the connection without a reply
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Flaky, directory=str(root)))
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = 0
        self.mode = "503"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[_Server]:
    server = _Server(FIXTURES)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def flaky(flaky_server: _Server, monkeypatch: pytest.MonkeyPatch) -> _Server:
    flaky_server.requests = 0
    monkeypatch.setenv("CKPTMAP_STORAGE_RETRY_DELAY", "0.01")
    monkeypatch.setenv("CKPTMAP_STORAGE_RETRY_MAX_DELAY", "0.05")
    return flaky_server


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_transient_failures_are_retried(flaky: _Server, mode: str) -> None:
    flaky.mode, flaky.failures = mode, 3
    result = run("inspect", f"{flaky.url}/ffm_v1/model.ckpt-100", "--json")
    assert result.exit_code == 0, result.stderr
    assert flaky.requests == 4  # three failures, then the index


@pytest.mark.parametrize(
    ("mode", "last"),
    [
        ("503", "Service Unavailable [HTTP code 503]"),
        ("drop", "CURL error Server returned nothing (no headers, no data)"),
    ],
)
def test_retries_are_bounded_then_one_line(
    flaky: _Server, monkeypatch: pytest.MonkeyPatch, mode: str, last: str
) -> None:
    monkeypatch.setenv("CKPTMAP_STORAGE_RETRIES", "2")
    flaky.mode, flaky.failures = mode, 1000
    url = f"{flaky.url}/ffm_v1/model.ckpt-100"
    result = run("inspect", url)
    assert result.exit_code == 3
    assert flaky.requests == 3  # the first attempt and two retries
    assert result.stderr.startswith(f"error: {url}.index: ")
    assert "failed 3 times (2 retries); last: " + last in result.stderr
    assert result.stderr.count("\n") == 1


def test_retries_from_the_config_file(flaky: _Server, tmp_path: Path) -> None:
    config = tmp_path / "ckptmap.toml"
    config.write_text("[storage]\nretries = 0\n", encoding="utf-8")
    flaky.mode, flaky.failures = "503", 1
    result = run("inspect", "--config", str(config), f"{flaky.url}/ffm_v1/model.ckpt-100")
    assert result.exit_code == 3
    assert flaky.requests == 1  # no retry: tensorstore reports the one failure as it is
    assert "(Service Unavailable [HTTP code 503]; check the URL and the network)" in result.stderr
