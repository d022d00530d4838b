"""``ckptmap config show``: precedence of the four layers, and bad input with exact messages."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from ckptmap.cli import main
from ckptmap.cli._output import reported_errors
from ckptmap.cli.options import (
    COMMAND_OPTIONS,
    AssetMode,
    RemapOptions,
    click_options,
    config_option,
    option_specs,
    resolve_click,
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder with no CKPTMAP_<OPTION> variable set."""
    monkeypatch.chdir(tmp_path)
    for cls in COMMAND_OPTIONS.values():
        for spec in option_specs(cls).values():
            monkeypatch.delenv(spec.env, raising=False)


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="ckptmap", catch_exceptions=False)


def _show(*args: str) -> dict[str, Any]:
    result = _run("config", "show", *args, "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# One field of each type, with a different value in each layer:
# (TOML value in [remap], its JSON, environment text, its JSON, CLI arguments, their JSON).
# "{conf}" stands for the config file's folder: relative paths there are taken from it.
LAYER_VALUES: dict[str, tuple[str, Any, str, Any, list[str], Any]] = {
    "shards": ("4", 4, "5", 5, ["--shards", "6"], 6),
    "auto": ("false", False, "yes", True, ["--no-auto"], False),
    "saver": ('"save_1"', "save_1", "save_2", "save_2", ["--saver", "save_3"], "save_3"),
    "candidate_cutoff": ("0.45", 0.45, "0.25", 0.25, ["--candidate-cutoff", "0.75"], 0.75),
    "alias_map": (
        '"maps/a.json"',
        "{conf}/maps/a.json",
        "env.json",
        "env.json",
        ["--alias-map", "cli.json"],
        "cli.json",
    ),
    # The CLI sets the default value: presence, not difference from the default, decides.
    "on_existing_assets": (
        '"copy"',
        "copy",
        "SKIP",
        "skip",
        ["--on-existing-assets", "link"],
        "link",
    ),
    "rules": (
        '["a=b"]',
        ["a=b"],
        "c=d\ne{1,2}=f",
        ["c=d", "e{1,2}=f"],
        ["--rules", "g=h"],
        ["g=h"],
    ),
    "step": ("7", 7, "8", 8, ["--step", "9"], 9),
}
LAYERS = list(itertools.product([False, True], repeat=3))


@pytest.mark.parametrize(
    ("field", "config", "env", "cli"),
    [(field, *layers) for field in LAYER_VALUES for layers in LAYERS],
    ids=[
        f"{field}-"
        + (
            "+".join(n for n, on in zip(("config", "env", "cli"), layers, strict=True) if on)
            or "none"
        )
        for field in LAYER_VALUES
        for layers in LAYERS
    ],
)
def test_precedence_of_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, config: bool, env: bool, cli: bool
) -> None:
    toml_value, config_json, env_text, env_json, cli_args, cli_json = LAYER_VALUES[field]
    conf = tmp_path / "conf"
    conf.mkdir()
    config_file = conf / "ckptmap.toml"
    config_file.write_text(f"[remap]\n{field} = {toml_value}\n" if config else "")
    spec = option_specs(RemapOptions)[field]
    if env:
        monkeypatch.setenv(spec.env, env_text)
    args = ["remap", "--config", str(config_file), *(cli_args if cli else [])]

    got = _show(*args)["options"][field]

    if cli:
        expected = {"value": cli_json, "source": "cli"}
    elif env:
        expected = {"value": env_json, "source": f"env:{spec.env}"}
    elif config:
        value = config_json.format(conf=conf) if isinstance(config_json, str) else config_json
        expected = {"value": value, "source": f"config:{config_file}"}
    else:
        default = spec.default.name.lower() if field == "on_existing_assets" else spec.default
        expected = {"value": list(default) if field == "rules" else default, "source": "default"}
    assert got == expected


