"""Benchmark: ``ckptmap convert`` of a ~1 GB checkpoint to zarr3 (and OCDBT) vs ``cp``.

Competitors, each a separate process writing a fresh output on the same file
system as its input (page cache warm: one untimed warm-up per command; the
output is removed before each run and ``sync`` runs, untimed, after each):

* ``cp`` of the ``.index`` and ``.data`` files into an empty folder,
* ``cp`` then ``sync`` of the copies and the folder (durable, like ckptmap's fsyncs),
* ``ckptmap convert --to zarr3`` (one file per chunk; tensorstore fsyncs each),
* ``ckptmap convert --to zarr3 --ocdbt`` (one OCDBT database).

Before timing, each store is read back with ckptmap's zarr reader and compared
with the checkpoint, tensor by tensor. Peak RSS comes from GNU
``/usr/bin/time -f %M`` (bench/_util.py).

Usage::

    .venv/bin/python bench/convert_vs_cp.py [--dir /tmp/ckptmap-bench] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from _util import (
    CKPTMAP,
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

_VERIFY = """
import sys
import numpy as np
from ckptmap.readers.tf_bundle import open_checkpoint
from ckptmap.readers.zarr_store import open_store
with open_checkpoint(sys.argv[1]) as ckpt, open_store(sys.argv[2]) as store:
    assert store.specs() == ckpt.specs(), "specs differ"
    for key in ckpt.keys():
        np.testing.assert_array_equal(store.read(key), ckpt.read(key), err_msg=key)
print(len(ckpt.keys()))
"""


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="benchmark inputs folder")
    parser.add_argument("--input", default="big", help="which input checkpoint to convert")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    parser.add_argument("--keep", action="store_true", help="keep the generated input checkpoint")
    args = parser.parse_args(argv)
    ensure_checkpoints(args.dir, args.input)

    prefix = args.dir / args.input / "model.ckpt"
    files = checkpoint_files(prefix)
    size = file_bytes(files)
    out = args.dir / "out-convert"
    src = " ".join(shlex.quote(str(f)) for f in files)
    dst = shlex.quote(str(out))

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def clean_mkdir() -> None:
        clean()
        out.mkdir(parents=True)

    def convert_cmd(*extra: str) -> list[str]:
        base = [CKPTMAP, "convert", "--old", str(prefix), "--to", "zarr3"]
        return [*base, *extra, "--out", str(out)]

    cases: list[tuple[str, list[str]]] = [
        ("cp", ["cp", *map(str, files), str(out)]),
        ("cp + sync (fsync)", ["sh", "-c", f"cp {src} {dst} && sync {dst}/* {dst}"]),
        ("ckptmap convert --to zarr3", convert_cmd()),
        ("ckptmap convert --to zarr3 --ocdbt", convert_cmd("--ocdbt")),
    ]

    # correctness first: each store reads back equal to the checkpoint
    store_bytes: dict[str, int] = {}
    for name, cmd in cases[2:]:
        clean()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        checked = subprocess.run(
            [PYTHON, "-c", _VERIFY, str(prefix), str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        store_bytes[name] = _folder_bytes(out)
        print(f"{name}: {checked} tensors read back equal", file=sys.stderr)

    results: list[Measurement] = []
    for name, cmd in cases:
        before = clean_mkdir if cmd[0] in ("cp", "sh") else clean
        results.append(measure(name, cmd, repeat=args.repeat, before=before, after=os.sync))
    clean()

    print(f"\n## convert {args.input} ({size:,} bytes)\n")
    print(table(results, "cp"))
    for r in results[2:]:
        print(
            f"{r.name}: {r.best_s / results[0].best_s:.2f}x cp, "
            f"{r.best_s / results[1].best_s:.2f}x cp + sync, peak RSS {r.max_rss_mib:.0f} MiB, "
            f"store {store_bytes[r.name]:,} bytes"
        )
    path = write_json(
        "convert_vs_cp",
        {
            "input": str(prefix),
            "bytes": size,
            "store_bytes": store_bytes,
            "results": [r.as_dict() for r in results],
        },
    )
    print(f"\nwrote {path}")
    if not args.keep:
        remove_inputs(args.dir, args.input)
    return 0


if __name__ == "__main__":
    sys.exit(main())
