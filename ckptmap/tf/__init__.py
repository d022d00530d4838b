"""The optional in-graph adapter: ckptmap inside a running TensorFlow job.

``pip install ckptmap[tf]`` adds TensorFlow. This package imports it when it is
itself imported, so ``import ckptmap`` and the ``ckptmap`` command never load
TensorFlow; without TensorFlow, ``import ckptmap.tf`` fails with one line that
says what to install.

It ports three pieces of Monolith (see ``docs/tf-adapter.md``):

- :class:`CustomRestoreListener` (and :class:`CustomRestoreHook`,
  :class:`CustomRestoreSaver`): restore a new graph's variables from an old
  checkpoint through an alias map, or re-initialise the dense (NN) variables,
  reading the checkpoint with ckptmap's own reader.
- :func:`get_meta`: per-graph metadata kept in a graph collection.
- :func:`add_batch_norm_into_update_ops`: put batch-norm moving-average updates
  into ``UPDATE_OPS``.
"""

from __future__ import annotations

try:
    from ckptmap.tf.graph_meta import GRAPH_META_COLLECTION, get_meta
    from ckptmap.tf.graph_utils import add_batch_norm_into_update_ops
    from ckptmap.tf.restore_listener import (
        CLEAR_NN_FLAG_FILE,
        CUSTOM_RESTORE_OP,
        CustomRestoreHook,
        CustomRestoreListener,
        CustomRestoreSaver,
        RestoreAction,
        RestoreRequest,
        describe_graph,
        exporting,
        is_exporting,
        read_variable_values,
        restore,
    )
except ModuleNotFoundError as _err:
    if _err.name != "tensorflow":  # TensorFlow is there; something else is missing
        raise
    raise ModuleNotFoundError(
        "ckptmap.tf needs TensorFlow: pip install 'ckptmap[tf]' "
        "(from a checkout: pip install '.[tf]')",
        name="tensorflow",
    ) from None

__all__ = [
    "CLEAR_NN_FLAG_FILE",
    "CUSTOM_RESTORE_OP",
    "GRAPH_META_COLLECTION",
    "CustomRestoreHook",
    "CustomRestoreListener",
    "CustomRestoreSaver",
    "RestoreAction",
    "RestoreRequest",
    "add_batch_norm_into_update_ops",
    "describe_graph",
    "exporting",
    "get_meta",
    "is_exporting",
    "read_variable_values",
    "restore",
]
