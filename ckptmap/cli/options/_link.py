"""Filling a dataclass from option values: Monolith's ``update`` and linked fields.

Both follow Monolith's rule: a value set in code (any value other than the
field's default) is never overwritten; an option only fills a field left at
its default, and only with a value that is not a default itself.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any, TypeVar

from ckptmap.cli.options._spec import REQUIRED, field_default
from ckptmap.errors import UsageError

T = TypeVar("T")

_LINKS = "__ckptmap_links__"


def _field_names(cls: Any) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def _check_dataclass(obj: Any, role: str) -> None:
    if not dataclasses.is_dataclass(obj):
        raise TypeError(f"{role} must be a dataclass, not {type(obj).__qualname__}")


def _as_enum(tp: Any, value: Any) -> Any:
    """A string flag for an Enum field becomes the member of that name (any case)."""
    args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    tp = args[0] if len(args) == 1 else tp
    if not (isinstance(tp, type) and issubclass(tp, Enum) and isinstance(value, str)):
        return value
    member = tp.__members__.get(value.upper())
    if member is None:
        choices = ", ".join(name.lower() for name in tp.__members__)
        raise UsageError(f"'{value}' is not a {tp.__name__} (expected one of {choices})")
    return member


def update(config: T, flags: object) -> T:
    """Fill the fields of ``config`` that are at their default from same-named flags.

    Monolith's ``gflags_utils.update``: a field is replaced by the flag of the
    same name only when the field still holds its default and the flag's value
    differs from that default. A value set in code therefore wins over the
    flag, and a flag holding the field's default changes nothing. A string
    flag for an Enum field names the member (any case).

    Args:
        config: a dataclass instance (frozen ones too; it is not modified).
        flags: a dataclass instance (e.g. resolved options) or a mapping of
            flag name to value. Fields without a flag are left alone.

    Returns:
        ``config`` itself when nothing changes, else an updated copy.

    Raises:
        UsageError: a string flag names no member of its field's Enum.

    Example:
        >>> from ckptmap.cli.options import RemapOptions
        >>> opts = RemapOptions(old="a", new_graph="g", out="o", shards=4)
        >>> update(opts, {"shards": 2, "force": True}).shards   # set in code: kept
        4
    """
    _check_dataclass(config, "update()'s config")
    if isinstance(flags, Mapping):
        flag_values = dict(flags)
    else:
        _check_dataclass(flags, "update()'s flags")
        flag_values = {f.name: getattr(flags, f.name) for f in dataclasses.fields(flags)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        default = field_default(field)
        if not field.init or field.name not in flag_values or default is REQUIRED:
            continue
        from_flag = _as_enum(hints[field.name], flag_values[field.name])
        if getattr(config, field.name) == default and from_flag != default:
            changes[field.name] = from_flag
    return dataclasses.replace(config, **changes) if changes else config  # type: ignore[type-var]


def link_options(
    linked: Iterable[str] = (),
    linked_map: Mapping[str, str] | None = None,
    *,
    options: type | None = None,
) -> Callable[[type[T]], type[T]]:
    """Link fields of a dataclass to options, possibly of another name.

    Monolith's ``LinkDataclassToFlags``: :func:`apply_links` fills a linked
    field from its option when the field holds its default and the option
    does not hold *its* default. Links are inherited: a subclass (decorated
    or not) has its bases' links, and its own win.

    Args:
        linked: fields linked to the option of the same name.
        linked_map: field name to option name; ``linked`` entries win.
        options: the options dataclass whose fields are the options; when
            given, every option name is checked now.

    Raises:
        TypeError: the decorated class is not a dataclass, a linked field does
            not exist, or ``options`` has no such option (mistakes in code).

    Example:
        >>> from dataclasses import dataclass
        >>> from ckptmap.cli.options import RemapOptions
        >>> @link_options(linked_map={"num_shards": "shards"}, options=RemapOptions)
        ... @dataclass(frozen=True)
        ... class WriterSettings:
        ...     num_shards: int = 1
        >>> opts = RemapOptions(old="a", new_graph="g", out="o", shards=3)
        >>> apply_links(WriterSettings(), opts).num_shards
        3
    """
    links = dict(linked_map or {})
    links.update((name, name) for name in linked)

    def decorate(cls: type[T]) -> type[T]:
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"link_options() decorates dataclasses, not {cls!r}")
        fields = {field.name for field in dataclasses.fields(cls)}
        for name, option in links.items():
            if name not in fields:
                raise TypeError(
                    f"{cls.__qualname__} has no field '{name}' to link to option '{option}'"
                )
            if options is not None and option not in _field_names(options):
                raise TypeError(
                    f"{cls.__qualname__}.{name} is linked to option '{option}', "
                    f"which {options.__qualname__} does not define"
                )
        setattr(cls, _LINKS, MappingProxyType(links))
        return cls

    return decorate


def linked_options(cls: type) -> dict[str, str]:
    """The links of a class and its bases (field name to option name); a subclass's win."""
    links: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        links.update(klass.__dict__.get(_LINKS, {}))
    return links


def apply_links(obj: T, flags: object) -> T:
    """Fill the linked fields of ``obj`` from the options in ``flags``.

    What Monolith's patched ``__init__`` did at construction, made explicit: for
    each linked field (see :func:`link_options`), if ``obj`` holds the field's
    default and the option's value in ``flags`` differs from the option's own
    default, the field takes the option's value.

    Args:
        obj: a dataclass instance whose class (or a base) has links.
        flags: an options dataclass instance, e.g. ``resolve_options(...).options``.

    Returns:
        ``obj`` itself when nothing changes, else an updated copy.

    Raises:
        TypeError: ``flags`` has no field for a linked option (names both).
    """
    _check_dataclass(obj, "apply_links()'s object")
    _check_dataclass(flags, "apply_links()'s flags")
    own = {field.name: field for field in dataclasses.fields(obj)}  # type: ignore[arg-type]
    flag_fields = {field.name: field for field in dataclasses.fields(flags)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for name, option in linked_options(type(obj)).items():
        if option not in flag_fields:
            raise TypeError(
                f"{type(obj).__qualname__}.{name} is linked to option '{option}', "
                f"which {type(flags).__qualname__} does not define"
            )
        value = getattr(flags, option)
        at_default = getattr(obj, name) == field_default(own[name])
        if at_default and value != field_default(flag_fields[option]):
            changes[name] = value
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]
