"""Real object-store servers on 127.0.0.1 for the remote tests, started once per session.

* ``s3_server``: ``moto_server`` (``moto[server]``), an S3 API;
* ``gcs_server``: ``gcp-storage-emulator``, the GCS JSON API.

Each listens on a free port and is stopped at the end of the session. A test
gets a fresh bucket (``s3_bucket`` / ``gcs_bucket``) and the environment a user
of that store would set (``AWS_ENDPOINT_URL`` and keys, ``STORAGE_EMULATOR_HOST``).
A missing server program skips the test, or fails it when
``CKPTMAP_REQUIRE_TF=1`` (CI), as tests/conftest.py does for TensorFlow.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ckptmap.storage.store_config import configure

_BIN = Path(sys.executable).parent
_COUNTER = itertools.count()


def _program(name: str) -> str:
    found = shutil.which(name, path=f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        message = f"{name} is not installed (pip install -e '.[dev]')"
        if os.environ.get("CKPTMAP_REQUIRE_TF") == "1":
            pytest.fail(f"{message}; the remote tests must run in CI (CKPTMAP_REQUIRE_TF=1)")
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process and its base URL."""

    url: str
    process: subprocess.Popen[bytes]


def _start(args: list[str], url: str, probe: str) -> Iterator[Server]:
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + probe, timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{args[0]} did not start on {url}")
                time.sleep(0.1)
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def _environment_store_settings() -> Iterator[None]:
    """Library calls in a test see its environment, not the settings of an earlier CLI run."""
    configure(None)
    yield
    configure(None)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Server]:
    port = _free_port()
    program = _program("moto_server")
    args = [program, "-H", "127.0.0.1", "-p", str(port)]
    yield from _start(args, f"http://127.0.0.1:{port}", "/")


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Server]:
    port = _free_port()
    program = _program("gcp-storage-emulator")
    args = [program, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    yield from _start(args, f"http://127.0.0.1:{port}", "/storage/v1/b")


def _request(method: str, url: str, body: bytes | None = None) -> None:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=10).close()


def _bucket_name(kind: str) -> str:
    return f"ckptmap-{kind}-{os.getpid()}-{next(_COUNTER)}"


@pytest.fixture
def s3_bucket(s3_server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the S3 server, with the AWS variables pointing at it."""
    name = _bucket_name("s3")
    _request("PUT", f"{s3_server.url}/{name}")
    for variable in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ckptmap-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ckptmap-test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return name


@pytest.fixture
def gcs_bucket(gcs_server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the GCS emulator, with STORAGE_EMULATOR_HOST pointing at it."""
    name = _bucket_name("gcs")
    body = json.dumps({"name": name}).encode()
    _request("POST", f"{gcs_server.url}/storage/v1/b?project=ckptmap", body)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url.removeprefix("http://"))
    return name


@pytest.fixture(params=["s3", "gs"])
def bucket_url(request: pytest.FixtureRequest) -> str:
    """``s3://<new bucket>`` or ``gs://<new bucket>`` on the local servers."""
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}"
    return f"gs://{request.getfixturevalue('gcs_bucket')}"
