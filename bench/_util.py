"""Shared helpers of the benchmark scripts: run whole processes, time them, report.

Every competitor runs as a separate process. Wall time is ``time.perf_counter``
around the process's whole life (start, run, exit); peak RSS is what GNU
``/usr/bin/time -f %M`` reports for it (for a shell pipeline, the largest of the
shell and the children it waited for). Each command gets one untimed warm-up run (page
cache warm) and then ``repeat`` timed runs; results report the best and the
median of those.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
OUT = BENCH / "out"
PYTHON = str(REPO / ".venv" / "bin" / "python")
CKPTMAP = str(REPO / ".venv" / "bin" / "ckptmap")
DEFAULT_DIR = Path("/tmp/ckptmap-bench")
MIB = 1024 * 1024
TIME = "/usr/bin/time"  # GNU time, for the peak RSS of each command


def compile_ckptmap() -> None:
    """Byte-compile the checkout's ``ckptmap`` package (``__pycache__``, gitignored).

    Every measured process runs with ``PYTHONDONTWRITEBYTECODE=1``, so without
    this ckptmap's own modules would be compiled from source in every run, while
    numpy, click, protobuf and TensorFlow load from the ``.pyc`` files their
    installation wrote. ``pip install`` byte-compiles ckptmap too; this puts the
    checkout on the same footing. Stale files are simply recompiled in memory.
    """
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", str(REPO / "ckptmap")],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"},
    )


def bench_env() -> dict[str, str]:
    """The environment of every measured process (TF quiet, no GPU probing)."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass
class Run:
    """One run of one command."""

    wall_s: float
    max_rss_mib: float
    returncode: int


@dataclass
class Measurement:
    """All timed runs of one command."""

    name: str
    command: list[str]
    runs: list[Run] = field(default_factory=list)

    @property
    def best_s(self) -> float:
        return min(r.wall_s for r in self.runs)

    @property
    def median_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def max_rss_mib(self) -> float:
        return max(r.max_rss_mib for r in self.runs)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "command": self.command,
            "best_s": self.best_s,
            "median_s": self.median_s,
            "max_rss_mib": self.max_rss_mib,
            "runs": [asdict(r) for r in self.runs],
        }


def run_once(command: Sequence[str], *, stdout_path: str = os.devnull) -> Run:
    """Run ``command`` to completion; its wall time and its own peak RSS.

    The command runs under GNU ``/usr/bin/time -f %M``, which reports the peak RSS
    of the command alone. (The ``ru_maxrss`` that ``os.wait4`` gives for a
    direct child is useless here: Linux counts the memory the child had before
    ``exec``, and with ``vfork`` that is this benchmark process's own peak.)
    """
    with (
        tempfile.NamedTemporaryFile("r", prefix="ckptmap-bench-rss-") as rss,
        open(stdout_path, "wb") as out,
    ):
        timed = [TIME, "-f", "%M", "-o", rss.name, *command]
        start = time.perf_counter()
        proc = subprocess.run(timed, stdout=out, stderr=subprocess.PIPE, env=bench_env())
        wall = time.perf_counter() - start
        peak_kib = rss.read().strip().splitlines()[-1]
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace")[-4000:])
        raise SystemExit(f"command failed with exit code {proc.returncode}: {' '.join(command)}")
    return Run(wall, int(peak_kib) / 1024, proc.returncode)


def measure(
    name: str,
    command: Sequence[str],
    *,
    repeat: int,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
    warmup: bool = True,
    stdout_path: str = os.devnull,
) -> Measurement:
    """One warm-up run, then ``repeat`` timed runs of ``command``.

    ``before``/``after`` run (untimed) around every run, e.g. to remove the
    previous run's output.
    """
    result = Measurement(name, list(command))
    for i in range(repeat + (1 if warmup else 0)):
        if before:
            before()
        run = run_once(command, stdout_path=stdout_path)
        if after:
            after()
        if warmup and i == 0:
            continue
        result.runs.append(run)
        print(f"  {name}: {run.wall_s:.3f} s, {run.max_rss_mib:.0f} MiB", file=sys.stderr)
    return result


def measure_rounds(commands: dict[str, list[str]], *, repeat: int) -> list[Measurement]:
    """``repeat`` rounds after a warm-up round, each running every command once, in turn.

    Unlike :func:`measure` one command after another, a slow minute of a shared
    machine then falls on every command alike instead of on whichever was running.
    """
    results = [Measurement(name, list(command)) for name, command in commands.items()]
    for i in range(repeat + 1):
        for result in results:
            run = run_once(result.command)
            if i == 0:
                continue  # the warm-up round
            result.runs.append(run)
            print(
                f"  {result.name}: {run.wall_s:.3f} s, {run.max_rss_mib:.0f} MiB", file=sys.stderr
            )
    return results


def table(results: Sequence[Measurement], baseline: str) -> str:
    """A plain-text table with each command's ratio to ``baseline`` (best vs best)."""
    base = next(r for r in results if r.name == baseline)
    width = max(len(r.name) for r in results)
    lines = [
        f"{'command':<{width}}  {'best s':>8}  {'median s':>8}  {'peak RSS MiB':>12}  "
        f"{'/ ' + baseline:>10}",
    ]
    lines += [
        f"{r.name:<{width}}  {r.best_s:8.3f}  {r.median_s:8.3f}  {r.max_rss_mib:12.0f}  "
        f"{r.best_s / base.best_s:10.2f}x"
        for r in results
    ]
    return "\n".join(lines)


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    try:
        tf_version = subprocess.run(
            [PYTHON, "-c", "import importlib.metadata as m; print(m.version('tensorflow-cpu'))"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        tf_version = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "mem_mib": mem,
        "python": platform.python_version(),
        "tensorflow": tf_version,
        "kernel": platform.release(),
    }


def write_json(name: str, payload: dict[str, object]) -> Path:
    """Write ``bench/out/<name>.json`` and return its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    payload = {"machine": machine(), "argv": sys.argv, **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def file_bytes(paths: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def checkpoint_files(prefix: Path) -> list[Path]:
    """The ``.index`` and ``.data-*`` files of the checkpoint at ``prefix``."""
    files = [prefix.with_name(prefix.name + ".index")]
    files += sorted(prefix.parent.glob(prefix.name + ".data-*"))
    return files


def fresh_dir(path: Path) -> Callable[[], None]:
    """A callable that empties (removes) ``path``; use as ``before=``."""

    def clean() -> None:
        shutil.rmtree(path, ignore_errors=True)

    return clean


def ensure_checkpoints(root: Path, *names: str) -> None:
    """Generate the named inputs with bench/make_checkpoints.py unless present."""
    missing = [n for n in names if not (root / n / "DONE").exists()]
    if missing:
        subprocess.run(
            [PYTHON, str(BENCH / "make_checkpoints.py"), "--dir", str(root), *missing],
            check=True,
            env=bench_env(),
        )


def remove_inputs(root: Path, *names: str) -> None:
    """Remove generated inputs (the big files) from ``root``; empty ``root`` goes too."""
    for name in names:
        shutil.rmtree(root / name, ignore_errors=True)
        print(f"removed {root / name} (pass --keep to keep it)", file=sys.stderr)
    with contextlib.suppress(OSError):
        root.rmdir()
