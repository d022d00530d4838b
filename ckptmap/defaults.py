"""Library defaults that light modules share without importing the engines behind them.

The CLI's option dataclasses (:mod:`ckptmap.cli.options.commands.plan`) and
:func:`ckptmap.convert.convert` give each option its library default;
importing it from here keeps ``ckptmap inspect`` and ``ckptmap convert`` from
loading the alias engine or the zarr writer just to read a number.
This module imports nothing.
"""

from __future__ import annotations

__all__ = ["CANDIDATE_CUTOFF", "ZARR_BLOCK_BYTES", "ZARR_CHUNK_BYTES"]

CANDIDATE_CUTOFF = 0.5  # name similarity below which an old key is no candidate (ckptmap.alias)

# ``convert --to zarr3`` (ckptmap.writers.zarr3, whose DEFAULT_CHUNK_BYTES / DEFAULT_BLOCK_BYTES
# these are): a zarr chunk holds at most this many bytes (unless one element of the first
# axis is larger), and one write moves at most this many.
ZARR_CHUNK_BYTES = 8 * 1024 * 1024
ZARR_BLOCK_BYTES = 16 * 1024 * 1024
