"""Remote remap over a slow round trip: ``remap --old http://`` vs GET each file + local remap.

A threaded HTTP server on 127.0.0.1 serves a synthetic 5,000-key, ~200 MB
checkpoint (written by ckptmap's BundleWriter, no TensorFlow) with single
byte ranges and sleeps ``delay`` before answering each request (a cloud
round trip). For each delay (0, 20, 50 ms by default) the same run times

* ``ckptmap remap --old http://.../model.ckpt`` to a local folder, and
* ``curl`` of every file with one GET each (the index, the data file), then
  ``ckptmap remap --old <downloaded>`` (one shell command),

and prints the ratio (remote / download-then-local), the requests the server
saw during the last timed run of each, and each command's peak RSS.
Target: <= 1.2x at 20 ms (issue 16; floor <= 2x).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shlex
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _util import CKPTMAP, DEFAULT_DIR, Measurement, measure, write_json

KEYS = 5_000
SHAPE = (100, 100)  # float32: 40 kB a key, 200 MB in all
RULE = r"^net/moved_(\d+)/w$=net/layer_{}/w"


def make_inputs(folder: Path) -> Path:
    """Write the checkpoint (one data file, as a one-device Saver) and the new spec, once."""
    from ckptmap.writers.tf_bundle import BundleWriter

    prefix = folder / "model.ckpt"
    spec = folder / "new.json"
    if spec.exists():
        return prefix
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    variables = []
    with BundleWriter(prefix, force=True) as writer:
        for i in range(KEYS):
            key = f"net/layer_{i:04d}/w"
            writer.add_array(key, rng.standard_normal(SHAPE).astype(np.float32))
            new = key if i % 10 else f"net/moved_{i:04d}/w"  # 10% renamed by the rule
            variables.append({"name": new, "dtype": "float32", "shape": list(SHAPE)})
        writer.commit()
    spec.write_text(json.dumps({"version": 1, "variables": variables}))
    return prefix


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: DelayServer
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.requests += 1
        time.sleep(server.delay)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size
        header = self.headers.get("Range") or ""
        if header.startswith("bytes=") and "," not in header:
            first, _, last = header[6:].partition("-")
            start, end = int(first), min(size, int(last) + 1 if last else size)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        with path.open("rb") as f:
            f.seek(start)
            left = end - start
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)


class DelayServer(http.server.ThreadingHTTPServer):
    """Serves ``root`` on 127.0.0.1 (a free port), ``delay`` seconds before every answer."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.lock = threading.Lock()
        self.delay = 0.0
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR / "latency")
    parser.add_argument("--delays-ms", type=float, nargs="+", default=[0, 20, 50])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    args = parser.parse_args(argv)
    prefix = make_inputs(args.dir / "input")
    spec = args.dir / "input" / "new.json"
    files = sorted(p.name for p in prefix.parent.iterdir() if p.name.startswith("model.ckpt"))
    server = DelayServer(prefix.parent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out, download = args.dir / "out", args.dir / "download"
    remap = [CKPTMAP, "remap", "--new-graph", str(spec), "--rule", RULE, "--out", f"{out}/"]

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        server.requests = 0

    gets = " && ".join(
        f"curl -sf -o {shlex.quote(str(download / name))} {server.url}/{name}" for name in files
    )
    local = f"{gets} && {shlex.join([*remap, '--old', str(download / 'model.ckpt')])}"
    rows: list[dict[str, Any]] = []
    results: list[Measurement] = []
    for delay_ms in args.delays_ms:
        server.delay = delay_ms / 1000
        print(f"delay {delay_ms:g} ms", file=sys.stderr)
        remote = measure(
            f"remap --old http:// ({delay_ms:g} ms)",
            [*remap, "--old", f"{server.url}/model.ckpt"],
            repeat=args.repeat,
            before=clean,
        )
        remote_requests = server.requests
        baseline = measure(
            f"GET each file, remap locally ({delay_ms:g} ms)",
            ["sh", "-c", local],
            repeat=args.repeat,
            before=clean,
        )
        baseline_requests = server.requests
        results += [remote, baseline]
        rows.append(
            {
                "delay_ms": delay_ms,
                "remote_s": remote.best_s,
                "download_then_local_s": baseline.best_s,
                "ratio": remote.best_s / baseline.best_s,
                "remote_requests": remote_requests,
                "download_requests": baseline_requests,
                "remote_peak_rss_mib": remote.max_rss_mib,
                "download_then_local_peak_rss_mib": baseline.max_rss_mib,
            }
        )
    server.shutdown()
    size = sum((prefix.parent / name).stat().st_size for name in files)
    print(f"\n{KEYS:,} keys, {size / 1e6:.0f} MB; best of {args.repeat} (seconds)")
    print(f"{'delay':>6} {'remote':>8} {'GET+local':>10} {'ratio':>6} {'requests':>9} "
          f"{'RSS remote':>11} {'RSS local':>10}")  # fmt: skip
    for row in rows:
        delay, remote_s, local_s = row["delay_ms"], row["remote_s"], row["download_then_local_s"]
        requests = f"{row['remote_requests']:>4} / {row['download_requests']:<2}"
        rss = (row["remote_peak_rss_mib"], row["download_then_local_peak_rss_mib"])
        print(f"{delay:>4g}ms {remote_s:>8.2f} {local_s:>10.2f} {row['ratio']:>5.2f}x {requests} "
              f"{rss[0]:>8.0f} MiB {rss[1]:>6.0f} MiB")  # fmt: skip
    path = write_json("latency", {"rows": rows, "results": [r.as_dict() for r in results]})
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
