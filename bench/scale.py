"""Benchmark: inspect and check on 10,000- and 100,000-key checkpoints (issue 15, item 5).

Synthetic inputs, written with ckptmap's own writer (timing only): ``N`` keys
``model/tower_<i>/dense/{w,b,w/Adam,b/Adam}`` (w ``[8,4]``, b ``[4]``, float32),
and two JSON specs of the new model: ``same.json`` (every key by its own name)
and ``renamed.json`` (every fifth tower's ``dense`` layer is now ``proj``: 20% of
the keys unresolved, each with a structural suggestion). Whole processes, page
cache warm: ``ckptmap inspect --json``, ``ckptmap check`` (resolvable, exit 0) and
``ckptmap check --allow-missing`` (20% unresolved: the full report, exit 0).

Targets at 100,000 keys: inspect <= 1.0 s, check <= 3 s, check with 20%
unresolved <= 5 s, each growing about linearly from 10,000.

Usage::

    .venv/bin/python bench/scale.py [--dir DIR] [--repeat 3] [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _util import CKPTMAP, DEFAULT_DIR, Measurement, measure, table, write_json

LEAVES = (("w", (8, 4)), ("b", (4,)), ("w/Adam", (8, 4)), ("b/Adam", (4,)))


def make_inputs(folder: Path, n: int) -> Path:
    """Write the n-key checkpoint and the two specs (once); return the prefix."""
    from ckptmap.writers.tf_bundle import BundleWriter

    prefix = folder / "model.ckpt"
    if (folder / "renamed.json").exists():
        return prefix
    folder.mkdir(parents=True, exist_ok=True)
    same, renamed = [], []
    with BundleWriter(prefix, force=True) as writer:
        for i in range(n // len(LEAVES)):
            for leaf, shape in LEAVES:
                key = f"model/tower_{i}/dense/{leaf}"
                writer.add_array(key, np.zeros(shape, np.float32))
                entry = {"name": key, "dtype": "float32", "shape": list(shape)}
                same.append(entry)
                new = key if i % 5 else f"model/tower_{i}/proj/{leaf}"
                renamed.append({**entry, "name": new})
        writer.commit()
    (folder / "same.json").write_text(json.dumps({"version": 1, "variables": same}))
    (folder / "renamed.json").write_text(json.dumps({"version": 1, "variables": renamed}))
    return prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR / "scale")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args(argv)
    results: list[Measurement] = []
    for n in args.sizes:
        folder = args.dir / str(n)
        prefix = make_inputs(folder, n)
        check = [CKPTMAP, "check", "--old", str(prefix), "--new-graph"]
        cases = [
            (f"inspect --json ({n:,} keys)", [CKPTMAP, "inspect", str(prefix), "--json"]),
            (f"check, all resolvable ({n:,})", [*check, str(folder / "same.json")]),
            (
                f"check --allow-missing, 20% unresolved ({n:,})",
                [*check, str(folder / "renamed.json"), "--allow-missing"],
            ),
        ]
        for name, cmd in cases:
            results.append(measure(name, cmd, repeat=args.repeat))
    print("\n## scale: inspect and check by key count\n")
    print(table(results, results[0].name))
    path = write_json("scale", {"results": [r.as_dict() for r in results]})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
