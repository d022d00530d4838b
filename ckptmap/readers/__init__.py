"""Readers: everything that opens input files.

``source`` is the one way in (:func:`~ckptmap.readers.source.open_source` and
the :class:`~ckptmap.readers.source.Source` protocol every checkpoint reader
satisfies). ``tf_bundle`` reads V2 checkpoints (with ``_table``, the index's
table format, and ``_bundle_index``, ``_bundle_shards``, ``_bundle_values``
for entries, data files and values), ``zarr_store`` reads stores written by
``ckptmap convert``, ``state`` finds checkpoints (the ``checkpoint`` state
file), ``assets`` lists the non-tensor files a Monolith checkpoint carries.
``graph`` and ``json_spec`` read the new model.

Names are imported from their submodules on first use: ``from ckptmap.readers
import open_checkpoint`` loads ``tf_bundle`` and what it needs, not the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckptmap._lazy import export

_EXPORTS = {
    "Asset": "assets",
    "list_assets": "assets",
    "Source": "source",
    "open_source": "source",
    "CheckpointRef": "state",
    "CheckpointState": "state",
    "find_checkpoint": "state",
    "locate_checkpoint": "state",
    "read_state_file": "state",
    "Checkpoint": "tf_bundle",
    "TensorEntry": "tf_bundle",
    "open_checkpoint": "tf_bundle",
}

if TYPE_CHECKING:
    from ckptmap.readers.assets import Asset, list_assets
    from ckptmap.readers.source import Source, open_source
    from ckptmap.readers.state import (
        CheckpointRef,
        CheckpointState,
        find_checkpoint,
        locate_checkpoint,
        read_state_file,
    )
    from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry, open_checkpoint


def __getattr__(name: str) -> Any:  # the submodules are imported on first use
    return export(__name__, _EXPORTS, name)


__all__ = [
    "Asset",
    "Checkpoint",
    "CheckpointRef",
    "CheckpointState",
    "Source",
    "TensorEntry",
    "find_checkpoint",
    "list_assets",
    "locate_checkpoint",
    "open_checkpoint",
    "open_source",
    "read_state_file",
]
