"""Benchmark: ``ckptmap check`` and ``inspect`` on a checkpoint served over HTTP.

Issue target: ``check`` over HTTP on the 5,000-variable checkpoint reads under
1 MB. The ``many`` checkpoint of ``bench/make_checkpoints.py`` (35 MB of data,
a 194 KB index) is served from 127.0.0.1 by a small range-capable HTTP server
that counts the bytes it sends; the new model's ``graph.pbtxt`` is a local file
(a CI job has the new graph in its build). Reported: bytes the server sent,
requests, the ``io`` counters ckptmap prints, and wall time.

Usage::

    .venv/bin/python bench/check_http.py [--dir /tmp/ckptmap-bench] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from _util import CKPTMAP, DEFAULT_DIR, ensure_checkpoints, write_json

_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = _RANGE.match(self.headers.get("Range") or "")
        if match:
            start, last = int(match[1]), int(match[2])
            data = data[start : last + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/*")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.sent.append((self.path, len(data)))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.sent: list[tuple[str, int]] = []


def _run(cmd: list[str], server: _Server) -> dict[str, Any]:
    server.sent.clear()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
    io = json.loads(done.stdout).get("io", {})
    return {
        "wall_s": wall,
        "server_bytes": sum(n for _, n in server.sent),
        "requests": len(server.sent),
        "paths": sorted({p for p, _ in server.sent}),
        "io": io,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="benchmark inputs folder")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command")
    args = parser.parse_args(argv)
    root: Path = args.dir
    ensure_checkpoints(root, "many")
    many = root / "many"
    server = _Server(many)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/model.ckpt"
    cases = {
        "check --old URL --new-graph local graph.pbtxt --json": [
            CKPTMAP, "check", "--old", url, "--new-graph", str(many / "graph.pbtxt"), "--json",
        ],
        "inspect URL --json": [CKPTMAP, "inspect", url, "--json"],
    }  # fmt: skip
    results: dict[str, Any] = {}
    try:
        for name, cmd in cases.items():
            runs = [_run(cmd, server) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["wall_s"])
            results[name] = {"command": cmd, "runs": runs}
            print(
                f"{name}: best {best['wall_s']:.3f} s, server sent {best['server_bytes']:,} bytes "
                f"in {best['requests']} request(s) ({', '.join(best['paths'])}); "
                f"ckptmap io {best['io']}"
            )
    finally:
        server.shutdown()
        server.server_close()
    data_bytes = sum(p.stat().st_size for p in many.glob("model.ckpt.data-*"))
    index_bytes = (many / "model.ckpt.index").stat().st_size
    print(f"for scale: index {index_bytes:,} bytes, data files {data_bytes:,} bytes")
    write_json("check_http", {"results": results, "index": index_bytes, "data": data_bytes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
