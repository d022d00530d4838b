"""Options machinery: help from docstrings, generated click options, layers, update and links.

The first part carries over every case of Monolith's ``gflags_utils_test.py``
onto ckptmap's implementation (click options instead of absl flags, option
dataclass instances instead of the global ``FLAGS``).
"""

from __future__ import annotations

import dataclasses
import doctest
import enum
import importlib
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from ckptmap.cli.options import (
    COMMAND_OPTIONS,
    AssetMode,
    CheckOptions,
    InspectOptions,
    RemapOptions,
    apply_links,
    click_options,
    extract_help_info,
    find_pyproject,
    key_line,
    link_options,
    linked_options,
    option_help,
    option_specs,
    read_config,
    resolve_options,
    update,
)
from ckptmap.cli.options._config import read_toml
from ckptmap.errors import UsageError

# --- Monolith's test classes, with the same names, fields and docstrings ---


@dataclasses.dataclass
class TestConfig:
    """
    :param test_int1: integer 1 for test
    :param test_int2: integer 2 for test
    :param test_str: string for test
                        and test another line
    """

    __test__ = False  # not a pytest class

    test_int1: int = 0
    test_int2: int = 0
    test_str: str | None = None


@dataclasses.dataclass
class TestConfig2:
    """
    :param testconfig2_int1: integer 1 for TestConfig2
    :param testconfig2_str1: str 1 for TestConfig2
    """

    __test__ = False

    testconfig2_int1: int = 1
    testconfig2_str1: str = "str1"


@dataclasses.dataclass
class TestConfig3:
    """
    :param testconfig3_int1: testconfig3_int1
    :param testconfig3_int2: testconfig3_int2
    :param testconfig3_str1: testconfig3_str1
    """

    __test__ = False

    testconfig3_int1: int = 1
    testconfig3_int2: int = 2
    testconfig3_str1: str = "str1"


@dataclasses.dataclass
class TestConfig4(TestConfig):
    """
    :param testconfig4_int1: testconfig4_int1
    :param testconfig4_str1: testconfig4_str1
    """

    testconfig4_int1: int = 4
    testconfig4_str1: str = "testconfig4_str1"


@dataclasses.dataclass
class TestConfig5Base:
    """
    :param testconfig5base_int1: testconfig5base_int1
    :param testconfig5base_int2: testconfig5base_int2
    :param testconfig5base_str: testconfig5base_str
    """

    __test__ = False

    testconfig5base_int1: int = 0
    testconfig5base_int2: int = 0
    testconfig5base_str: str | None = None


@dataclasses.dataclass
class TestConfig5(TestConfig5Base):
    """
    :param testconfig5_int1: testconfig5_int1
    :param testconfig5_str1: testconfig5_str1
    """

    testconfig5_int1: int = 5
    testconfig5_str1: str = "testconfig5_str1"


def _command(cls: type, **kwargs: Any) -> click.Command:
    """A click command decorated with the options of ``cls``; it prints what it got."""

    @click.command()
    @click_options(cls, **kwargs)
    def command(**values: Any) -> None:
        for name, value in values.items():
            click.echo(f"{name}={value!r}")

    return command


def _params(command: click.Command) -> dict[str, Any]:
    return {param.name: param.default for param in command.params if param.name != "help"}


# --- test_extract_help_info ---


@pytest.mark.parametrize("cls", [InspectOptions, CheckOptions, RemapOptions])
def test_every_command_option_has_help(cls: type) -> None:
    help_info = extract_help_info(cls)
    for field in dataclasses.fields(cls):
        assert field.name in help_info, f"{field.name} of {cls.__name__} needs a :param line"


def test_extract_help_info_joins_multi_line_help() -> None:
    assert extract_help_info(TestConfig) == {
        "test_int1": "integer 1 for test",
        "test_int2": "integer 2 for test",
        "test_str": "string for test and test another line",
    }


def test_extract_help_info_not_nested_reads_only_the_class_itself() -> None:
    assert extract_help_info(TestConfig4, nested=False) == {
        "testconfig4_int1": "testconfig4_int1",
        "testconfig4_str1": "testconfig4_str1",
    }


def test_extract_help_info_nested_includes_base_classes() -> None:
    res = extract_help_info(TestConfig4)
    assert res["test_str"] == "string for test and test another line"
    assert res["testconfig4_int1"] == "testconfig4_int1"
    assert set(res) == {f.name for f in dataclasses.fields(TestConfig4)}


