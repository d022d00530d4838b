"""ckptmap: migrate TensorFlow checkpoints between model versions, without TensorFlow.

The library surface, one call per command:

- :func:`inspect_checkpoint` — what a checkpoint holds (``ckptmap inspect``);
- :func:`check` — would the new model restore from it (``ckptmap check``);
- :func:`plan_remap` / :func:`execute` / :func:`remap` — write the migrated
  checkpoint (``ckptmap remap``);
- :func:`plan_aliases` — which old key feeds each new key, and why;
- :func:`open_checkpoint`, :func:`read_model_spec`, :class:`BundleWriter` — the
  readers and the writer underneath.

TensorFlow is never imported; the in-graph adapter lives in ``ckptmap.tf``.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so `import ckptmap` (and the CLI) stays fast.
_LAZY = {
    "AliasPlan": "ckptmap.alias",
    "BundleWriter": "ckptmap.writers.tf_bundle",
    "CheckReport": "ckptmap.check",
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
    "RemapPlan": "ckptmap.remap",
    "RemapResult": "ckptmap.remap",
    "Rule": "ckptmap.naming",
    "SliceSpec": "ckptmap.split",
    "TensorEntry": "ckptmap.readers.tf_bundle",
    "TensorSpec": "ckptmap.spec",
    "UnresolvedError": "ckptmap.errors",
    "UnsupportedInputError": "ckptmap.errors",
    "UsageError": "ckptmap.errors",
    "check": "ckptmap.check",
    "execute": "ckptmap.remap",
    "inspect_checkpoint": "ckptmap.inspect",
    "open_checkpoint": "ckptmap.readers.tf_bundle",
    "parse_rule": "ckptmap.naming",
    "plan_aliases": "ckptmap.alias",
    "plan_remap": "ckptmap.remap",
    "read_model_spec": "ckptmap.readers.graph",
    "remap": "ckptmap.remap",
}

if TYPE_CHECKING:
    from ckptmap.alias import AliasPlan, plan_aliases
    from ckptmap.check import CheckReport, check
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
    from ckptmap.naming import Rule, parse_rule
    from ckptmap.readers.graph import read_model_spec
    from ckptmap.readers.tf_bundle import Checkpoint, TensorEntry, open_checkpoint
    from ckptmap.remap import RemapPlan, RemapResult, execute, plan_remap, remap
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


class _Package(types.ModuleType):
    """The functions ``check`` and ``remap`` share their names with their modules.

    Importing ``ckptmap.check`` makes the import system set the package attribute
    ``check`` to the module; here that attribute stays the function, so
    ``ckptmap.check(...)`` works whatever was imported before. The modules stay
    reachable as ``sys.modules["ckptmap.check"]`` and through ``from ... import``.
    """

    @property
    def check(self) -> Any:
        return __getattr__("check")

    @check.setter
    def check(self, value: Any) -> None:  # the import system storing the module
        pass

    @property
    def remap(self) -> Any:
        return __getattr__("remap")

    @remap.setter
    def remap(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package


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
    "RemapPlan",
    "RemapResult",
    "Rule",
    "SliceSpec",
    "TensorEntry",
    "TensorSpec",
    "UnresolvedError",
    "UnsupportedInputError",
    "UsageError",
    "__version__",
    "check",
    "execute",
    "inspect_checkpoint",
    "open_checkpoint",
    "parse_rule",
    "plan_aliases",
    "plan_remap",
    "read_model_spec",
    "remap",
]
