"""Benchmark: ``ckptmap remap`` vs the TensorFlow script users write today, and vs ``cp``.

The case: the ~1 GB ``big`` checkpoint (made by ``bench/make_checkpoints.py``)
migrated to the ``big_v2`` model, in which every variable moved from ``model/``
to ``model_v2/`` and the 839 MB embedding is partitioned in 5 instead of 8.
Compared, as whole processes, page cache warm:

* ``ckptmap remap --old big --new-graph big_v2/graph.pbtxt --rule '^model_v2/(.*)$=model/{}'``,
* ``bench/_tf_remap.py``: ``import_meta_graph(big_v2/model.meta)``, each old tensor
  read once with ``tf.train.load_checkpoint``, re-split with numpy views, assigned
  through placeholders, saved with the graph's Saver,
* ``cp`` of the checkpoint's files (and ``cp`` + ``sync``, since ckptmap fsyncs).

And the rename-only case (``big_rename``: same names as ``big_v2``, 8 partitions)
with ``ckptmap remap --link``, which hard-links the data file and writes a new index.

Before timing, ckptmap's output is checked to hold exactly the same keys, slices
and values as TensorFlow's, and the ``--link`` output the old values under the
new names. Outputs are removed before each run and ``sync`` runs (untimed) after
each. Targets (remap issue): <= 1.5x ``cp``, >= 5x faster than TF, peak RSS <=
largest re-split part + 100 MB; ``remap --link`` < 1 s.

Usage::

    .venv/bin/python bench/remap_vs_tf.py [--dir /tmp/ckptmap-bench] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from _util import (
    BENCH,
    CKPTMAP,
    DEFAULT_DIR,
    MIB,
    PYTHON,
    Measurement,
    bench_env,
    checkpoint_files,
    ensure_checkpoints,
    file_bytes,
    measure,
    remove_inputs,
    table,
    write_json,
)

from ckptmap.readers.tf_bundle import open_checkpoint

RULE = "^model_v2/(.*)$=model/{}"


def compare(expected: Path, actual: Path, rename: tuple[str, str] | None = None) -> int:
    """Same keys, dtypes, shapes, slices and values (``rename`` maps expected keys)."""
    with open_checkpoint(expected) as a, open_checkpoint(actual) as b:
        names = {k: k.replace(*rename, 1) if rename else k for k in a}
        if sorted(names.values()) != b.keys():
            raise SystemExit(f"{actual}: keys differ from {expected}")
        for key, new in names.items():
            ea, eb = a.entry(key), b.entry(new)
            if (ea.dtype, ea.shape) != (eb.dtype, eb.shape):
                raise SystemExit(f"{actual}: {new} has another dtype or shape")
            if rename is None and ea.slices != eb.slices:
                raise SystemExit(f"{actual}: {new} is partitioned differently")
            if eb.slices:
                for spec, part in b.slice_entries(new):
                    whole = a.read(key)[tuple(slice(s, s + n) for s, n in spec.extents)]
                    if not np.array_equal(whole, b.read_slice_entry(part)):
                        raise SystemExit(f"{actual}: {new} slice {spec} has other values")
            elif not np.array_equal(a.read(key), b.read(new)):
                raise SystemExit(f"{actual}: {new} has other values")
        return len(names)


def largest_part(prefix: Path, key: str) -> int:
    """Bytes of the largest stored slice of ``key`` (or the whole tensor)."""
    with open_checkpoint(prefix) as ckpt:
        parts = ckpt.slice_entries(key)
        return max(e.size for _, e in parts) if parts else ckpt.entry(key).size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="benchmark inputs folder")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoint")
    args = parser.parse_args(argv)
    root: Path = args.dir
    ensure_checkpoints(root, "big", "big_v2", "big_rename")

    old = root / "big" / "model.ckpt"
    files = checkpoint_files(old)
    size = file_bytes(files)
    out = root / "out-remap"
    remap = [
        CKPTMAP, "remap", "--old", str(old), "--new-graph", str(root / "big_v2" / "graph.pbtxt"),
        "--rule", RULE, "--out", str(out / "model.ckpt"),
    ]  # fmt: skip
    tf_script = [
        PYTHON, str(BENCH / "_tf_remap.py"), str(old), str(root / "big_v2" / "model.meta"),
        RULE, str(out / "model.ckpt"),
    ]  # fmt: skip
    link = [
        CKPTMAP, "remap", "--old", str(old),
        "--new-graph", str(root / "big_rename" / "graph.pbtxt"),
        "--rule", RULE, "--out", str(out / "model.ckpt"), "--link",
    ]  # fmt: skip
    src = " ".join(shlex.quote(str(f)) for f in files)
    dst = shlex.quote(str(out))

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def clean_mkdir() -> None:
        clean()
        out.mkdir(parents=True)

    # correctness: ckptmap == TensorFlow, and --link keeps the old values
    env = bench_env()
    tf_out = root / "out-remap-tf"
    shutil.rmtree(tf_out, ignore_errors=True)
    tf_out.mkdir(parents=True)
    subprocess.run([*tf_script[:-1], str(tf_out / "model.ckpt")], check=True, env=env)
    clean()
    subprocess.run(remap, check=True, env=env, stdout=subprocess.DEVNULL)
    count = compare(tf_out / "model.ckpt", out / "model.ckpt")
    part = largest_part(out / "model.ckpt", "model_v2/embedding")
    shutil.rmtree(tf_out)
    clean()
    subprocess.run(link, check=True, env=env, stdout=subprocess.DEVNULL)
    compare(old, out / "model.ckpt", rename=("model/", "model_v2/"))
    clean()
    print(f"{count} tensors: ckptmap's output equals TensorFlow's", file=sys.stderr)

    cases: list[tuple[str, list[str]]] = [
        ("cp", ["cp", *map(str, files), str(out)]),
        ("cp + sync (fsync)", ["sh", "-c", f"cp {src} {dst} && sync {dst}/* {dst}"]),
        ("ckptmap remap", remap),
        ("TF script (_tf_remap.py)", tf_script),
        ("ckptmap remap --link (rename only)", link),
    ]
    results: list[Measurement] = []
    for name, cmd in cases:
        before = clean_mkdir if cmd[0] in ("cp", "sh") or cmd is tf_script else clean
        results.append(measure(name, cmd, repeat=args.repeat, before=before, after=os.sync))
    clean()

    cp, cp_sync, ours, tf, linked = results
    print(f"\n## remap big ({size:,} bytes): rename all, embedding 8 -> 5 partitions\n")
    print(table(results, "cp"))
    print(
        f"\nckptmap remap: {ours.best_s / cp.best_s:.2f}x cp, "
        f"{ours.best_s / cp_sync.best_s:.2f}x cp + sync, "
        f"{tf.best_s / ours.best_s:.1f}x faster than TF, peak RSS {ours.max_rss_mib:.0f} MiB "
        f"(largest re-split part {part / MIB:.0f} MiB + 100 MiB = {part / MIB + 100:.0f} MiB)"
    )
    print(f"ckptmap remap --link: {linked.best_s:.3f} s (target < 1 s)")
    path = write_json(
        "remap_vs_tf",
        {
            "input": str(old),
            "bytes": size,
            "tensors": count,
            "largest_resplit_part_bytes": part,
            "results": [r.as_dict() for r in results],
        },
    )
    print(f"\nwrote {path}")
    if not args.keep:
        remove_inputs(root, "big")
    return 0


if __name__ == "__main__":
    sys.exit(main())