def test_extract_help_info_subclass_help_wins_and_text_after_params_is_not_help() -> None:
    @dataclasses.dataclass
    class Base:
        """:param x: old help"""

        x: int = 0

    @dataclasses.dataclass
    class Child(Base):
        """Child options.

        :param x: new help
            over two lines
        :param y: y help

        Example paragraph, not part of y's help.
        """

        y: int = 0

    assert extract_help_info(Child) == {"x": "new help over two lines", "y": "y help"}


def test_extract_help_info_without_docstring_params() -> None:
    @dataclasses.dataclass
    class Plain:
        x: int = 0

    assert extract_help_info(Plain) == {}


# --- test_update ---


@dataclasses.dataclass(frozen=True)
class Flags:
    """The flags of Monolith's test_update: defined with defaults 2 and 3, never parsed."""

    test_int1: int = 2
    test_int2: int = 3


def test_update_only_fields_at_default_with_non_default_flags() -> None:
    config = TestConfig(test_int1=1, test_int2=0)
    updated = update(config, Flags())
    assert updated.test_int1 == 1  # set in code: not updated
    assert updated.test_int2 == 3  # at its default and the flag is not: updated
    assert updated.test_str is None  # no flag of that name: untouched
    assert config.test_int2 == 0  # the input is not modified


def test_update_flag_equal_to_field_default_changes_nothing() -> None:
    config = TestConfig()
    assert update(config, {"test_int1": 0, "test_int2": 7}) == TestConfig(test_int2=7)


def test_update_works_on_frozen_options_and_converts_enum_names() -> None:
    opts = RemapOptions(old=Path("a"), new_graph=Path("g"), out="o", shards=4)
    updated = update(opts, {"shards": 2, "force": True, "on_existing_assets": "COPY"})
    assert (updated.shards, updated.force) == (4, True)
    assert updated.on_existing_assets is AssetMode.COPY
    assert update(opts, {}) is opts


def test_update_unknown_enum_name_is_a_usage_error() -> None:
    opts = RemapOptions(old=Path("a"), new_graph=Path("g"), out="o")
    with pytest.raises(UsageError) as err:
        update(opts, {"on_existing_assets": "hardlink"})
    assert str(err.value) == "'hardlink' is not a AssetMode (expected one of link, copy, skip)"


# --- test_extract_gflags_decorator ---


def test_decorator_defines_options_with_dataclass_defaults() -> None:
    command = _command(TestConfig2)
    assert _params(command) == {"testconfig2_int1": 1, "testconfig2_str1": "str1"}
    conf = TestConfig2(testconfig2_int1=2, testconfig2_str1="newstr1")
    assert (conf.testconfig2_int1, conf.testconfig2_str1) == (2, "newstr1")
    result = CliRunner().invoke(command, ["--testconfig2-int1", "5"], catch_exceptions=False)
    assert result.output == "testconfig2_int1=5\ntestconfig2_str1='str1'\n"


def test_decorator_skip_list_removes_options_but_not_fields() -> None:
    command = _command(TestConfig3, skip={"testconfig3_int1"})
    assert set(_params(command)) == {"testconfig3_int2", "testconfig3_str1"}
    conf3 = TestConfig3()
    assert (conf3.testconfig3_int1, conf3.testconfig3_int2, conf3.testconfig3_str1) == (
        1,
        2,
        "str1",
    )


def test_decorator_not_nested_skips_base_fields() -> None:
    command = _command(TestConfig5, nested=False)
    assert set(_params(command)) == {"testconfig5_int1", "testconfig5_str1"}
    conf5 = TestConfig5()
    assert all(hasattr(conf5, f.name) for f in dataclasses.fields(TestConfig5))
    assert len(dataclasses.fields(TestConfig5)) == 5


def test_decorator_nested_includes_base_fields() -> None:
    assert set(_params(_command(TestConfig5))) == {f.name for f in dataclasses.fields(TestConfig5)}


def test_decorator_skip_of_unknown_option_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"TestConfig3 has no option testconfig3_int9$"):
        click_options(TestConfig3, skip={"testconfig3_int9"})


# --- test_link_flag and test_link_flag_inheritance ---


@dataclasses.dataclass(frozen=True)
class Flag6:
    """Options holding Monolith's testflag6 (default "")."""

    testflag6: str = ""


@link_options(linked=["testflag6"], linked_map={"v": "testflag6"}, options=Flag6)
@dataclasses.dataclass
class C6:
    v: str | None = None
    testflag6: str | None = None


