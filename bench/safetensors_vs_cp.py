"""Benchmark: ``ckptmap convert --to safetensors`` of the ~1 GB checkpoint vs ``cp`` + ``sync``.

Targets (issue 18): peak RSS <= 100 MB, time within 1.5x of ``cp`` + ``sync``.

Competitors, each a separate process writing a fresh output on the same file
system as its input (page cache warm: one untimed warm-up per command; the
output is removed before each run and ``sync`` runs, untimed, after each):

* ``cp`` of the ``.index`` and ``.data`` files into an empty folder,
* ``cp`` then ``sync`` of the copies and the folder (durable, like ckptmap's fsyncs),
* ``ckptmap convert --to safetensors`` (one 1 GB file: the default 5 GB shard limit),
* ``ckptmap convert --to safetensors --max-shard-size 300MB`` (four shards and an index),
* and the other way, ``ckptmap convert`` of the one-file output ``--to npz`` (a
  safetensors source: its peak RSS shows the source is read block by block).

Before timing, each output is read back with the ``safetensors`` package
(``safe_open``, numpy) and compared with ckptmap's reading of the checkpoint,
tensor by tensor. Peak RSS comes from GNU ``/usr/bin/time -f %M`` (bench/_util.py).

Usage::

    .venv/bin/python bench/safetensors_vs_cp.py [--dir /tmp/ckptmap-bench] [--repeat 3] [--keep]
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
    compile_ckptmap,
    ensure_checkpoints,
    file_bytes,
    measure,
    remove_inputs,
    table,
    write_json,
)

_VERIFY = """
import sys, json
from pathlib import Path
import numpy as np
from safetensors import safe_open
from ckptmap.readers.tf_bundle import open_checkpoint
out = Path(sys.argv[2])
index = out / "model.safetensors.index.json"
files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [
    "model.safetensors"]
seen = 0
with open_checkpoint(sys.argv[1]) as ckpt:
    for name in files:
        with safe_open(str(out / name), framework="np") as f:
            for key in f.keys():
                np.testing.assert_array_equal(f.get_tensor(key), ckpt.read(key), err_msg=key)
                seen += 1
    assert seen == len(ckpt.keys()), (seen, len(ckpt.keys()))
print(seen, len(files))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="benchmark inputs folder")
    parser.add_argument("--input", default="big", help="which input checkpoint to convert")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    parser.add_argument("--keep", action="store_true", help="keep the generated input checkpoint")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not byte-compile ckptmap first (its modules then compile from source every run)",
    )
    args = parser.parse_args(argv)
    if not args.no_compile:
        compile_ckptmap()
    ensure_checkpoints(args.dir, args.input)

    prefix = args.dir / args.input / "model.ckpt"
    files = checkpoint_files(prefix)
    size = file_bytes(files)
    out = args.dir / "out-safetensors"
    src = " ".join(shlex.quote(str(f)) for f in files)
    dst = shlex.quote(str(out))

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def clean_mkdir() -> None:
        clean()
        out.mkdir(parents=True)

    def convert_cmd(*extra: str) -> list[str]:
        base = [CKPTMAP, "convert", "--old", str(prefix), "--to", "safetensors"]
        return [*base, *extra, "--out", str(out)]

    cases: list[tuple[str, list[str]]] = [
        ("cp", ["cp", *map(str, files), str(out)]),
        ("cp + sync (fsync)", ["sh", "-c", f"cp {src} {dst} && sync {dst}/* {dst}"]),
        ("ckptmap convert --to safetensors", convert_cmd()),
        (
            "ckptmap convert --to safetensors (300MB shards)",
            convert_cmd("--max-shard-size", "300MB"),
        ),
    ]

    # correctness first: each output reads back equal to the checkpoint
    for name, cmd in cases[2:]:
        clean()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        checked = subprocess.run(
            [PYTHON, "-c", _VERIFY, str(prefix), str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        print(
            f"{name}: {checked[0]} tensors in {checked[1]} file(s) read back equal by the "
            "safetensors package",
            file=sys.stderr,
        )

    results: list[Measurement] = []
    for name, cmd in cases:
        before = clean_mkdir if cmd[0] in ("cp", "sh") else clean
        results.append(measure(name, cmd, repeat=args.repeat, before=before, after=os.sync))
    # the other way: the safetensors file as the source (read block by block, not mapped whole)
    clean()
    subprocess.run(convert_cmd(), check=True, stdout=subprocess.DEVNULL)
    back = args.dir / "out-npz"
    results.append(
        measure(
            "ckptmap convert of that file --to npz",
            [CKPTMAP, "convert", "--old", str(out / "model.safetensors"), "--to", "npz",
             "--out", str(back)],
            repeat=args.repeat,
            before=lambda: shutil.rmtree(back, ignore_errors=True),
            after=os.sync,
        )
    )  # fmt: skip
    shutil.rmtree(back, ignore_errors=True)
    clean()

    print(f"\n## convert --to safetensors {args.input} ({size:,} bytes)\n")
    print(table(results, "cp"))
    for r in results[2:]:
        print(
            f"{r.name}: {r.best_s / results[0].best_s:.2f}x cp, "
            f"{r.best_s / results[1].best_s:.2f}x cp + sync, peak RSS {r.max_rss_mib:.0f} MiB"
        )
    path = write_json(
        "safetensors_vs_cp",
        {"input": str(prefix), "bytes": size, "results": [r.as_dict() for r in results]},
    )
    print(f"\nwrote {path}")
    if not args.keep:
        remove_inputs(args.dir, args.input)
    return 0


if __name__ == "__main__":
    sys.exit(main())
