"""Turning a config-file value or an environment string into a field's value.

Both functions raise :class:`Mismatch`, which callers turn into a
:class:`~ckptmap.errors.UsageError` that says where the value came from.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from ckptmap.cli.options._spec import OptionSpec

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
BOOL_WORDS = "1/0, true/false, yes/no, on/off"


class Mismatch(Exception):
    """A value does not fit its field.

    Attributes:
        got: what was found instead, for the message ("a string", "'four'").
    """

    def __init__(self, got: str) -> None:
        self.got = got
        super().__init__(got)


def toml_type(value: Any) -> str:
    """The TOML type of a parsed value, with an article ("an integer")."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date or time"
    return type(value).__name__


def toml_repr(value: Any) -> str | None:
    """A value as it could be written in TOML, or ``None`` for tables and dates."""
    if isinstance(value, (bool, int, float, str, list)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return None
    return None


def from_toml(spec: OptionSpec, value: Any, base: Path) -> Any:
    """Convert a parsed TOML value; relative paths are taken from ``base``.

    Raises:
        Mismatch: the value has the wrong type, or names no enum member.
    """
    kind = spec.kind
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind in ("int", "float") and isinstance(value, int) and not isinstance(value, bool):
        return value if kind == "int" else float(value)
    if kind == "float" and isinstance(value, float):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "path" and isinstance(value, str):
        return base / value
    if kind == "enum" and isinstance(value, str):
        member = spec.enum_member(value)
        if member is None:
            raise Mismatch(json.dumps(value))
        return member
    if kind == "list" and isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise Mismatch(f"an array containing {toml_type(item)}")
        return tuple(value)
    raise Mismatch(toml_type(value))


def from_env(spec: OptionSpec, text: str) -> Any:
    """Convert the text of an environment variable.

    Booleans are any of 1/0, true/false, yes/no, on/off (any case); a list is
    one item per line, blank lines ignored.

    Raises:
        Mismatch: the text is not a value of the field's type.
    """
    kind = spec.kind
    if kind == "bool":
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    elif kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            pass
    elif kind == "enum":
        member = spec.enum_member(text.strip())
        if member is not None:
            return member
    elif kind == "path":
        return Path(text)
    elif kind == "list":
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    else:
        return text
    raise Mismatch(json.dumps(text))