def test_link_flag() -> None:
    assert apply_links(C6(), Flag6()) == C6()  # the option holds its default: nothing
    assert apply_links(C6(), Flag6(testflag6="a")) == C6(v="a", testflag6="a")
    # A value set in code is kept; the other linked field still takes the option.
    assert apply_links(C6(v="v"), Flag6(testflag6="b")) == C6(v="v", testflag6="b")


@dataclasses.dataclass(frozen=True)
class Flag7:
    testflag7: str = ""
    testflag8: int = 0


@link_options(linked_map={"v": "testflag7"})
@dataclasses.dataclass
class Base7:
    v: str | None = None


@dataclasses.dataclass
class Derived7(Base7):
    v2: str = "v2"


def test_link_flag_inheritance() -> None:
    d = apply_links(Derived7(), Flag7(testflag7="a"))
    assert (d.v, d.v2) == ("a", "v2")
    assert linked_options(Derived7) == {"v": "testflag7"}


def test_linked_subclass_adds_and_overrides_links() -> None:
    @link_options(linked_map={"v": "testflag8", "n": "testflag8"})
    @dataclasses.dataclass
    class Child(Derived7):
        n: int = 0

    assert linked_options(Child) == {"v": "testflag8", "n": "testflag8"}
    assert linked_options(Base7) == {"v": "testflag7"}  # the base keeps its own
    assert apply_links(Child(), Flag7(testflag7="a", testflag8=3)) == Child(v=3, n=3)  # type: ignore[arg-type]


def test_link_to_an_option_of_another_name_on_frozen_options() -> None:
    @link_options(linked_map={"num_shards": "shards"}, options=RemapOptions)
    @dataclasses.dataclass(frozen=True)
    class WriterSettings:
        num_shards: int = 1

    opts = RemapOptions(old=Path("a"), new_graph=Path("g"), out="o", shards=3)
    assert apply_links(WriterSettings(), opts) == WriterSettings(num_shards=3)
    assert apply_links(WriterSettings(num_shards=2), opts) == WriterSettings(num_shards=2)


def test_link_errors_name_the_missing_field_or_option() -> None:
    with pytest.raises(TypeError) as err:
        link_options(linked_map={"w": "testflag6"})(C6)
    assert str(err.value) == "C6 has no field 'w' to link to option 'testflag6'"
    with pytest.raises(TypeError) as err:
        link_options(linked_map={"v": "testflag9"}, options=Flag6)(C6)
    assert str(err.value) == "C6.v is linked to option 'testflag9', which Flag6 does not define"
    with pytest.raises(TypeError) as err:
        apply_links(Derived7(), Flag6(testflag6="a"))
    assert (
        str(err.value) == "Derived7.v is linked to option 'testflag7', which Flag6 does not define"
    )
    with pytest.raises(TypeError, match="decorates dataclasses"):
        link_options(linked=["x"])(int)


# --- option specs and generated help ---


def test_option_specs_of_remap_cover_every_kind() -> None:
    specs = option_specs(RemapOptions)
    kinds = {spec.kind for spec in specs.values()}
    assert kinds == {"int", "bool", "str", "float", "path", "enum", "list"}
    assert list(specs)[:2] == ["old", "new_graph"]  # base class fields first
    assert specs["old"].required
    assert not specs["alias_map"].required
    assert specs["step"].optional
    assert specs["step"].kind == "int"
    assert specs["on_existing_assets"].choices == ("link", "copy", "skip")
    assert (specs["new_graph"].option, specs["new_graph"].env) == (
        "--new-graph",
        "CKPTMAP_NEW_GRAPH",
    )
    assert set(COMMAND_OPTIONS) == {"inspect", "check", "remap", "alias", "convert", "diff"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shards", "The number of .data shards to write, filled together. [int; default: 1]"),
        (
            "auto",
            "Generate the remaining aliases with Monolith's heuristics. [bool; default: true]",
        ),
        ("candidate_cutoff", "[float; default: 0.5]"),
        ("saver", "[str; default: none]"),  # None, as PlanInputs: the default saver
        ("out", "model folder with a 'checkpoint' state file. [str; required]"),
        ("alias_map", "[path; default: none]"),
        ("on_existing_assets", "[enum; default: copy]"),
        ("rules", "[list of str; repeat the option]"),
    ],
)
def test_option_help_shows_type_and_default(name: str, expected: str) -> None:
    assert option_help(option_specs(RemapOptions)[name]).endswith(expected)


