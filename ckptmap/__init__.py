"""ckptmap: migrate TensorFlow checkpoints between model versions, without TensorFlow."""

from __future__ import annotations

__version__ = "0.1.0"

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

__all__ = [
    "CkptmapError",
    "CorruptCheckpointError",
    "InputError",
    "MissingInputError",
    "OutputError",
    "OutputExistsError",
    "UnresolvedError",
    "UnsupportedInputError",
    "UsageError",
    "__version__",
]
