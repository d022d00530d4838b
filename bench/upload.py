"""``remap --out s3://`` to a local moto_server vs remap locally, then upload every file.

The input is latency.py's synthetic 5,000-key, ~200 MB checkpoint (one data
file; the new spec renames 10% of the keys, brought back by one rule). A
``moto_server`` (``moto[server]``, an S3 API) runs on 127.0.0.1 with a free
port. For each layout the same run times

* ``ckptmap remap --old <local> --out s3://bucket/run/ <layout>`` (uploads
  as files complete, several at once; ckptmap/writers/_url_commit.py), and
* ``ckptmap remap --old <local> --out <local folder>/ <layout>`` followed by
  ``upload.py --put-each <folder> s3://bucket/base/``: one PUT per file, all
  started at once as tensorstore futures (one shell command),

where the layouts are ``--shards 1``, ``--shards 4`` (shards filled together,
complete only at the end) and no option, the default of a URL output: shards
of 32 MiB filled one after another, each uploaded while the next is written
(the local baseline gets ``--shard-size 32MiB``, so both write the same files).

and prints the ratio (ckptmap / remap-then-upload, best and median), each
command's peak RSS, and the peak bytes in the ``TMPDIR`` staging folder of one
more, untimed ``--out s3://`` run (sampled every 10 ms) against the local output
the baseline writes.
Objects are deleted between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from _util import CKPTMAP, DEFAULT_DIR, PYTHON, Measurement, measure, run_once, write_json
from latency import KEYS, RULE, make_inputs

HERE = Path(__file__).resolve().parent
MOTO = str(Path(PYTHON).parent / "moto_server")
BUCKET = "ckptmap-bench"


def put_each(folder: Path, url: str) -> None:
    """Upload every file under ``folder`` to ``url``: one PUT each, all in flight at once."""
    from ckptmap.storage import KvLocation

    location = KvLocation(url)
    pending = [
        location.start_write(p.relative_to(folder).as_posix(), p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]
    for write in pending:
        write.result()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto_server did not start") from None
            time.sleep(0.1)
    urllib.request.urlopen(urllib.request.Request(f"{url}/{BUCKET}", method="PUT")).close()
    return process, url


class DiskPeak:
    """Samples the bytes under a folder every 10 ms while running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _size(self) -> int:
        total = 0
        for root, _, names in os.walk(self.folder):
            for name in names:
                with contextlib.suppress(OSError):  # removed meanwhile
                    total += os.lstat(os.path.join(root, name)).st_size
        return total

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR / "upload")
    parser.add_argument(
        "--layouts", nargs="+", default=["1", "4", "default"],
        help="shard counts (--shards N), 'default' (no option: 32 MiB shards for a URL)"
        " or sizes such as 16MiB (--shard-size)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    parser.add_argument("--put-each", nargs=2, metavar=("FOLDER", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.put_each:
        put_each(Path(args.put_each[0]), args.put_each[1])
        return 0
    prefix = make_inputs(DEFAULT_DIR / "latency" / "input")  # shared with latency.py
    spec = prefix.parent / "new.json"
    moto, endpoint = start_moto()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
        }
    )
    from ckptmap.storage import KvLocation

    staging = args.dir / "tmp"
    local = args.dir / "local"
    os.environ["TMPDIR"] = str(staging)
    bucket = KvLocation(f"s3://{BUCKET}/")

    def clean() -> None:
        for name in bucket.list() or []:
            bucket.delete(name)
        shutil.rmtree(local, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)

    rows: list[dict[str, Any]] = []
    results: list[Measurement] = []
    try:
        for layout in args.layouts:
            remap = [CKPTMAP, "remap", "--old", str(prefix), "--new-graph", str(spec)]
            remap += ["--rule", RULE]
            if layout == "default":
                to_s3, to_disk, label = [], ["--shard-size", "32MiB"], "default (32 MiB in turn)"
            elif layout.isdigit():
                to_s3 = to_disk = ["--shards", layout]
                label = f"--shards {layout}"
            else:
                to_s3 = to_disk = ["--shard-size", layout]
                label = f"--shard-size {layout}"
            print(label, file=sys.stderr)
            streamed = measure(
                f"remap --out s3:// ({label})",
                [*remap, *to_s3, "--out", f"s3://{BUCKET}/run/"],
                repeat=args.repeat,
                before=clean,
            )
            disk = DiskPeak(staging)  # one more run, untimed: the sampling costs CPU
            clean()
            disk.start()
            run_once([*remap, *to_s3, "--out", f"s3://{BUCKET}/run/"])
            disk.stop()
            shard_count = len([n for n in bucket.list() or [] if ".data-" in n])
            upload = [PYTHON, str(HERE / "upload.py"), "--put-each", str(local)]
            upload.append(f"s3://{BUCKET}/base/")
            local_remap = shlex.join([*remap, *to_disk, "--out", f"{local}/"])
            baseline = measure(
                f"remap locally, then PUT each file ({label})",
                ["sh", "-c", f"{local_remap} && {shlex.join(upload)}"],
                repeat=args.repeat,
                before=clean,
            )
            local_bytes = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
            results += [streamed, baseline]
            rows.append(
                {
                    "layout": label,
                    "shards": shard_count,
                    "streamed_s": streamed.best_s,
                    "remap_then_upload_s": baseline.best_s,
                    "ratio": streamed.best_s / baseline.best_s,
                    "ratio_of_medians": streamed.median_s / baseline.median_s,
                    "streamed_peak_rss_mib": streamed.max_rss_mib,
                    "remap_then_upload_peak_rss_mib": baseline.max_rss_mib,
                    "streamed_peak_staging_mib": disk.peak / 2**20,
                    "baseline_local_output_mib": local_bytes / 2**20,
                }
            )
    finally:
        clean()
        shutil.rmtree(args.dir, ignore_errors=True)
        moto.terminate()
        moto.wait()
    print(f"\n{KEYS:,} keys, ~200 MB, moto_server on 127.0.0.1; best of {args.repeat} (seconds)")
    print(f"{'layout':>24} {'shards':>6} {'--out s3':>9} {'remap+PUT':>10} {'ratio':>6} "
          f"{'median':>6} {'RSS s3 / base':>15} {'disk s3 / base':>16}")  # fmt: skip
    for row in rows:
        rss = f"{row['streamed_peak_rss_mib']:.0f} / {row['remap_then_upload_peak_rss_mib']:.0f}"
        disk_mib = (
            f"{row['streamed_peak_staging_mib']:.0f} / {row['baseline_local_output_mib']:.0f}"
        )
        print(f"{row['layout']:>24} {row['shards']:>6} {row['streamed_s']:>9.2f} "
              f"{row['remap_then_upload_s']:>10.2f} "
              f"{row['ratio']:>5.2f}x {row['ratio_of_medians']:>5.2f}x "
              f"{rss:>11} MiB {disk_mib:>12} MiB")  # fmt: skip
    path = write_json("upload", {"rows": rows, "results": [r.as_dict() for r in results]})
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
