"""The options of each command, one documented dataclass per command.

Each field with a ``:param`` line becomes an option everywhere: the
``--field-name`` flag, the ``field_name`` config key and the
``CKPTMAP_FIELD_NAME`` environment variable. ``inspect``, ``convert`` and
``diff`` have a module each; the planning commands share ``plan``
(:class:`PlanOptions`: ``alias`` takes just those, ``check`` adds how to
report, and ``RemapOptions`` extends ``CheckOptions``: ``remap`` plans exactly
as ``check`` does, then writes).

A command loads only its own module (building a dataclass is most of the cost
of importing one); :data:`COMMAND_OPTIONS`, the registry of all of them that a
config file is checked against, loads each on first use, as do the names
exported here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ckptmap._lazy import export

_EXPORTS = {
    "InspectOptions": "inspect",
    "AliasOptions": "plan",
    "AssetMode": "plan",
    "CheckOptions": "plan",
    "PlanOptions": "plan",
    "RemapOptions": "plan",
    "ConvertOptions": "convert",
    "StoreFormat": "convert",
    "byte_size": "convert",
    "DiffOptions": "diff",
}
# command (its config table) -> its options dataclass, in the order `config show` lists them
_COMMANDS = {
    "inspect": "InspectOptions",
    "check": "CheckOptions",
    "remap": "RemapOptions",
    "alias": "AliasOptions",
    "convert": "ConvertOptions",
    "diff": "DiffOptions",
}

if TYPE_CHECKING:
    from ckptmap.cli.options.commands.convert import ConvertOptions, StoreFormat, byte_size
    from ckptmap.cli.options.commands.diff import DiffOptions
    from ckptmap.cli.options.commands.inspect import InspectOptions
    from ckptmap.cli.options.commands.plan import (
        AliasOptions,
        AssetMode,
        CheckOptions,
        PlanOptions,
        RemapOptions,
    )


class _CommandOptions(Mapping[str, type]):
    """A read-only mapping of command name to options dataclass, each imported on first use."""

    def __getitem__(self, command: str) -> type:
        name = _COMMANDS[command]
        cls: type = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_COMMANDS)

    def __len__(self) -> int:
        return len(_COMMANDS)

    def __repr__(self) -> str:
        return f"COMMAND_OPTIONS({', '.join(_COMMANDS)})"


COMMAND_OPTIONS: Mapping[str, type] = _CommandOptions()
"""The options dataclass of each command; their keys are the config tables."""


def __getattr__(name: str) -> Any:  # the command modules are imported on first use
    return export(__name__, _EXPORTS, name)


__all__ = [
    "COMMAND_OPTIONS",
    "AliasOptions",
    "AssetMode",
    "CheckOptions",
    "ConvertOptions",
    "DiffOptions",
    "InspectOptions",
    "PlanOptions",
    "RemapOptions",
    "StoreFormat",
    "byte_size",
]
