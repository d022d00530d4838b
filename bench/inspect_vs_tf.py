"""Benchmark: ``ckptmap inspect --json`` vs TensorFlow's ``tf.train.list_variables``.

End to end, whole processes, page cache warm: how long does it take to learn what
is in a checkpoint? Compared, on the 5,000-variable checkpoint (``many``) and the
~1 GB one (``big``) made by ``bench/make_checkpoints.py`` (generated first if
missing):

* ``.venv/bin/ckptmap inspect --json PREFIX`` (the console script),
* ``python -m ckptmap inspect --json PREFIX``,
* ``python -c "import tensorflow as tf; print(tf.train.list_variables(PREFIX))"``.

Every command prints to /dev/null, and the commands run in rounds (each once per
round, after a warm-up round), so a slow minute of the machine falls on all of them
alike. Before timing, the tensor names of both tools
are checked to agree. Targets: ckptmap at least 10x faster (issue 2); on `many`, at most
0.05x of TF's time (issue 15 item 5). ckptmap is byte-compiled first (see --no-compile).

Usage::

    .venv/bin/python bench/inspect_vs_tf.py [--dir /tmp/ckptmap-bench] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _util import (
    CKPTMAP,
    DEFAULT_DIR,
    PYTHON,
    Measurement,
    bench_env,
    compile_ckptmap,
    ensure_checkpoints,
    measure_rounds,
    remove_inputs,
    table,
    write_json,
)

TF_LIST = (
    "import sys, tensorflow as tf; "
    "print('\\n'.join(f'{n} {s}' for n, s in tf.train.list_variables(sys.argv[1])))"
)


def commands(prefix: Path) -> dict[str, list[str]]:
    return {
        "tf.train.list_variables": [PYTHON, "-c", TF_LIST, str(prefix)],
        "ckptmap inspect --json": [CKPTMAP, "inspect", "--json", str(prefix)],
        "python -m ckptmap inspect --json": [
            PYTHON,
            "-m",
            "ckptmap",
            "inspect",
            "--json",
            str(prefix),
        ],
    }


def check_same_names(prefix: Path) -> int:
    """Both tools list the same tensors with the same shapes; returns how many."""
    env = bench_env()
    tf_out = subprocess.run(
        [PYTHON, "-c", TF_LIST, str(prefix)], capture_output=True, text=True, check=True, env=env
    ).stdout
    tf_names = {}
    for line in tf_out.splitlines():
        name, _, shape = line.partition(" ")
        tf_names[name] = json.loads(shape)
    ours = json.loads(
        subprocess.run(
            [CKPTMAP, "inspect", "--json", str(prefix)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    )
    our_names = {t["name"]: t["shape"] for t in ours["tensors"]}
    if our_names != tf_names:
        raise SystemExit(f"{prefix}: ckptmap and TensorFlow list different tensors")
    return len(our_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="benchmark inputs folder")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command")
    parser.add_argument("--keep", action="store_true", help="keep the generated big checkpoint")
    parser.add_argument("inputs", nargs="*", default=["many", "big"], help="inputs to list")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not byte-compile ckptmap first (its modules then compile from source every run)",
    )
    args = parser.parse_args(argv)
    if not args.no_compile:
        compile_ckptmap()
    ensure_checkpoints(args.dir, *args.inputs)

    payload: dict[str, object] = {}
    for name in args.inputs:
        prefix = args.dir / name / "model.ckpt"
        count = check_same_names(prefix)
        print(f"{name}: {count} tensors, names and shapes agree", file=sys.stderr)
        results: list[Measurement] = measure_rounds(commands(prefix), repeat=args.repeat)
        base = results[0]
        print(f"\n## {name} ({count} tensors)\n")
        print(table(results, base.name))
        for r in results[1:]:
            print(
                f"{r.name}: {base.best_s / r.best_s:.1f}x faster than TensorFlow "
                f"(best of {args.repeat})"
            )
        payload[name] = {"tensors": count, "results": [r.as_dict() for r in results]}
    path = write_json("inspect_vs_tf", payload)
    print(f"\nwrote {path}")
    if not args.keep and "big" in args.inputs:
        remove_inputs(args.dir, "big")
    return 0


if __name__ == "__main__":
    sys.exit(main())
