"""The ``ckptmap`` command line: option parsing, one library call, rendering.

Each command lives in its own module; this one holds the group and the
registration. Errors are turned into one line and an exit code in
:mod:`ckptmap.cli._output`, nowhere else.
"""

from __future__ import annotations

import logging

import click

from ckptmap import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckptmap")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def main(verbose: int) -> None:
    """Migrate TensorFlow checkpoints between model versions, without TensorFlow.

    Read a checkpoint's files directly, work out which old tensor feeds each
    variable of a new model, re-split partitioned tensors, and write a
    checkpoint that plain TensorFlow restores.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )


def _register() -> None:
    from ckptmap.cli.config_cmd import config_command
    from ckptmap.cli.inspect_cmd import inspect_command
    from ckptmap.cli.remap_cmd import alias_command, check_command, remap_command

    main.add_command(inspect_command)
    main.add_command(check_command)
    main.add_command(remap_command)
    main.add_command(alias_command)
    main.add_command(config_command)


_register()
