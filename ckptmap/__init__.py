"""ckptmap: migrate TensorFlow checkpoints between model versions, without TensorFlow.

The library surface, one call per command:

- :func:`inspect_checkpoint` — what a checkpoint holds (``ckptmap inspect``);
- :func:`check` — would the new model restore from it (``ckptmap check``);
- :func:`plan_remap` / :func:`execute` / :func:`remap` — write the migrated
  checkpoint (``ckptmap remap``);
- :func:`plan_aliases` — which old key feeds each new key, and why;
- :func:`open_source` (any checkpoint source), :func:`open_checkpoint` (a
  TensorFlow checkpoint), :func:`read_model_spec`, :class:`BundleWriter` — the
  readers and the writer underneath.

TensorFlow is never imported; the in-graph adapter lives in ``ckptmap.tf``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so `import ckptmap` (and the CLI) stays fast.
_LAZY = {
    "AliasPlan": "ckptmap.alias",
    "BundleWriter": "ckptmap.writers.tf_bundle",
    "CheckReport": "ckptmap.migration",
    "Checkpoint": "ckptmap.readers.tf_bundle",
    "CkptmapError": "ckptmap.errors",
    "CorruptCheckpointError": "ckptmap.errors",
    "GraphVariable": "ckptmap.spec",
    "InputError": "ckptmap.errors",
    "InspectReport": "ckptmap.inspect",
    "MissingInputError": "ckptmap.errors",
    "ModelSpec": "ckptmap.spec",
    "OutputError": "ckptmap.errors",
    "OutputExistsError": "ckptmap.errors",
    "PlanInputs": "ckptmap.migration",
    "RemapPlan": "ckptmap.migration",
    "RemapResult": "ckptmap.migration",
    "Rule": "ckptmap.naming",
    "SliceSpec": "ckptmap.split",
    "TensorEntry": "ckptmap.readers.tf_bundle",
    "TensorSpec": "ckptmap.spec",
    "UnresolvedError": "ckptmap.errors",
    "UnsupportedInputError": "ckptmap.errors",
    "UsageError": "ckptmap.errors",
    "Verdict": "ckptmap.migration",
    "check": "ckptmap.migration",
    "execute": "ckptmap.migration",
    "inspect_checkpoint": "ckptmap.inspect",
    "open_checkpoint": "ckptmap.readers.tf_bundle",
    "parse_rule": "ckptmap.naming",
    "plan_aliases": "ckptmap.alias",
    "open_source": "ckptmap.readers.source",
    "plan_remap": "ckptmap.migration",
    "read_model_spec": "ckptmap.readers.graph",
    "remap": "ckptmap.migration",
}

if TYPE_CHECKING:
    from ckptmap.alias import AliasPlan, plan_aliases
    from ckptmap.errors import (
        CkptmapError,
        CorruptCheckpointError,
        InputError,
        MissingInputError,
        OutputError,
        OutputExistsError,
        UnresolvedError,
        UnsupportedInputError,
        UsageError,
    )
    from ckptmap.inspect import InspectReport, inspect_checkpoint
    from ckptmap.migration import (
        CheckReport,
        PlanInputs,
        RemapPlan,
        RemapResult,
        Verdict,
        check,
        execute,
        plan_remap,
        remap,
    )
    from ckptmap.naming import Rule, parse_rule
    from ckptmap.readers.graph import read_model_spec
    from ckptmap.readers.source import open_source
    from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry, open_checkpoint
    from ckptmap.spec import GraphVariable, ModelSpec, TensorSpec
    from ckptmap.split import SliceSpec
    from ckptmap.writers.tf_bundle import BundleWriter


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ckptmap' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AliasPlan",
    "BundleWriter",
    "CheckReport",
    "Checkpoint",
    "CkptmapError",
    "CorruptCheckpointError",
    "GraphVariable",
    "InputError",
    "InspectReport",
    "MissingInputError",
    "ModelSpec",
    "OutputError",
    "OutputExistsError",
    "PlanInputs",
    "RemapPlan",
    "RemapResult",
    "Rule",
    "SliceSpec",
    "TensorEntry",
    "TensorSpec",
    "UnresolvedError",
    "UnsupportedInputError",
    "UsageError",
    "Verdict",
    "__version__",
    "check",
    "execute",
    "inspect_checkpoint",
    "open_checkpoint",
    "open_source",
    "parse_rule",
    "plan_aliases",
    "plan_remap",
    "read_model_spec",
    "remap",
]
