"""Benchmark: ``ckptmap check`` end to end, as a CI step runs it (target: < 1 s).

Whole processes, page cache warm, on the inputs of ``bench/make_checkpoints.py``:

* ``ckptmap check --old many --new-graph many/graph.pbtxt``: 5,000 graph
  variables, a 22 MB ``graph.pbtxt``, every key resolved by exact name;
* the same with ``--json``;
* ``ckptmap check --old big --new-graph big_v2/graph.pbtxt --rule '^model_v2/(.*)$=model/{}'``:
  every key renamed, the embedding re-partitioned 8 -> 5.

Baseline for the ratios: ``python -c pass`` (the interpreter's start-up floor).
Every run must exit 0 (everything resolves).

Usage::

    .venv/bin/python bench/check_speed.py [--dir /tmp/ckptmap-bench] [--repeat 5] [--keep]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _util import (
    CKPTMAP,
    DEFAULT_DIR,
    PYTHON,
    Measurement,
    ensure_checkpoints,
    measure,
    remove_inputs,
    table,
    write_json,
)

RULE = "^model_v2/(.*)$=model/{}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="benchmark inputs folder")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command")
    parser.add_argument("--keep", action="store_true", help="keep the generated big checkpoint")
    args = parser.parse_args(argv)
    root: Path = args.dir
    ensure_checkpoints(root, "many", "big", "big_v2")

    many = [
        CKPTMAP, "check", "--old", str(root / "many" / "model.ckpt"),
        "--new-graph", str(root / "many" / "graph.pbtxt"),
    ]  # fmt: skip
    big = [
        CKPTMAP, "check", "--old", str(root / "big" / "model.ckpt"),
        "--new-graph", str(root / "big_v2" / "graph.pbtxt"), "--rule", RULE,
    ]  # fmt: skip
    cases = [
        ("python -c pass", [PYTHON, "-c", "pass"]),
        ("check many (5,000 variables)", many),
        ("check many --json", [*many, "--json"]),
        ("check big -> big_v2 --rule", big),
    ]
    results: list[Measurement] = [measure(name, cmd, repeat=args.repeat) for name, cmd in cases]
    print("\n## ckptmap check end to end\n")
    print(table(results, "python -c pass"))
    for r in results[1:]:
        verdict = "meets" if r.best_s < 1 else "misses"
        print(f"{r.name}: best {r.best_s:.3f} s, {verdict} the 1 s target")
    path = write_json("check_speed", {"results": [r.as_dict() for r in results]})
    print(f"\nwrote {path}")
    if not args.keep:
        remove_inputs(root, "big")
    return 0


if __name__ == "__main__":
    sys.exit(main())
