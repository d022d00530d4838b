"""Every command takes its options from its dataclass: flags, CKPTMAP_* variables, config files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from ckptmap.cli import main
from ckptmap.cli.options import COMMAND_OPTIONS, PlanOptions, StoreFormat, option_specs

ROOT = Path(__file__).resolve().parents[2]
OLD = ROOT / "fixtures" / "ffm_v1"
NEW_GRAPH = ROOT / "fixtures" / "ffm_v2" / "graph.pbtxt"
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder (no pyproject.toml) with no CKPTMAP_<OPTION> variable set."""
    monkeypatch.chdir(tmp_path)
    for cls in COMMAND_OPTIONS.values():
        for spec in option_specs(cls).values():
            monkeypatch.delenv(spec.env, raising=False)


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="ckptmap")


# -- inspect ------------------------------------------------------------------------------


def test_ckptmap_json_makes_inspect_print_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPTMAP_JSON", "1")
    result = _run("inspect", OLD)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert "ffm/embeddings" in {t["name"] for t in report["tensors"]}
    assert _run("inspect", OLD, "--no-json").stdout.startswith("Checkpoint ")


def test_a_config_file_inspect_table_applies(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.ckptmap.inspect]\njson = true\nfilter = "^ffm/embeddings"\nstep = 50\n'
    )
    result = _run("inspect", OLD)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert {t["name"] for t in report["tensors"]} == {
        "ffm/embeddings",
        "ffm/embeddings/Adam",
        "ffm/embeddings/Adam_1",
    }
    assert report["checkpoint"]["prefix"].endswith("model.ckpt-50")


def test_inspect_validates_options_from_every_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPTMAP_STEP", "-1")
    result = _run("inspect", OLD)
    assert result.exit_code == 2
    assert result.stderr == "error: step -1 is negative; a global step is 0 or more\n"
    monkeypatch.setenv("CKPTMAP_STEP", "50")
    result = _run("inspect", OLD / "model.ckpt-100.index")
    assert result.exit_code == 2
    assert "--step cannot be used with an .index path" in result.stderr


# -- convert ------------------------------------------------------------------------------


def test_convert_takes_its_options_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ckptmap.toml"
    config.write_text(f'[convert]\nold = "{OLD}"\nto = "zarr3"\njson = true\nchunk_mib = 0.5\n')
    result = _run("convert", "--config", config, "--out", tmp_path / "ffm.zarr")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["arrays"] > 0


def test_convert_checks_chunk_mib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CKPTMAP_CHUNK_MIB", "0")
    result = _run("convert", "--old", OLD, "--to", "zarr3", "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "chunk_mib 0.0 must be more than 0" in result.stderr
    assert not (tmp_path / "x").exists()


def test_store_formats_are_the_writers_of_convert() -> None:
    from ckptmap.convert import TARGETS

    assert {f.value for f in StoreFormat} == set(TARGETS)


# -- alias, check, remap ------------------------------------------------------------------


def test_plan_options_defaults_are_those_of_plan_inputs() -> None:
    """The CLI options and the library share one set of planning defaults."""
    from ckptmap.migration import PlanInputs

    library = {f.name: f for f in dataclasses.fields(PlanInputs)}
    for field in dataclasses.fields(PlanOptions):
        assert field.name in library, field.name
        assert field.default == library[field.name].default, field.name


def test_alias_options_are_the_planning_options() -> None:
    assert option_specs(COMMAND_OPTIONS["alias"]).keys() == option_specs(PlanOptions).keys()


# -- config show covers every command -----------------------------------------------------


def _click_options(name: str) -> set[str]:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    return {
        p.name for p in command.params if isinstance(p, click.Option) and p.name is not None
    } - {"config"}


@pytest.mark.parametrize("name", ["inspect", "check", "remap", "alias", "convert", "diff"])
def test_config_show_lists_every_option_of_the_command(name: str) -> None:
    shown: dict[str, Any] = json.loads(_run("config", "show", "--json", name).stdout)
    assert shown["command"] == name
    assert set(shown["options"]) == _click_options(name)  # the options the command takes
    everything = json.loads(_run("config", "show", "--json").stdout)
    assert [item for item in everything if item["command"] == name] == [shown]


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("inspect", [OLD]),
        ("check", ["--old", OLD, "--new-graph", NEW_GRAPH]),
        ("remap", ["--old", OLD, "--new-graph", NEW_GRAPH, "--dry-run", "--out", "x/"]),
        ("alias", ["--old", OLD, "--new-graph", NEW_GRAPH]),
    ],
)
def test_config_show_says_what_the_command_runs_with(
    name: str, args: list[str | Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule from the command's config table shows in `config show` and resolves the plan."""
    key = "filter" if name == "inspect" else "rules"
    value: Any = "^ffm/embeddings$" if name == "inspect" else [RULE]
    (tmp_path / "pyproject.toml").write_text(
        f"[tool.ckptmap.{name}]\n{key} = {json.dumps(value)}\njson = true\n"
        if name != "alias"
        else f"[tool.ckptmap.{name}]\n{key} = {json.dumps(value)}\n"
    )
    shown = json.loads(_run("config", "show", "--json", name).stdout)
    expected = value if isinstance(value, str) else list(value)
    assert shown["options"][key] == {
        "value": expected,
        "source": f"config:{tmp_path / 'pyproject.toml'}",
    }
    result = _run(name, *args)
    assert result.exit_code == 0, result.stderr
    if name == "inspect":
        assert [t["name"] for t in json.loads(result.stdout)["tensors"]] == ["ffm/embeddings"]