def test_generated_click_options() -> None:
    command = _command(RemapOptions)
    params = {param.name: param for param in command.params}
    assert params["auto"].opts == ["--auto"]
    assert params["auto"].secondary_opts == ["--no-auto"]
    choice = params["on_existing_assets"].type
    assert isinstance(choice, click.Choice)
    assert list(choice.choices) == ["link", "copy", "skip"]
    result = CliRunner().invoke(
        command,
        ["--on-existing-assets", "COPY", "--rules", "a=b", "--rules", "c=d", "--no-auto"],
        catch_exceptions=False,
    )
    assert "on_existing_assets=<AssetMode.COPY: 'copy'>" in result.output
    assert "rules=('a=b', 'c=d')" in result.output
    assert "auto=False" in result.output
    assert "old=None" in result.output  # required: left to the resolver


def test_unsupported_field_types_are_rejected() -> None:
    @dataclasses.dataclass
    class Bad:
        """:param items: a list"""

        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match=r"Bad\.items: type list\[int\] cannot be an option"):
        option_specs(Bad)

    @dataclasses.dataclass
    class BadDefault:
        """:param n: a number"""

        n: int | None = 3

    with pytest.raises(TypeError, match=r"BadDefault\.n: an optional field must default to None"):
        option_specs(BadDefault)


# --- config files ---


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("shards",), 1),
        (("remap",), 4),
        (("remap", "shards"), 5),
        (("remap", "on_existing_assets"), 6),
        (("check", "saver"), 8),
        (("check", "quiet"), None),
        (("tool",), None),
    ],
)
def test_key_line(path: tuple[str, ...], line: int | None) -> None:
    text = (
        "shards = 2\n"
        "check.saver = 'x'  # dotted keys are under the current table\n"
        "\n"
        "[ remap ]  # a comment\n"
        "shards=4\n"
        '"on_existing_assets" = "copy"\n'
        "[[tool]]\n"
        "check.saver = 1\n"
    )
    # check.saver at line 2 is found first; the array table at 7 is not ours.
    assert key_line(text, path) == (2 if path == ("check", "saver") else line)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shards = = 3\n", "bad.toml:1:10: not valid TOML: invalid value (fix the syntax there)"),
        (
            "[remap]\nshards = 1\n[remap]\n",
            "bad.toml:3:7: not valid TOML: cannot declare ('remap',) twice (fix the syntax there)",
        ),
        (
            'saver = "open',
            "bad.toml:1:14: not valid TOML: unterminated string (fix the syntax there)",
        ),
    ],
)
def test_unparsable_toml_reports_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        read_toml(path)
    assert str(err.value) == f"{tmp_path}/{message}"


