"""Config files: ``ckptmap.toml`` given with ``--config``, or ``[tool.ckptmap]`` in pyproject.toml.

A config table holds shared keys, used by every command that has an option of
that name, and one sub-table per command (``[remap]`` in ckptmap.toml,
``[tool.ckptmap.remap]`` in pyproject.toml) whose keys win over the shared
ones. The whole table is checked on every read, so a typo in any command's
table is reported at once.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckptmap.cli.options._spec import OptionSpec
from ckptmap.cli.options._values import Mismatch, from_toml, toml_repr
from ckptmap.errors import UsageError

PYPROJECT = "pyproject.toml"
_TOOL_TABLE = ("tool", "ckptmap")

# Patterns for messages only (the line of a key, TOML's error positions): kept as
# text, compiled by re on first use, so a run without a config problem compiles none.
_AT_LINE = r"\s*\(at line (\d+), column (\d+)\)$"
_AT_END = r"\s*\(at end of document\)$"
_HEADER = r"\s*\[\s*([^\[\]]*?)\s*\]\s*(?:#.*)?"
_ARRAY_HEADER = r"\s*\[\[.*"
_KEY_PART = r"\s*(?:\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|([A-Za-z0-9_-]+))\s*"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The ckptmap table of one TOML file.

    Attributes:
        path: the file, as given or as found.
        text: the file's text, to find the line of a key for messages.
        table: the ckptmap table (the whole ckptmap.toml, or ``tool.ckptmap``).
        prefix: where ``table`` sits in the file: ``()`` or ``("tool", "ckptmap")``.
    """

    path: Path
    text: str
    table: Mapping[str, Any]
    prefix: tuple[str, ...]

    def line_of(self, *keys: str) -> int | None:
        """The 1-based line where ``keys`` (below the prefix) is set, if it can be found."""
        return key_line(self.text, self.prefix + keys)

    def where(self, *keys: str) -> str:
        """``file:line`` of a key, or just the file when the line is unknown."""
        line = self.line_of(*keys)
        return f"{self.path}:{line}" if line is not None else str(self.path)

    def table_name(self, command: str | None) -> str:
        """The header of a table as the user wrote it: ``[tool.ckptmap.remap]``, ``[remap]``."""
        parts = self.prefix + ((command,) if command else ())
        return f"[{'.'.join(parts)}] " if parts else ""


def _parse_key(text: str) -> list[str] | None:
    """The parts of a (dotted) TOML key, or ``None`` when ``text`` is not one."""
    parts: list[str] = []
    for raw in text.split("."):
        matched = re.fullmatch(_KEY_PART, raw)
        if matched is None:
            return None
        parts.append(next(group for group in matched.groups() if group is not None))
    return parts


def key_line(text: str, path: tuple[str, ...]) -> int | None:
    """Find the 1-based line that sets the key at ``path`` in a TOML text.

    The line is the ``key = ...`` line, or the ``[header]`` line of a table.
    Understands table headers and dotted keys, which is all a config file
    needs; a key set inside an inline table is not found (``None``).
    """
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(_ARRAY_HEADER, line):
            table = ["[["]  # inside an array of tables: nothing of ours
            continue
        header = re.fullmatch(_HEADER, line)
        if header is not None:
            table = _parse_key(header.group(1)) or ["["]
            if tuple(table) == path:
                return number
            continue
        key, sep, _ = line.partition("=")
        parts = _parse_key(key) if sep else None
        if parts is not None and tuple(table + parts) == path:
            return number
    return None


