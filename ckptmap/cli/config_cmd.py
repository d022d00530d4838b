"""``ckptmap config show``: the effective options of a command and where each came from."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from ckptmap.cli._output import console, reported_errors
from ckptmap.cli._render import print_table
from ckptmap.cli.options import (
    COMMAND_OPTIONS,
    Resolved,
    click_options,
    config_option,
    option_specs,
    resolve_click,
    resolve_options,
)
from ckptmap.cli.options._spec import to_text

# Options of a command that `config show` uses for itself.
_OWN = frozenset({"json"})


def _json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


def _render(resolved: list[Resolved[Any]], as_json: bool) -> None:
    if as_json:
        data = [r.to_json() for r in resolved]
        console.print_json(json.dumps(data[0] if len(data) == 1 else data))
        return
    for r in resolved:
        config = "none" if r.config is None else str(r.config)
        table = Table(title=f"{r.command} options (config file: {config})", title_justify="left")
        for column in ("option", "value", "source"):
            table.add_column(column)
        for name in r.specs:
            value = to_text(r.values[name]) if name in r.values else "(not set)"
            table.add_row(name, value, r.sources[name])
        print_table(table, keys=(0, 1))


@click.group("config")
def config_command() -> None:
    """Show the options ckptmap would use, and where each value comes from.

    Every option of a command can be set, from lowest to highest precedence,
    by its default, a config file (--config FILE, else [tool.ckptmap] in the
    nearest pyproject.toml), a CKPTMAP_<OPTION> environment variable, or the
    command line. See docs/options.md.
    """


@config_command.group("show", invoke_without_command=True)
@config_option()
@_json_option
@click.pass_context
def show_command(ctx: click.Context, config: Any, as_json: bool) -> None:
    """Show the effective options of a command and the source of each value.

    Without a command, show those of every command. A command accepts its
    own options too, to show what a command line would run with; a source is
    default, config:<file>, env:<VARIABLE>, cli, or unset (a required option
    that nothing set).

    \b
    Examples:
      ckptmap config show
      ckptmap config show remap --config ckptmap.toml --json
      CKPTMAP_SHARDS=4 ckptmap config show remap --no-auto
    """
    if ctx.invoked_subcommand is not None:
        return
    with reported_errors():
        resolved: list[Resolved[Any]] = [
            resolve_options(cls, name, config=config) for name, cls in COMMAND_OPTIONS.items()
        ]
    _render(resolved, as_json)


def _show_one(name: str, cls: type) -> click.Command:
    skip = _OWN & option_specs(cls).keys()

    @click.pass_context
    def show(ctx: click.Context, /, as_json: bool, **_: Any) -> None:
        with reported_errors():
            resolved: Resolved[Any] = resolve_click(ctx, cls, name)
        parent_json = bool(ctx.parent and ctx.parent.params.get("as_json"))
        _render([resolved], as_json or parent_json)

    show.__doc__ = (
        f"Show the effective options of `ckptmap {name}` and the source of each value.\n\n"
        f"Takes the options of `{name}` too (except --json, which selects the output)."
    )
    # Applied innermost first: the command's own options are listed first in --help.
    return click.command(name)(click_options(cls, skip=skip)(config_option()(_json_option(show))))


for _name, _cls in COMMAND_OPTIONS.items():
    show_command.add_command(_show_one(_name, _cls))
