"""Remap a checkpoint the way users do it with TensorFlow today (a benchmark subject).

Imports the new model's ``.meta`` (``import_meta_graph``), reads each old tensor
once with ``tf.train.load_checkpoint`` (partitioned ones come back whole), cuts
the part each new variable (or variable partition) needs as a numpy view,
assigns it through one placeholder per variable, and saves with the imported
graph's Saver. Variables are visited grouped by old key, so every old tensor is
read exactly once and only one is held at a time.

Usage::

    .venv/bin/python bench/_tf_remap.py OLD NEW_META 'PATTERN=FORMAT' OUT_PREFIX
"""

from __future__ import annotations

import os
import re
import sys


def main(argv: list[str]) -> int:
    old, meta, rule, out = argv
    pattern, fmt = rule.split("=", 1)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    v1 = tf.compat.v1
    reader = tf.train.load_checkpoint(old)
    graph = tf.Graph()
    with graph.as_default():
        saver = v1.train.import_meta_graph(meta)
        steps = []
        for var in v1.global_variables():
            info = var._save_slice_info  # set on each part of a partitioned variable
            name = info.full_name if info else var.op.name
            match = re.match(pattern, name)
            old_key = fmt.format(*match.groups()) if match else name
            feed = v1.placeholder(var.dtype.base_dtype, var.shape)
            steps.append((old_key, info, feed, var.assign(feed, read_value=False)))
        steps.sort(key=lambda step: step[0])
        with v1.Session(graph=graph) as sess:
            held_key, held = None, None
            for old_key, info, feed, assign in steps:
                if old_key != held_key:
                    held = None  # free the previous tensor before reading the next
                    held, held_key = reader.get_tensor(old_key), old_key
                value = held
                if info:
                    value = held[
                        tuple(
                            slice(o, o + n)
                            for o, n in zip(info.var_offset, info.var_shape, strict=True)
                        )
                    ]
                sess.run(assign, {feed: value})
            held = None
            saver.save(sess, out, write_meta_graph=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
