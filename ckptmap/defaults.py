"""Library defaults that light modules share without importing the engines behind them.

The CLI's option dataclasses (:mod:`ckptmap.cli.options.commands`) give each
option its library default; importing it from here keeps ``ckptmap inspect``
and ``ckptmap convert`` from loading the alias engine just to read a number.
This module imports nothing.
"""

from __future__ import annotations

__all__ = ["CANDIDATE_CUTOFF"]

CANDIDATE_CUTOFF = 0.5  # name similarity below which an old key is no candidate (ckptmap.alias)