def test_command_table_beats_shared_keys_and_shared_keys_reach_every_command(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ckptmap.toml"
    config.write_text("shards = 2\njson = true\n[remap]\nshards = 3\n[check]\njson = false\n")
    remap = _show("remap", "--config", str(config))["options"]
    assert remap["shards"] == {"value": 3, "source": f"config:{config}"}
    assert remap["json"] == {"value": True, "source": f"config:{config}"}
    check = _show("check", "--config", str(config))["options"]
    assert check["json"] == {"value": False, "source": f"config:{config}"}
    inspect = _show("inspect", "--config", str(config))["options"]
    assert inspect["json"] == {"value": True, "source": f"config:{config}"}
    assert "shards" not in inspect


def test_pyproject_found_upward_and_replaced_by_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.ckptmap]\nshards = 2\n[tool.ckptmap.remap]\nforce = true\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    data = _show("remap")
    assert data["config"] == str(pyproject)
    assert data["options"]["shards"] == {"value": 2, "source": f"config:{pyproject}"}
    assert data["options"]["force"] == {"value": True, "source": f"config:{pyproject}"}
    other = tmp_path / "other.toml"
    other.write_text("quiet = true\n")
    data = _show("remap", "--config", str(other))
    assert data["options"]["force"]["source"] == "default"
    assert data["options"]["quiet"]["source"] == f"config:{other}"


def test_show_all_commands_and_group_level_options(tmp_path: Path) -> None:
    config = tmp_path / "ckptmap.toml"
    config.write_text("[inspect]\nstats = true\n")
    result = _run("config", "show", "--config", str(config), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [item["command"] for item in data] == [
        "inspect",
        "check",
        "remap",
        "alias",
        "convert",
        "diff",
    ]
    assert data[0]["options"]["stats"] == {"value": True, "source": f"config:{config}"}
    # --config and --json given to `show` apply to the command below it.
    result = _run("config", "show", "--config", str(config), "--json", "inspect")
    assert json.loads(result.stdout)["options"]["stats"]["value"] is True


def test_show_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPTMAP_SHARDS", "3")
    result = _run("config", "show", "remap", "--old", "ckpt")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "remap options (config file: none)"
    rows = [[cell.strip() for cell in line.split("│")[1:4]] for line in lines if "│" in line]
    assert ["shards", "3", "env:CKPTMAP_SHARDS"] in rows
    assert ["old", "ckpt", "cli"] in rows
    assert ["out", "(not set)", "unset"] in rows
    assert ["rules", "(empty)", "default"] in rows
    assert len(rows) == len(option_specs(RemapOptions))


@pytest.mark.parametrize(
    "args",
    [
        ["config"],
        ["config", "show"],
        ["config", "show", "remap"],
        ["config", "show", "check"],
        ["config", "show", "inspect"],
    ],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = _run(*args, "-h")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ckptmap " + " ".join(args))
    assert len(result.stdout.splitlines()) > 5


# --- bad input: exit 2 and exactly one line on stderr ---

BAD_CONFIGS = [
    pytest.param(
        "[remap]\nshard = 3\n",
        "{f}:2: [remap] unknown key 'shard' (did you mean 'shards'?)",
        id="unknown-key-in-command-table",
    ),
    pytest.param(
        "new-graph = 'g.pbtxt'\n",
        "{f}:1: unknown key 'new-graph' (did you mean 'new_graph'?)",
        id="unknown-shared-key",
    ),
    pytest.param(
        "colour = 1\n",
        "{f}:1: unknown key 'colour' (see 'ckptmap config show' for the keys)",
        id="unknown-key-nothing-close",
    ),
    pytest.param(
        "[inspect]\nxyz = 1\n",
        "{f}:2: [inspect] unknown key 'xyz' (see 'ckptmap config show inspect' for the keys)",
        id="unknown-key-in-table-nothing-close",
    ),
    pytest.param(
        "[remapp]\nshards = 3\n",
        "{f}:1: unknown key 'remapp' (did you mean 'remap'?)",
        id="unknown-table",
    ),
    pytest.param(
        "[check]\nshards = 2\n",
        "{f}:2: [check] unknown key 'shards' (an option of remap, not of check)",
        id="key-of-another-command",
    ),
    pytest.param(
        "remap = 3\n",
        "{f}:1: 'remap' must be a table ([remap])",
        id="command-not-a-table",
    ),
    pytest.param(
        '\n[remap]\nforce = true\nshards = "four"\n',
        '{f}:4: [remap] shards = "four": expected an integer, got a string',
        id="int-given-string",
    ),
    pytest.param(
        "candidate_cutoff = true\n",
        "{f}:1: candidate_cutoff = true: expected a number, got a boolean",
        id="float-given-bool",
    ),
    pytest.param(
        "auto = 1\n",
        "{f}:1: auto = 1: expected a boolean, got an integer",
        id="bool-given-int",
    ),
    pytest.param(
        "[check]\nalias_map = 3\n",
        "{f}:2: [check] alias_map = 3: expected a path (a string), got an integer",
        id="path-given-int",
    ),
    pytest.param(
        'rules = ["a=b", 1]\n',
        '{f}:1: rules = ["a=b", 1]: expected a list of strings, got an array containing an integer',
        id="list-with-int",
    ),
    pytest.param(
        "[remap.alias_map]\n",
        "{f}:1: [remap] alias_map: expected a path (a string), got a table",
        id="path-given-table",
    ),
    pytest.param(
        '[remap]\non_existing_assets = "hardlink"\n',
        '{f}:2: [remap] on_existing_assets = "hardlink": expected one of link, copy, skip',
        id="unknown-enum-value",
    ),
    pytest.param(
        "shards = = 3\n",
        "{f}:1:10: not valid TOML: invalid value (fix the syntax there)",
        id="unparsable",
    ),
    pytest.param(
        '[remap]\nsaver = "open\n',
        "{f}:2:14: not valid TOML: illegal character '\\n' (fix the syntax there)",
        id="unterminated-string",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_file(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "ckptmap.toml"
    config.write_text(text)
    result = _run("config", "show", "remap", "--config", str(config))
    assert result.exit_code == 2
    assert result.stderr == "error: " + message.format(f=config) + "\n"
    assert result.stdout == ""


def test_bad_pyproject_is_named(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.ckptmap.remap]\nshards = 1.5\n")
    result = _run("config", "show", "remap")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path / 'pyproject.toml'}:2: [tool.ckptmap.remap] shards = 1.5: "
        "expected an integer, got a float\n"
    )


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("CKPTMAP_SHARDS", "four", 'CKPTMAP_SHARDS="four": expected an integer'),
        ("CKPTMAP_CANDIDATE_CUTOFF", "high", 'CKPTMAP_CANDIDATE_CUTOFF="high": expected a number'),
        (
            "CKPTMAP_FORCE",
            "maybe",
            'CKPTMAP_FORCE="maybe": expected a boolean (1/0, true/false, yes/no, on/off)',
        ),
        (
            "CKPTMAP_ON_EXISTING_ASSETS",
            "hardlink",
            'CKPTMAP_ON_EXISTING_ASSETS="hardlink": expected one of link, copy, skip',
        ),
    ],
)
def test_bad_environment_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, text: str, message: str
) -> None:
    monkeypatch.setenv(variable, text)
    result = _run("config", "show", "remap")
    assert result.exit_code == 2
    assert result.stderr == f"error: {message} (fix or unset the variable)\n"


