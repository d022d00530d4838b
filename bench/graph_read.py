"""Reading a big ``graph.pbtxt``: ckptmap's fast scanner vs protobuf's text_format.

Generates (with TensorFlow, once; reused when present) the GraphDef text of a
TF1-style model with about 5,000 graph variables -- per tower one embedding table
in 4 partitions and 8 dense layers, resource variables with random initializers,
and a ``tf.compat.v1.train.Saver`` -- into ``--dir`` (default
``/tmp/ckptmap-bench/graph_read``), then times, in this process,

* ``read_model_spec(path, fast=True)``: ckptmap's text scanner (no TensorFlow);
* ``read_model_spec(path, fast=False)``: protobuf ``text_format`` over the whole
  file, then the same graph logic.

It checks that both give the same ModelSpec and prints the times and the ratio.
A reader timed more than once first gets one untimed warm-up call (page cache warm).
Results also go to ``bench/out/graph_read.json``. ``--graph PATH`` times another
``graph.pbtxt`` instead (e.g. ``/tmp/ckptmap-bench/many/graph.pbtxt`` from
``make_checkpoints.py``).

Usage::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/graph_read.py [--dir DIR] [--variables 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import DEFAULT_DIR, write_json  # noqa: E402

from ckptmap.readers.graph import read_model_spec  # noqa: E402
from ckptmap.spec import ModelSpec  # noqa: E402


def write_graph(out: Path, n_variables: int, parts: int) -> Path:
    """Build the model graph with TensorFlow and write ``out/graph.pbtxt``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    made = 0
    with graph.as_default():
        v1.train.get_or_create_global_step()
        made += 1
        tower = 0
        while made < n_variables:
            with v1.variable_scope(f"tower_{tower}"):
                v1.get_variable(
                    "embedding",
                    [1000 + tower, 16],
                    partitioner=v1.fixed_size_partitioner(parts),
                    use_resource=True,
                )
                made += parts
                for _ in range(8):
                    with v1.variable_scope(None, default_name="dense"):
                        v1.get_variable("kernel", [64, 32], use_resource=True)
                        v1.get_variable("bias", [32], use_resource=True)
                    made += 2
            tower += 1
        v1.train.Saver()
    out.mkdir(parents=True, exist_ok=True)
    tf.io.write_graph(graph.as_graph_def(), str(out), "graph.pbtxt", as_text=True)
    return out / "graph.pbtxt"


def timed(call: Callable[[], ModelSpec], repeat: int) -> tuple[list[float], ModelSpec]:
    """``repeat`` (at least 1) timed calls, after one untimed warm-up call when ``repeat`` > 1."""
    if repeat > 1:
        call()
    times = []
    for _ in range(max(repeat, 1) - 1):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    result = call()
    times.append(time.perf_counter() - start)
    return times, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR / "graph_read",
        help="folder for the generated graph.pbtxt (reused when present)",
    )
    parser.add_argument("--graph", type=Path, help="time this graph.pbtxt instead")
    parser.add_argument("--variables", type=int, default=5000, help="graph variables to make")
    parser.add_argument("--parts", type=int, default=4, help="partitions per embedding table")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of the fast reader")
    parser.add_argument("--repeat-full", type=int, default=1, help="timed runs of text_format")
    args = parser.parse_args(argv)

    path = args.graph or args.dir / "graph.pbtxt"
    if not path.exists():
        if args.graph:
            parser.error(f"{path} does not exist")
        start = time.perf_counter()
        write_graph(args.dir, args.variables, args.parts)
        print(f"wrote {path} with TensorFlow in {time.perf_counter() - start:.1f} s")
    size_mb = path.stat().st_size / 1e6

    fast_times, fast = timed(lambda: read_model_spec(path, fast=True), args.repeat)
    full_times, full = timed(lambda: read_model_spec(path, fast=False), args.repeat_full)
    if fast != full:
        print("ERROR: the fast and the full reader disagree", file=sys.stderr)
        return 1

    fast_best, full_best = min(fast_times), min(full_times)
    print(f"{path}: {size_mb:.1f} MB, {len(fast.variables)} variables, {len(fast.keys)} keys")
    print(f"{'reader':<30} {'best s':>8} {'median s':>9} {'MB/s':>7}")
    for name, times in (
        ("fast (ckptmap scanner)", fast_times),
        ("full (protobuf text_format)", full_times),
    ):
        best = min(times)
        print(f"{name:<30} {best:8.3f} {statistics.median(times):9.3f} {size_mb / best:7.1f}")
    print(f"speed-up: {full_best / fast_best:.1f}x")
    out = write_json(
        "graph_read",
        {
            "graph": str(path),
            "size_bytes": path.stat().st_size,
            "variables": len(fast.variables),
            "keys": len(fast.keys),
            "fast_s": fast_times,
            "full_s": full_times,
            "speedup": full_best / fast_best,
        },
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