def _decode_error(path: Path, text: str, err: Exception) -> UsageError:
    message = str(err)
    line, column = getattr(err, "lineno", None), getattr(err, "colno", None)
    at_line = re.search(_AT_LINE, message)
    if at_line is not None:
        line, column = int(at_line.group(1)), int(at_line.group(2))
    elif re.search(_AT_END, message) is not None:
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    detail = re.sub(_AT_END, "", re.sub(_AT_LINE, "", message))
    detail = detail[:1].lower() + detail[1:]
    where = f"{path}:{line}:{column}" if line is not None else str(path)
    return UsageError(f"{where}: not valid TOML: {detail} (fix the syntax there)")


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """Read and parse a TOML file.

    Raises:
        UsageError: the file cannot be read, is not UTF-8, or is not valid TOML
            (the message gives the line and column).
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found (check the --config path)") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: config file is not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read the config file ({err.strerror})") from None
    if sys.version_info >= (3, 11):  # imported here: most runs have no config file
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _decode_error(path, text, err) from None


def read_config(path: str | os.PathLike[str]) -> ConfigFile | None:
    """Read a config file: a ``pyproject.toml`` (its ``[tool.ckptmap]`` table) or a ckptmap.toml.

    Returns:
        The ckptmap table, or ``None`` for a pyproject.toml without one.

    Raises:
        UsageError: the file is unreadable or not valid TOML, or ``tool.ckptmap``
            is not a table.
    """
    path = Path(path)
    text, data = read_toml(path)
    if path.name != PYPROJECT:
        return ConfigFile(path, text, data, ())
    tool = data.get("tool")
    table = tool.get("ckptmap") if isinstance(tool, dict) else None
    if table is None:
        return None
    config = ConfigFile(path, text, table if isinstance(table, dict) else {}, _TOOL_TABLE)
    if not isinstance(table, dict):
        raise UsageError(f"{config.where()}: tool.ckptmap must be a table ([tool.ckptmap])")
    return config


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a folder above it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


def _unknown_key(
    config: ConfigFile,
    command: str | None,
    key: str,
    commands: Mapping[str, Mapping[str, OptionSpec]],
) -> UsageError:
    if command is None:
        valid = sorted({name for specs in commands.values() for name in specs} | set(commands))
    else:
        valid = list(commands[command])
    owners = [name for name, specs in commands.items() if key in specs]
    import difflib  # only for the message of a mistyped key

    close = difflib.get_close_matches(key, valid, n=1)
    if owners:
        hint = f"an option of {', '.join(owners)}, not of {command}"
    elif close:
        hint = f"did you mean '{close[0]}'?"
    else:
        hint = f"see 'ckptmap config show{' ' + command if command else ''}' for the keys"
    where = config.where(*((command,) if command else ()), key)
    return UsageError(f"{where}: {config.table_name(command)}unknown key '{key}' ({hint})")


def _convert(config: ConfigFile, command: str | None, spec: OptionSpec, value: Any) -> Any:
    try:
        return from_toml(spec, value, config.path.parent)
    except Mismatch as err:
        keys = (command,) if command else ()
        shown = toml_repr(value)
        setting = f"{spec.name} = {shown}" if shown is not None else spec.name
        got = "" if spec.enum is not None and isinstance(value, str) else f", got {err.got}"
        raise UsageError(
            f"{config.where(*keys, spec.name)}: {config.table_name(command)}{setting}: "
            f"expected {spec.expected}{got}"
        ) from None


def config_values(
    config: ConfigFile, commands: Mapping[str, Mapping[str, OptionSpec]]
) -> dict[str, dict[str, Any]]:
    """Check a config table and convert its values, per command.

    Args:
        config: the file's ckptmap table.
        commands: the options of every known command, by command name.

    Returns:
        For each command, the values the file sets for it: its own table's keys
        over the shared keys.

    Raises:
        UsageError: an unknown key or table (with the nearest valid key), a value
            of the wrong type (with its line and the expected type), or an
            unknown enum value (with the choices).
    """
    # [storage] is not a command's: cli/options/_storage.py reads and checks it
    shared = {k: v for k, v in config.table.items() if k not in commands and k != "storage"}
    for key in shared:
        if not any(key in specs for specs in commands.values()):
            raise _unknown_key(config, None, key, commands)
    tables: dict[str, Mapping[str, Any]] = {}
    for command in commands:
        table = config.table.get(command, {})
        if not isinstance(table, dict):
            name = config.table_name(command).strip()
            raise UsageError(f"{config.where(command)}: '{command}' must be a table ({name})")
        for key in table:
            if key not in commands[command]:
                raise _unknown_key(config, command, key, commands)
        tables[command] = table
    values: dict[str, dict[str, Any]] = {}
    for command, specs in commands.items():
        own = values[command] = {}
        for key, value in shared.items():
            if key in specs:
                own[key] = _convert(config, None, specs[key], value)
        for key, value in tables[command].items():
            own[key] = _convert(config, command, specs[key], value)
    return values
