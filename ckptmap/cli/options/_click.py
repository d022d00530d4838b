"""Click options generated from an options dataclass, and resolution from a click context."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from ckptmap.cli.options._resolve import Resolved, resolve_options
from ckptmap.cli.options._spec import OptionSpec, option_specs, to_text

if TYPE_CHECKING:
    from ckptmap.storage.store_config import StoreConfig

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

CONFIG_PARAM = "config"
_STORE_CONFIG = "ckptmap.storage.store_config"
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.PROMPT)


def option_help(spec: OptionSpec) -> str:
    """The help of a generated option: the docstring help, then type and default."""
    if spec.kind == "list":
        tail = "list of str; repeat the option"
    elif spec.required:
        tail = f"{spec.type_label()}; required"
    else:
        tail = f"{spec.type_label()}; default: {to_text(spec.default)}"
    return f"{spec.help[:1].upper()}{spec.help[1:]} [{tail}]"


def _enum_callback(spec: OptionSpec) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        return spec.enum_member(value) if isinstance(value, str) else value

    return convert


def _option(spec: OptionSpec) -> Callable[[F], F]:
    """The ``click.option`` decorator of one option."""
    flag = spec.option
    default = None if spec.required else spec.default
    kwargs: dict[str, Any] = {"help": option_help(spec), "default": default}
    if spec.kind == "bool" and not spec.optional:
        return click.option(f"{flag}/--no-{flag[2:]}", spec.name, **kwargs)
    if spec.enum is not None:
        kwargs["type"] = click.Choice(spec.choices, case_sensitive=False)
        kwargs["callback"] = _enum_callback(spec)
        kwargs["default"] = default.name.lower() if default is not None else None
    elif spec.kind == "path":
        kwargs["type"] = click.Path(path_type=Path)
    elif spec.kind == "list":
        kwargs.update(type=str, multiple=True, metavar="TEXT")
        if flag.endswith("s"):  # a repeatable option also answers to its singular: --rule
            return click.option(flag, flag[:-1], spec.name, **kwargs)
    else:
        kwargs["type"] = {"bool": bool, "int": int, "float": float, "str": str}[spec.kind]
    return click.option(flag, spec.name, **kwargs)


def click_options(cls: type, *, skip: Iterable[str] = (), nested: bool = True) -> Callable[[F], F]:
    """Add one click option per documented field of an options dataclass.

    Monolith's ``extract_flags_decorator``, for click. Each field with help
    text becomes ``--field-name`` (a bool becomes ``--x/--no-x``; an Enum a
    choice of its lower-case member names; a ``tuple[str, ...]`` a repeatable
    option), with the dataclass default as the click default and help that
    shows the type and the default. A required field gets a ``None`` click
    default: the resolver reports it when no layer sets it.

    Args:
        cls: the options dataclass.
        skip: fields that get no option (the command handles them itself).
        nested: read help from base classes' docstrings too; with ``False``,
            fields documented only in a base class get no option.

    Raises:
        TypeError: ``skip`` names no documented field, or a field's type is
            unsupported (see :func:`ckptmap.cli.options.option_specs`).
    """
    specs = option_specs(cls, nested=nested)
    skipped = set(skip)
    unknown = sorted(skipped - specs.keys())
    if unknown:
        raise TypeError(f"click_options(): {cls.__qualname__} has no option {', '.join(unknown)}")
    decorators = [_option(spec) for name, spec in specs.items() if name not in skipped]

    def decorate(func: F) -> F:
        for decorator in reversed(decorators):  # the first field is listed first in --help
            func = decorator(func)
        return func

    return decorate


def config_option() -> Callable[[F], F]:
    """The ``--config FILE`` option: a TOML file that replaces the pyproject.toml search."""
    return click.option(
        "--config",
        CONFIG_PARAM,
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=(
            "A TOML config file (shared keys and one table per command: [remap], ...). "
            "Default: [tool.ckptmap] of the nearest pyproject.toml."
        ),
    )


def _given_config(ctx: click.Context) -> Path | None:
    current: click.Context | None = ctx
    while current is not None:
        value = current.params.get(CONFIG_PARAM)
        if isinstance(value, Path):
            return value
        current = current.parent
    return None


def resolve_click(ctx: click.Context, cls: type[T], command: str | None = None) -> Resolved[T]:
    """Resolve a command's options inside its click callback.

    The command line layer holds only the options the user typed (click's
    parameter source), so a default-valued click option never hides a config
    file or environment value. ``--config`` is taken from this command or the
    nearest parent command that has it.

    Args:
        ctx: the current click context (``click.get_current_context()``).
        cls: the options dataclass the command was decorated with.
        command: the config table to read; the command's name when ``None``.

    Raises:
        UsageError: as :func:`ckptmap.cli.options.resolve_options`.
    """
    specs = option_specs(cls)
    cli = {
        name: ctx.params[name]
        for name in specs
        if name in ctx.params and ctx.get_parameter_source(name) in _GIVEN
    }
    resolved = resolve_options(
        cls, command or ctx.info_name or "", cli=cli, config=_given_config(ctx)
    )
    _configure_stores(resolved.storage)
    return resolved


def _configure_stores(config: StoreConfig | None) -> None:
    """Use the config file's ``[storage]`` tables, under ``AWS_*`` etc., for the stores opened."""
    if config is None and _STORE_CONFIG not in sys.modules:
        return  # nothing configures a store, nor did before in this process: the defaults apply
    from ckptmap.storage.store_config import configure

    configure(config)
