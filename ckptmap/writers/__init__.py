"""Writers: TensorFlow V2 checkpoints (tensor bundles) and the ``checkpoint`` state file."""

from __future__ import annotations

from ckptmap.writers.state import write_state_file
from ckptmap.writers.tf_bundle import BundleWriter, CommitResult, data_path, slice_entry_key

__all__ = ["BundleWriter", "CommitResult", "data_path", "slice_entry_key", "write_state_file"]
