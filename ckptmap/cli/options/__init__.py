"""Command options as documented dataclasses, layered from defaults, files, environment and CLI.

A command's options are one dataclass whose docstring documents each field
with a ``:param name: help`` line (Monolith's ``gflags_utils`` convention).
From it come the click options (:func:`click_options`), the config keys and
the ``CKPTMAP_<FIELD>`` environment variables, and :func:`resolve_options`
layers them: defaults < config file < environment < command line, recording
where each value came from. :func:`update`, :func:`link_options` and
:func:`apply_links` carry over Monolith's rules for filling a dataclass from
flags. See ``docs/options.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckptmap._lazy import export
from ckptmap.cli.options import commands
from ckptmap.cli.options._click import click_options, config_option, option_help, resolve_click
from ckptmap.cli.options._config import ConfigFile, find_pyproject, key_line, read_config
from ckptmap.cli.options._help import extract_help_info
from ckptmap.cli.options._link import apply_links, link_options, linked_options, update
from ckptmap.cli.options._resolve import CLI, DEFAULT, UNSET, Resolved, resolve_options
from ckptmap.cli.options._spec import ENV_PREFIX, REQUIRED, OptionSpec, option_specs, to_json
from ckptmap.cli.options.commands import COMMAND_OPTIONS

# the options dataclasses, each command's module imported on first use (see commands/)
_EXPORTS = dict.fromkeys(
    (name for name in commands.__all__ if name not in ("COMMAND_OPTIONS", "byte_size")),
    "commands",
)

if TYPE_CHECKING:
    from ckptmap.cli.options.commands import (
        AliasOptions,
        AssetMode,
        CheckOptions,
        ConvertOptions,
        DiffOptions,
        InspectOptions,
        PlanOptions,
        RemapOptions,
        StoreFormat,
    )


def __getattr__(name: str) -> Any:
    return export(__name__, _EXPORTS, name)


__all__ = [
    "CLI",
    "COMMAND_OPTIONS",
    "DEFAULT",
    "ENV_PREFIX",
    "REQUIRED",
    "UNSET",
    "AliasOptions",
    "AssetMode",
    "CheckOptions",
    "ConfigFile",
    "ConvertOptions",
    "DiffOptions",
    "InspectOptions",
    "OptionSpec",
    "PlanOptions",
    "RemapOptions",
    "Resolved",
    "StoreFormat",
    "apply_links",
    "click_options",
    "config_option",
    "extract_help_info",
    "find_pyproject",
    "key_line",
    "link_options",
    "linked_options",
    "option_help",
    "option_specs",
    "read_config",
    "resolve_click",
    "resolve_options",
    "to_json",
    "update",
]