def test_read_config_of_pyproject_reads_tool_ckptmap_only(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'x'\n")
    assert read_config(pyproject) is None
    pyproject.write_text("[tool.ckptmap]\nshards = 2\n[tool.ckptmap.remap]\nforce = true\n")
    config = read_config(pyproject)
    assert config is not None
    assert config.table == {"shards": 2, "remap": {"force": True}}
    assert config.where("remap", "force") == f"{pyproject}:4"
    pyproject.write_text("[tool]\nckptmap = 3\n")
    with pytest.raises(UsageError) as err:
        read_config(pyproject)
    assert str(err.value) == f"{pyproject}:2: tool.ckptmap must be a table ([tool.ckptmap])"


def test_find_pyproject_searches_upward(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("")
    assert find_pyproject(deep) == tmp_path / "pyproject.toml"
    (tmp_path / "a" / "pyproject.toml").write_text("")
    assert find_pyproject(deep) == tmp_path / "a" / "pyproject.toml"


# --- resolve_options ---


def _resolve(**kwargs: Any) -> Any:
    kwargs.setdefault("environ", {})
    kwargs.setdefault("discover", False)
    return resolve_options(RemapOptions, "remap", **kwargs)


def test_resolve_defaults_and_missing_required() -> None:
    resolved = _resolve()
    assert resolved.values["shards"] == 1
    assert resolved.sources["shards"] == "default"
    assert resolved.missing == ["old", "new_graph", "out"]
    assert "old" not in resolved.values
    assert resolved.sources["old"] == "unset"
    with pytest.raises(UsageError) as err:
        resolved.options  # noqa: B018 - the property raises
    assert str(err.value) == (
        "remap: --old, --new-graph, --out are required (give each on the command line, "
        "as 'old' in a config file, or as CKPTMAP_OLD)"
    )


def test_resolve_builds_typed_options(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "ckptmap.toml"
    config.parent.mkdir()
    config.write_text(
        'old = "ckpt/model"\nshards = 9\n'
        '[remap]\nshards = 2\nnew_graph = "graph.pbtxt"\non_existing_assets = "Skip"\n'
        "[check]\nshards = 7\n"  # not an option of check: an unknown key
    )
    with pytest.raises(UsageError, match=r"\[check\] unknown key 'shards'"):
        _resolve(config=config)
    config.write_text(config.read_text().replace("shards = 7", "quiet = true"))
    resolved = _resolve(
        config=config,
        environ={"CKPTMAP_OUT": "out/model", "CKPTMAP_RULES": "a=b\n\n  c{1,2}=d  \n"},
        cli={"force": True},
    )
    opts = resolved.options
    assert opts == RemapOptions(
        old=tmp_path / "conf" / "ckpt/model",  # relative to the config file
        new_graph=tmp_path / "conf" / "graph.pbtxt",
        out="out/model",  # relative to the current folder
        rules=("a=b", "c{1,2}=d"),
        shards=2,  # the [remap] table wins over the shared key
        on_existing_assets=AssetMode.SKIP,
        force=True,
    )
    assert resolved.sources["quiet"] == "default"  # [check] is not remap's table
    assert resolved.sources["rules"] == "env:CKPTMAP_RULES"
    assert resolved.sources["old"] == f"config:{config}"
    assert resolved.config == config


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("TRUE", True), ("yes", True), ("On", True), ("0", False), ("off", False)],
)
def test_env_booleans(text: str, value: bool) -> None:
    assert _resolve(environ={"CKPTMAP_FORCE": text}).values["force"] is value


def test_empty_env_counts_as_unset_and_unknown_variables_are_ignored() -> None:
    resolved = _resolve(environ={"CKPTMAP_SHARDS": "", "CKPTMAP_REQUIRE_TF": "1"})
    assert resolved.sources["shards"] == "default"


def test_explicit_default_in_a_higher_layer_wins(tmp_path: Path) -> None:
    """Presence, not a non-default value, decides (unlike Monolith's flag rule)."""
    config = tmp_path / "ckptmap.toml"
    config.write_text("shards = 4\nauto = false\n")
    resolved = _resolve(config=config, cli={"shards": 1}, environ={"CKPTMAP_AUTO": "true"})
    assert (resolved.values["shards"], resolved.sources["shards"]) == (1, "cli")
    assert (resolved.values["auto"], resolved.sources["auto"]) == (True, "env:CKPTMAP_AUTO")


def test_discovered_pyproject_and_config_replacing_it(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.ckptmap.remap]\nshards = 5\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    resolved = resolve_options(RemapOptions, "remap", cwd=sub, environ={})
    assert resolved.values["shards"] == 5
    assert resolved.sources["shards"] == f"config:{tmp_path / 'pyproject.toml'}"
    other = tmp_path / "other.toml"
    other.write_text("force = true\n")
    resolved = resolve_options(RemapOptions, "remap", cwd=sub, environ={}, config=other)
    assert resolved.sources["shards"] == "default"
    assert resolved.sources["force"] == f"config:{other}"


def test_cli_values_from_library_callers_are_typed() -> None:
    resolved = _resolve(cli={"old": "a", "on_existing_assets": "copy"})
    assert resolved.values["old"] == Path("a")
    assert resolved.values["on_existing_assets"] is AssetMode.COPY
    with pytest.raises(TypeError, match="RemapOptions has no option 'shard'"):
        _resolve(cli={"shard": 2})


def test_to_json_schema() -> None:
    data = _resolve(cli={"on_existing_assets": AssetMode.COPY, "out": "o"}).to_json()
    assert data["command"] == "remap"
    assert data["config"] is None
    assert data["options"]["on_existing_assets"] == {"value": "copy", "source": "cli"}
    assert data["options"]["out"] == {"value": "o", "source": "cli"}
    assert data["options"]["old"] == {"value": None, "source": "unset"}
    assert data["options"]["rules"] == {"value": [], "source": "default"}
    assert list(data["options"]) == list(option_specs(RemapOptions))


class Color(enum.Enum):
    RED = 1
    DARK_BLUE = 2


def test_a_new_command_is_resolved_without_registering_it(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class PaintOptions:
        """:param color: the color"""

        color: Color = Color.RED

    config = tmp_path / "c.toml"
    config.write_text('[paint]\ncolor = "dark_blue"\n[remap]\nshards = 2\n')
    resolved = resolve_options(PaintOptions, "paint", config=config, environ={}, discover=False)
    assert resolved.options == PaintOptions(color=Color.DARK_BLUE)


@pytest.mark.parametrize("module", ["_help", "_link", "_resolve"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"ckptmap.cli.options.{module}"))
    assert result.attempted > 0
    assert result.failed == 0
