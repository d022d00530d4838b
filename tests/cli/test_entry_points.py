"""The ./dev script and shell completion: the ways into ckptmap besides its commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "dev"), *args], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="./dev is a bash script")
def test_dev_unknown_command_prints_the_usage_and_exits_2() -> None:
    done = _dev("tset")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("./dev: unknown command 'tset'\n")
    assert "./dev test " in done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="./dev is a bash script")
@pytest.mark.parametrize("args", [(), ("help",), ("-h",), ("--help",)])
def test_dev_help(args: tuple[str, ...]) -> None:
    done = _dev(*args)
    assert done.returncode == 0
    assert done.stdout.startswith("Developer entry point.")
    assert "./dev lint" in done.stdout


def _complete(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "from ckptmap.cli import main; main(prog_name='ckptmap')"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    done = _complete({"_CKPTMAP_COMPLETE": f"{shell}_source"})
    assert done.returncode == 0, done.stderr
    assert "_CKPTMAP_COMPLETE" in done.stdout


def test_completion_of_commands_and_options() -> None:
    words = {"_CKPTMAP_COMPLETE": "bash_complete", "COMP_WORDS": "ckptmap ins", "COMP_CWORD": "1"}
    done = _complete(words)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plain,inspect"]
    words = {
        "_CKPTMAP_COMPLETE": "bash_complete",
        "COMP_WORDS": "ckptmap remap --dry",
        "COMP_CWORD": "2",
    }
    done = _complete(words)
    assert "plain,--dry-run" in done.stdout.split()


def test_completion_through_the_installed_script() -> None:
    script = Path(sys.executable).parent / "ckptmap"
    if not script.exists():
        pytest.skip("ckptmap is not installed next to this python")
    done = subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "_CKPTMAP_COMPLETE": "bash_source"},
        timeout=60,
    )
    assert done.returncode == 0
    assert "complete -o nosort -F _ckptmap_completion ckptmap" in done.stdout
