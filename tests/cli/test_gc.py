"""The CLI turns the cycle collector off while a command runs, and back on after."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckptmap.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", str(FIXTURES / "ffm_v1"), "--json"],
        ["inspect", str(FIXTURES / "no-such-folder")],  # an error (exit 3) restores it too
    ],
)
def test_the_collector_is_back_on_after_a_command(args: list[str]) -> None:
    assert gc.isenabled()
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 3), result.output
    assert gc.isenabled()


def test_a_caller_that_turned_it_off_keeps_it_off() -> None:
    gc.disable()
    try:
        result = CliRunner().invoke(main, ["inspect", str(FIXTURES / "ffm_v1"), "--json"])
        assert result.exit_code == 0, result.output
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_is_off_while_the_command_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import ckptmap.inspect

    seen: list[bool] = []
    real = ckptmap.inspect.inspect_checkpoint

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ckptmap.inspect, "inspect_checkpoint", spy)
    result = CliRunner().invoke(main, ["inspect", str(FIXTURES / "ffm_v1"), "--json"])
    assert result.exit_code == 0, result.output
    assert seen == [False]
