"""What an options dataclass field is as an option: its kind, default, help and names.

A field becomes an option when it has help text (see :mod:`._help`) and one of
the supported types: ``int``, ``float``, ``bool``, ``str``, ``Path``, an
``Enum``, ``tuple[str, ...]`` (a list of strings), or ``X | None`` of a scalar
kind, whose default must then be ``None``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ckptmap.cli.options._help import extract_help_info

ENV_PREFIX = "CKPTMAP_"

# Kinds, by the name shown in help text and in error messages.
_SCALARS: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str", Path: "path"}
_LIST = "list"
_ENUM = "enum"

_EXPECTED = {
    "bool": "a boolean",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "path": "a path (a string)",
    _LIST: "a list of strings",
}


class Missing(Enum):
    """The marker of a field without a default (the value must come from a layer)."""

    REQUIRED = "required"


REQUIRED = Missing.REQUIRED


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One field of an options dataclass, seen as an option.

    Attributes:
        name: the field name; also the config key.
        kind: ``bool``, ``int``, ``float``, ``str``, ``path``, ``enum`` or ``list``.
        default: the field default, or :data:`REQUIRED`.
        help: the help text from the docstring.
        optional: the type is ``X | None``.
        enum: the Enum class of an ``enum`` field.
    """

    name: str
    kind: str
    default: Any
    help: str
    optional: bool = False
    enum: type[Enum] | None = None

    @property
    def option(self) -> str:
        """The command-line option, ``--field-name``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, ``CKPTMAP_FIELD_NAME``."""
        return ENV_PREFIX + self.name.upper()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def choices(self) -> tuple[str, ...]:
        """The lower-case member names of an ``enum`` field, as Monolith offered them."""
        return tuple(name.lower() for name in self.enum.__members__) if self.enum else ()

    @property
    def expected(self) -> str:
        """What a value must be, for error messages."""
        if self.enum is not None:
            return "one of " + ", ".join(self.choices)
        return _EXPECTED[self.kind]

    def type_label(self) -> str:
        """The type as shown in help text: ``int``, ``path``, ``enum``, ``list of str``..."""
        return "list of str" if self.kind == _LIST else self.kind

    def enum_member(self, name: str) -> Enum | None:
        """The member called ``name`` (any case), or ``None``."""
        if self.enum is None:
            return None
        return self.enum.__members__.get(name.upper())


def _kind(tp: Any) -> tuple[str, bool, type[Enum] | None] | None:
    """(kind, optional, enum class) of a type hint, or ``None`` when unsupported."""
    optional = False
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) != 1:
            return None
        tp, optional = rest[0], True
    if tp in _SCALARS:
        return _SCALARS[tp], optional, None
    if isinstance(tp, type) and issubclass(tp, Enum):
        return _ENUM, optional, tp
    if not optional and typing.get_origin(tp) is tuple and typing.get_args(tp) == (str, ...):
        return _LIST, False, None
    return None


def field_default(field: dataclasses.Field[Any]) -> Any:
    """A field's default (calling its factory), or :data:`REQUIRED`."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return REQUIRED


def option_specs(cls: type, *, nested: bool = True) -> dict[str, OptionSpec]:
    """The options of a dataclass: its documented fields, in field order.

    Fields without help text (or, with ``nested=False``, documented only in a
    base class) are not options. ``init=False`` fields never are.

    Raises:
        TypeError: ``cls`` is not a dataclass, or a documented field has a type
            that cannot be an option, or an optional field's default is not None.
            These are mistakes in the code, not in the user's input.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass; options are read from dataclass fields")
    help_info = extract_help_info(cls, nested=nested)
    hints = typing.get_type_hints(cls)
    specs: dict[str, OptionSpec] = {}
    for field in dataclasses.fields(cls):
        if not field.init or field.name not in help_info:
            continue
        kind = _kind(hints[field.name])
        where = f"{cls.__qualname__}.{field.name}"
        if kind is None:
            raise TypeError(
                f"{where}: type {hints[field.name]!r} cannot be an option "
                "(use int, float, bool, str, Path, an Enum, tuple[str, ...] or X | None)"
            )
        default = field_default(field)
        if kind[1] and default not in (None, REQUIRED):
            raise TypeError(f"{where}: an optional field must default to None")
        specs[field.name] = OptionSpec(
            field.name, kind[0], default, help_info[field.name], kind[1], kind[2]
        )
    return specs


def to_json(value: Any) -> Any:
    """A resolved value as JSON: paths as strings, enum members by lower-case name."""
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [to_json(item) for item in value]
    return value


def to_text(value: Any) -> str:
    """A resolved value for a table or help text."""
    if value is None or value is REQUIRED:
        return "none" if value is None else "required"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(empty)"
    if value == "":
        return '""'
    return str(to_json(value))
