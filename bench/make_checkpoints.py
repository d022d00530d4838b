"""Generate the benchmark inputs with real TensorFlow (tf.compat.v1 graph mode, Saver).

Inputs (each in its own folder under ``--dir``, default /tmp/ckptmap-bench; a
folder holding a ``DONE`` file is kept as is):

* ``many``: a checkpoint of 5,000 graph variables under ``model/`` -- 250 towers of a
  ``[1000+i, 16]`` embedding in 4 partitions, 7 dense layers, a float scalar and an
  int64 counter -- plus its ``graph.pbtxt`` and ``.meta``.
* ``big``: a checkpoint of about 1.04 GB -- ``model/embedding`` ``[3276800, 64]``
  float32 in 8 partitions (``fixed_size_partitioner(8)``, 839 MB), a dense tower of
  three ``[4096, 4096]`` layers (201 MB) and 300 small variables -- plus its
  ``graph.pbtxt`` and ``.meta``.
* ``big_v2``: the next model version's graph only (``graph.pbtxt`` and
  ``model.meta``, no checkpoint): every variable moved from ``model/`` to
  ``model_v2/`` (the rule ``^model_v2/(.*)$=model/{}`` maps it back) and the
  embedding in 5 partitions instead of 8.
* ``big_rename``: like ``big_v2`` but the embedding keeps its 8 partitions (a pure
  rename; the case for ``remap --link``).

Values are drawn in-graph by each variable's initializer with fixed seeds, so no
tensor is ever held twice in memory.

Usage::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python bench/make_checkpoints.py [--dir DIR] [NAME ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path("/tmp/ckptmap-bench")
NAMES = ("many", "big", "big_v2", "big_rename")
EMB_ROWS = 3_276_800  # x 64 float32 = 839 MB
EMB_DIM = 64
DENSE = 4096
DENSE_LAYERS = 3
MISC_VARIABLES = 300
MANY_TOWERS = 250  # x 20 graph variables = 5,000


def _tf():  # type: ignore[no-untyped-def]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def build_many(tf, scope: str) -> None:  # type: ignore[no-untyped-def]
    """The 5,000-variable model (in the current default graph)."""
    v1 = tf.compat.v1
    init = v1.random_uniform_initializer(-0.1, 0.1, seed=1)
    with v1.variable_scope(scope):
        for tower in range(MANY_TOWERS):
            with v1.variable_scope(f"tower_{tower}"):
                v1.get_variable(
                    "embedding",
                    [1000 + tower, 16],
                    initializer=init,
                    partitioner=v1.fixed_size_partitioner(4),
                )
                width = 64
                for layer in range(7):
                    out = 32 + 8 * ((tower + layer) % 5)
                    with v1.variable_scope(None, default_name="dense"):
                        v1.get_variable("kernel", [width, out], initializer=init)
                        v1.get_variable("bias", [out], initializer=v1.zeros_initializer())
                    width = out
                v1.get_variable("scale", [], initializer=v1.ones_initializer())
                v1.get_variable("counter", [], dtype=tf.int64, initializer=v1.zeros_initializer())


def build_big(tf, scope: str, emb_parts: int) -> None:  # type: ignore[no-untyped-def]
    """The ~1 GB model (in the current default graph)."""
    v1 = tf.compat.v1
    with v1.variable_scope(scope):
        v1.get_variable(
            "embedding",
            [EMB_ROWS, EMB_DIM],
            initializer=v1.random_uniform_initializer(-0.05, 0.05, seed=2),
            partitioner=v1.fixed_size_partitioner(emb_parts),
        )
        with v1.variable_scope("tower"):
            for layer in range(DENSE_LAYERS):
                with v1.variable_scope(None, default_name="dense"):
                    v1.get_variable(
                        "kernel",
                        [DENSE, DENSE],
                        initializer=v1.random_normal_initializer(stddev=0.02, seed=3 + layer),
                    )
                    v1.get_variable("bias", [DENSE], initializer=v1.zeros_initializer())
        with v1.variable_scope("misc"):
            for i in range(MISC_VARIABLES):
                shape = [[32], [8, 8], [16, 4, 2], []][i % 4]
                dtype = tf.int64 if i % 10 == 9 else tf.float32
                v1.get_variable(
                    f"var_{i}",
                    shape,
                    dtype=dtype,
                    initializer=v1.zeros_initializer()
                    if dtype == tf.int64
                    else v1.random_uniform_initializer(seed=100 + i),
                )


def save_checkpoint(out: Path, build) -> None:  # type: ignore[no-untyped-def]
    """Build a model, initialise it in-graph and save it with a Saver into ``out``."""
    tf = _tf()
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        build(tf)
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, str(out / "model.ckpt"))
    tf.io.write_graph(graph.as_graph_def(), str(out), "graph.pbtxt", as_text=True)


def write_graph_only(out: Path, build) -> None:  # type: ignore[no-untyped-def]
    """Build a model and write its ``graph.pbtxt`` and ``model.meta``, no values."""
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        build(tf)
        saver = tf.compat.v1.train.Saver()
        saver.export_meta_graph(str(out / "model.meta"))
    tf.io.write_graph(graph.as_graph_def(), str(out), "graph.pbtxt", as_text=True)


MAKERS = {
    "many": lambda out: save_checkpoint(out, lambda tf: build_many(tf, "model")),
    "big": lambda out: save_checkpoint(out, lambda tf: build_big(tf, "model", 8)),
    "big_v2": lambda out: write_graph_only(out, lambda tf: build_big(tf, "model_v2", 5)),
    "big_rename": lambda out: write_graph_only(out, lambda tf: build_big(tf, "model_v2", 8)),
}


def make(root: Path, name: str) -> Path:
    """Generate input ``name`` under ``root`` unless it is already complete."""
    out = root / name
    if (out / "DONE").exists():
        print(f"{out}: present, kept", file=sys.stderr)
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    MAKERS[name](out)
    (out / "DONE").write_text("")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(
        f"{out}: {size / 1e6:.1f} MB written in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where to write the inputs")
    parser.add_argument("names", nargs="*", help=f"inputs among {', '.join(NAMES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NAMES))
    if unknown:
        parser.error(f"unknown input(s) {', '.join(unknown)}; choose among {', '.join(NAMES)}")
    for name in args.names or NAMES:
        make(args.dir, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
