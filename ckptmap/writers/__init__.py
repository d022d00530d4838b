"""Writers: TensorFlow V2 checkpoints (tensor bundles) and the ``checkpoint`` state file.

Names are imported from their submodules on first use: ``from ckptmap.writers.commit
import open_commit`` does not load the bundle writer (or numpy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckptmap._lazy import export

_EXPORTS = {
    "write_state_file": "state",
    "BundleWriter": "tf_bundle",
    "CommitResult": "tf_bundle",
    "data_path": "tf_bundle",
    "slice_entry_key": "tf_bundle",
}

if TYPE_CHECKING:
    from ckptmap.writers.state import write_state_file
    from ckptmap.writers.tf_bundle import BundleWriter, CommitResult, data_path, slice_entry_key


def __getattr__(name: str) -> Any:  # the submodules are imported on first use
    return export(__name__, _EXPORTS, name)


__all__ = ["BundleWriter", "CommitResult", "data_path", "slice_entry_key", "write_state_file"]
