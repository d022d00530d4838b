"""The exception hierarchy of ckptmap: every error class it raises on purpose.

Every error a user can cause is a :class:`CkptmapError` whose ``str()`` is one
complete sentence: where, what is wrong, and what to do. Each class belongs to
exactly one of four kinds, and the CLI maps the kind to the documented exit
code (``ckptmap.cli._output.EXIT_CODES``; README, "Exit codes"); anything that
is not a :class:`CkptmapError` is a bug::

    CkptmapError
    ├── UnresolvedError           1  variables of the new model without a source
    ├── UsageError                2  the request makes no sense
    │   ├── AliasError                an alias map or rule is invalid
    │   ├── SliceSpecError            a slice spec (text or extents) is malformed
    │   └── PartitionError            slices do not fit together
    ├── InputError                3  an input is unreadable, corrupt or unsupported
    │   ├── CorruptCheckpointError    (path: detail)
    │   ├── MissingInputError         (path: detail; also a FileNotFoundError)
    │   ├── TensorNotFoundError       (path: detail; also a KeyError)
    │   ├── RangeError                (path: detail) bytes past the end of a file
    │   ├── UnsupportedInputError
    │   └── GraphError
    └── OutputError               4  an output cannot be written
        └── OutputExistsError         (path: detail; also a FileExistsError)

The classes marked *path: detail* share :class:`PathError`: they keep the
place (a file, a folder, a URL) and the problem as attributes and print as
``"<path>: <detail>"``.

Slice specs and partitions come from two places. Given by the caller (a
library argument, an option), a bad one is a usage error:
:class:`SliceSpecError` and :class:`PartitionError` say so as they are. Read
from a file (a checkpoint's index, a store's manifest, a graph, a JSON model
spec), it is a damaged input: the reader catches them and raises
:class:`CorruptCheckpointError` (or :class:`GraphError` for a model
description) naming the file, ``from`` the original error.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "AliasError",
    "CkptmapError",
    "CorruptCheckpointError",
    "GraphError",
    "InputError",
    "MissingInputError",
    "OutputError",
    "OutputExistsError",
    "PartitionError",
    "PathError",
    "RangeError",
    "SliceSpecError",
    "TensorNotFoundError",
    "UnresolvedError",
    "UnsupportedInputError",
    "UsageError",
]


class CkptmapError(Exception):
    """Base class of every error ckptmap raises on purpose."""


class PathError(CkptmapError):
    """An error about one place, printed as ``"<path>: <detail>"``.

    A base shared by the classes below that name a file, a folder or a URL;
    each also derives from its kind (:class:`InputError`, :class:`OutputError`)
    and, where one fits, from the matching builtin (``FileNotFoundError``,
    ``KeyError``, ``FileExistsError``), so ``except FileNotFoundError`` still
    catches a missing input.

    Attributes:
        path: the file, folder or URL in which the problem was found.
        detail: what is wrong (and what to do), without the path.
    """

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        # One argument: builtins such as OSError read two as (errno, strerror).
        super().__init__(f"{self.path}: {detail}")

    def __str__(self) -> str:
        # KeyError would print its argument's repr; every PathError prints the same way.
        return f"{self.path}: {self.detail}"


# -- 1: unresolved ---------------------------------------------------------------------


class UnresolvedError(CkptmapError):
    """Some variables of the new model have no source (exit code 1).

    Attributes:
        report: the plan or report that lists them, for rendering.
    """

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)


# -- 2: usage --------------------------------------------------------------------------


class UsageError(CkptmapError):
    """The request makes no sense: bad option values or combinations (exit code 2)."""


class AliasError(UsageError):
    """An alias map or rule given by the user is invalid (not JSON, bad regex, unknown key)."""


class SliceSpecError(UsageError, ValueError):
    """A slice-spec string or extent list is malformed.

    A usage error as raised; a reader that finds one in a file raises
    :class:`CorruptCheckpointError` or :class:`GraphError` from it.
    """


class PartitionError(UsageError, ValueError):
    """Slices do not fit together: a gap, an overlap, or a request they do not cover.

    A usage error as raised; a reader that finds one in a file raises
    :class:`CorruptCheckpointError` or :class:`GraphError` from it.
    """


# -- 3: input --------------------------------------------------------------------------


class InputError(CkptmapError):
    """An input is unreadable, corrupt or unsupported (exit code 3)."""


class CorruptCheckpointError(PathError, InputError):
    """A checkpoint file is damaged: bad magic, CRC mismatch, out-of-range offsets.

    Attributes:
        path: the file in which the problem was found.
        detail: what is wrong, without the path.
    """


class MissingInputError(PathError, InputError, FileNotFoundError):
    """A file or folder the command needs does not exist."""


class TensorNotFoundError(PathError, InputError, KeyError):
    """A tensor asked for by key is not in the checkpoint.

    Attributes:
        path: the checkpoint's index file.
        key: the key that was asked for.
        detail: what is wrong, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], key: str, detail: str) -> None:
        self.key = key
        super().__init__(path, detail)


class RangeError(PathError, InputError):
    """A byte range lies (partly) past the end of a file.

    Attributes:
        path: the file.
        size: its size when the store told it, else ``None``.
        detail: what is wrong, without the file.
        offset: where the range that failed starts, when known.
    """

    def __init__(
        self, path: str | os.PathLike[str], size: int | None, detail: str, offset: int | None = None
    ) -> None:
        self.size = size
        self.offset = offset
        super().__init__(path, detail)


class UnsupportedInputError(InputError):
    """The input is valid but uses something ckptmap cannot handle (an unknown dtype)."""


class GraphError(InputError):
    """A model description (GraphDef, MetaGraphDef, SavedModel, JSON spec) is unusable."""


# -- 4: output -------------------------------------------------------------------------


class OutputError(CkptmapError):
    """An output cannot be written (exit code 4)."""


class OutputExistsError(PathError, OutputError, FileExistsError):
    """The output exists and overwriting it was not allowed."""
