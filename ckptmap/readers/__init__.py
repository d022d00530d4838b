"""Readers: everything that opens input files.

``tf_bundle`` reads V2 checkpoints (index and data shards), ``state`` finds
them (the ``checkpoint`` state file), ``assets`` lists the non-tensor files a
Monolith checkpoint carries. ``_table`` is the index's table format.
"""

from __future__ import annotations

from ckptmap.readers.assets import Asset, list_assets
from ckptmap.readers.state import CheckpointState, locate_checkpoint, read_state_file
from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry, open_checkpoint

__all__ = [
    "Asset",
    "Checkpoint",
    "CheckpointState",
    "TensorEntry",
    "list_assets",
    "locate_checkpoint",
    "open_checkpoint",
    "read_state_file",
]
