"""The ``ckptmap`` command line: option parsing, one library call, rendering.

Each command lives in its own module, imported only when that command runs
(or help lists it), so ``ckptmap inspect`` does not pay for the alias engine.
Errors are turned into one line and an exit code in
:mod:`ckptmap.cli._output`, nowhere else.
"""

from __future__ import annotations

import gc
import importlib

import click

from ckptmap import __version__

# command name -> (module, attribute)
_COMMANDS = {
    "inspect": ("ckptmap.cli.inspect_cmd", "inspect_command"),
    "check": ("ckptmap.cli.remap_cmd", "check_command"),
    "remap": ("ckptmap.cli.remap_cmd", "remap_command"),
    "alias": ("ckptmap.cli.remap_cmd", "alias_command"),
    "config": ("ckptmap.cli.config_cmd", "config_command"),
    "convert": ("ckptmap.cli.convert_cmd", "convert_command"),
    "diff": ("ckptmap.cli.diff_cmd", "diff_command"),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckptmap")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def main(verbose: int) -> None:
    """Migrate TensorFlow checkpoints between model versions, without TensorFlow.

    Read a checkpoint's files directly, work out which old tensor feeds each
    variable of a new model, re-split partitioned tensors, and write a
    checkpoint that plain TensorFlow restores.
    """
    # A command makes a few objects per key (100,000s for a big model) and keeps
    # many of them until it ends. Reference counting frees nearly all its garbage
    # (the scale bench's 100,000-key check leaves under 100 objects in cycles, a
    # 1 GB remap or convert under 200), while the cycle collector would scan every
    # live object as it goes: 7-9% of a 100,000-key check even with thresholds
    # raised to (100000, 50, 100). So it is off while a command runs; a caller in
    # the same process gets its setting back.
    if gc.isenabled():
        gc.disable()
        click.get_current_context().call_on_close(gc.enable)
    if verbose:
        import logging  # the core logs with logging.getLogger; only -v configures it

        level = logging.WARNING - 10 * verbose
        logging.basicConfig(
            level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
        )
