"""Benchmark: rewriting a ~1 GB checkpoint unchanged with ckptmap's writer vs ``cp``.

The rewrite (``bench/_rewrite.py``) opens the ``big`` checkpoint with ckptmap's
reader and copies every stored tensor with ``BundleWriter.add_copy`` in (shard,
offset) order, then commits (fsync + atomic rename). Baselines, all copying the
``.index`` and ``.data`` files into a fresh folder on the same filesystem:

* ``cp`` (coreutils 9 default: ``copy_file_range``, reflink when possible),
* ``cp --reflink=never``,
* ``cp`` then ``sync`` of the copied files and the folder (fsync, as ckptmap does).

Page cache warm (one untimed warm-up per command); the output folder is removed
before each run and ``sync`` runs (untimed) after each, so no run pays for the
previous one's write-back. Before timing, the rewrite's files are checked to be
byte-identical to the input. Target (writer issue): rewrite <= 1.3x ``cp``, peak
RSS < 200 MB.

Usage::

    .venv/bin/python bench/rewrite_vs_cp.py [--dir /tmp/ckptmap-bench] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from _util import (
    BENCH,
    DEFAULT_DIR,
    PYTHON,
    Measurement,
    checkpoint_files,
    ensure_checkpoints,
    file_bytes,
    measure,
    remove_inputs,
    table,
    write_json,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="benchmark inputs folder")
    parser.add_argument("--input", default="big", help="which input checkpoint to rewrite")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    parser.add_argument("--keep", action="store_true", help="keep the generated input checkpoint")
    args = parser.parse_args(argv)
    ensure_checkpoints(args.dir, args.input)

    prefix = args.dir / args.input / "model.ckpt"
    files = checkpoint_files(prefix)
    size = file_bytes(files)
    out = args.dir / "out-rewrite"
    new_prefix = out / "model.ckpt"
    src = " ".join(shlex.quote(str(f)) for f in files)
    dst = shlex.quote(str(out))

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def clean_mkdir() -> None:
        clean()
        out.mkdir(parents=True)

    def sync() -> None:
        os.sync()

    rewrite = [PYTHON, str(BENCH / "_rewrite.py"), str(prefix), str(new_prefix)]

    # correctness first: the rewrite is byte-identical to its input
    clean()
    subprocess.run(rewrite, check=True)
    for f in files:
        if not filecmp.cmp(f, out / f.name, shallow=False):
            raise SystemExit(f"{out / f.name} differs from {f}")
    print(f"rewrite of {size:,} bytes is byte-identical to the input", file=sys.stderr)

    cases: list[tuple[str, list[str]]] = [
        ("cp", ["cp", *map(str, files), str(out)]),
        ("cp --reflink=never", ["cp", "--reflink=never", *map(str, files), str(out)]),
        ("cp + sync (fsync)", ["sh", "-c", f"cp {src} {dst} && sync {dst}/* {dst}"]),
        ("ckptmap rewrite (CRC checked)", rewrite),
        ("ckptmap rewrite (--trust-crc)", [*rewrite, "--trust-crc"]),
    ]
    results: list[Measurement] = []
    for name, cmd in cases:
        before = clean_mkdir if cmd[0] in ("cp", "sh") else clean
        results.append(measure(name, cmd, repeat=args.repeat, before=before, after=sync))
    clean()

    print(f"\n## rewrite {args.input} ({size:,} bytes) unchanged\n")
    print(table(results, "cp"))
    fsync_base = results[2]
    for r in results[3:]:
        print(
            f"{r.name}: {r.best_s / results[0].best_s:.2f}x cp, "
            f"{r.best_s / fsync_base.best_s:.2f}x cp + sync, peak RSS {r.max_rss_mib:.0f} MiB"
        )
    path = write_json(
        "rewrite_vs_cp",
        {"input": str(prefix), "bytes": size, "results": [r.as_dict() for r in results]},
    )
    print(f"\nwrote {path}")
    if not args.keep:
        remove_inputs(args.dir, args.input)
    return 0


if __name__ == "__main__":
    sys.exit(main())
