"""Layered option values: defaults < config file < environment < command line.

Every field takes its value from the most explicit layer that sets it, and
the layer is recorded as the value's source. See ``docs/options.md`` for how
this relates to Monolith's ``update`` rule.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ckptmap.cli.options._config import (
    ConfigFile,
    config_values,
    find_pyproject,
    read_config,
)
from ckptmap.cli.options._spec import OptionSpec, option_specs, to_json
from ckptmap.cli.options._storage import storage_config
from ckptmap.cli.options._values import BOOL_WORDS, Mismatch, from_env
from ckptmap.cli.options.commands import COMMAND_OPTIONS
from ckptmap.errors import UsageError

if TYPE_CHECKING:
    from ckptmap.storage.store_config import StoreConfig

T = TypeVar("T")

DEFAULT = "default"
CLI = "cli"
UNSET = "unset"


@dataclass(frozen=True, slots=True)
class Resolved(Generic[T]):
    """The effective options of a command and where each value came from.

    Attributes:
        cls: the options dataclass.
        command: the command name (its config table).
        specs: the options, by field name, in field order.
        values: the value of every option that has one (a required option that
            no layer set has none).
        sources: for every option: ``default``, ``config:<file>``,
            ``env:<VARIABLE>``, ``cli``, or ``unset`` for a required option
            that no layer set.
        config: the config file that was read, if any.
        storage: how object stores are reached (the file's ``[storage]`` tables
            under the environment's ``AWS_*``, ``STORAGE_EMULATOR_HOST``, ...);
            ``None`` when neither sets anything (the defaults).
    """

    cls: type[T]
    command: str
    specs: Mapping[str, OptionSpec]
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    config: Path | None
    storage: StoreConfig | None = None

    @property
    def missing(self) -> list[str]:
        """The required options that no layer set."""
        return [name for name, source in self.sources.items() if source == UNSET]

    @property
    def options(self) -> T:
        """The options dataclass built from the values.

        Raises:
            UsageError: a required option was set by no layer.
        """
        missing = [self.specs[name] for name in self.missing]
        if missing:
            names = ", ".join(spec.option for spec in missing)
            verb, pronoun = ("is", "it") if len(missing) == 1 else ("are", "each")
            raise UsageError(
                f"{self.command}: {names} {verb} required (give {pronoun} on the command line, "
                f"as '{missing[0].name}' in a config file, or as {missing[0].env})"
            )
        return self.cls(**self.values)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON form (docs/options.md): command, config file, options."""
        return {
            "command": self.command,
            "config": None if self.config is None else str(self.config),
            "options": {
                name: {"value": to_json(self.values.get(name)), "source": self.sources[name]}
                for name in self.specs
            },
        }


def _env_values(specs: Mapping[str, OptionSpec], environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        text = environ.get(spec.env, "")
        if not text:
            continue  # an empty variable counts as unset
        try:
            values[name] = from_env(spec, text)
        except Mismatch as err:
            expected = f"{spec.expected} ({BOOL_WORDS})" if spec.kind == "bool" else spec.expected
            raise UsageError(
                f"{spec.env}={err.got}: expected {expected} (fix or unset the variable)"
            ) from None
    return values


def _cli_values(
    cls: type, specs: Mapping[str, OptionSpec], cli: Mapping[str, Any]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in cli.items():
        spec = specs.get(name)
        if spec is None:
            raise TypeError(f"{cls.__qualname__} has no option '{name}'")
        if spec.kind == "path" and isinstance(value, str):
            value = Path(value)
        elif spec.enum is not None and isinstance(value, str):
            member = spec.enum_member(value)
            if member is None:
                raise UsageError(f"{spec.option} {value}: expected {spec.expected}")
            value = member
        values[name] = value
    return values


def _registry(command: str, cls: type) -> dict[str, dict[str, OptionSpec]]:
    registry = {name: option_specs(klass) for name, klass in COMMAND_OPTIONS.items()}
    registry[command] = option_specs(cls)
    return registry


def _config_file(
    config: str | os.PathLike[str] | None, cwd: Path | None, discover: bool
) -> ConfigFile | None:
    if config is not None:
        return read_config(config)
    if not discover:
        return None
    pyproject = find_pyproject(Path.cwd() if cwd is None else cwd)
    return None if pyproject is None else read_config(pyproject)


def resolve_options(
    cls: type[T],
    command: str,
    *,
    cli: Mapping[str, Any] | None = None,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    discover: bool = True,
) -> Resolved[T]:
    """Resolve a command's options from defaults, a config file, the environment and the CLI.

    Each option takes its value from the highest layer that sets it
    (command line > environment > config file > default): a layer sets an
    option when the key, variable or flag is present, even with the default
    value. In a config file, the command's table wins over the shared keys.

    Args:
        cls: the command's options dataclass.
        command: the command name; selects the config table (``[remap]``).
        cli: the options given on the command line (only those; see
            :func:`ckptmap.cli.options.resolve_click`).
        config: a config file; replaces the search for pyproject.toml.
        environ: the environment (``os.environ`` when ``None``); ``CKPTMAP_<FIELD>``
            variables are read, an empty one counts as unset.
        cwd: where the search for pyproject.toml starts (the current folder).
        discover: search for the nearest pyproject.toml when ``config`` is None.

    Returns:
        The values and their sources; ``.options`` builds the dataclass.

    Raises:
        UsageError: a bad config file (unparsable, unknown key, wrong type,
            unknown enum value) or environment variable.

    Example:
        >>> from ckptmap.cli.options import RemapOptions
        >>> r = resolve_options(RemapOptions, "remap", cli={"shards": 4}, discover=False,
        ...                     environ={"CKPTMAP_SHARDS": "2", "CKPTMAP_FORCE": "yes"})
        >>> r.values["shards"], r.sources["shards"], r.sources["force"]
        (4, 'cli', 'env:CKPTMAP_FORCE')
    """
    specs = option_specs(cls)
    file = _config_file(config, cwd, discover)
    file_values = config_values(file, _registry(command, cls))[command] if file else {}
    env_values = _env_values(specs, os.environ if environ is None else environ)
    cli_values = _cli_values(cls, specs, cli or {})
    layers = (
        (CLI, cli_values),
        (None, env_values),
        (f"config:{file.path}" if file else "", file_values),
    )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, spec in specs.items():
        for label, layer in layers:
            if name in layer:
                values[name] = layer[name]
                sources[name] = label if label is not None else f"env:{spec.env}"
                break
        else:
            if spec.required:
                sources[name] = UNSET
            else:
                values[name], sources[name] = spec.default, DEFAULT
    storage = storage_config(file, os.environ if environ is None else environ)
    return Resolved(cls, command, specs, values, sources, file.path if file else None, storage)