def test_missing_config_file(tmp_path: Path) -> None:
    result = _run("config", "show", "remap", "--config", "nope.toml")
    assert result.exit_code == 2
    assert result.stderr == "error: nope.toml: config file not found (check the --config path)\n"


def test_unknown_enum_value_on_the_command_line() -> None:
    result = _run("config", "show", "remap", "--on-existing-assets", "hardlink")
    assert result.exit_code == 2
    assert "'hardlink' is not one of 'link', 'copy', 'skip'" in result.stderr


def test_a_command_written_as_docs_options_md_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usage pattern given to command authors: decorate, resolve, use the dataclass."""
    seen: list[RemapOptions] = []

    @click.command("remap")
    @click_options(RemapOptions)
    @config_option()
    @click.pass_context
    def remap_command(ctx: click.Context, /, **_: object) -> None:
        with reported_errors():
            seen.append(resolve_click(ctx, RemapOptions).options)

    (tmp_path / "pyproject.toml").write_text(
        '[tool.ckptmap.remap]\nold = "ckpt/model"\nshards = 4\n'
    )
    monkeypatch.setenv("CKPTMAP_ON_EXISTING_ASSETS", "skip")
    args = ["--new-graph", "g.pbtxt", "--out", "new/model", "--rules", "a=b", "--shards", "1"]
    result = CliRunner().invoke(remap_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert seen == [
        RemapOptions(
            old=tmp_path / "ckpt/model",
            new_graph=Path("g.pbtxt"),
            out="new/model",
            rules=("a=b",),
            shards=1,
            on_existing_assets=AssetMode.SKIP,
        )
    ]
    result = CliRunner().invoke(remap_command, ["--out", "o"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: remap: --new-graph is required (give it on the command line, "
        "as 'new_graph' in a config file, or as CKPTMAP_NEW_GRAPH)\n"
    )
