"""Every command answers -h/--help, explains itself, and documents every option."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from ckptmap.cli import main


def _commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, group: click.Group) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None, name
            path = f"{prefix} {name}".strip()
            found.append((path, cmd))
            if isinstance(cmd, click.Group):
                walk(path, cmd)

    walk("", main)
    return found


COMMANDS = _commands()


def test_the_commands_users_are_told_about_exist() -> None:
    names = {path for path, _ in COMMANDS}
    assert {"inspect", "check", "remap", "alias", "config", "config show"} <= names


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[p for p, _ in COMMANDS])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(path: str, cmd: click.Command, flag: str) -> None:
    result = CliRunner().invoke(main, [*path.split(), flag], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    assert cmd.help, f"{path} has no docstring"
    summary = cmd.help.strip().splitlines()[0]
    assert summary.endswith("."), summary


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_option_has_help(path: str, cmd: click.Command) -> None:
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path}: option {param.opts} has no help"


@pytest.mark.parametrize("path", ["inspect", "check", "remap", "alias"])
def test_main_commands_show_examples(path: str) -> None:
    result = CliRunner().invoke(main, [path, "--help"], catch_exceptions=False)
    assert "Examples:" in result.stdout
    assert f"ckptmap {path}" in result.stdout


def test_python_dash_m_runs_the_same_group() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ckptmap", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for name in ("inspect", "check", "remap", "alias", "config"):
        assert name in result.stdout


def test_unknown_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["check", "--no-such-flag"])
    assert result.exit_code == 2
