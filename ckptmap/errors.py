"""The exception hierarchy of ckptmap.

Every error a user can cause is a :class:`CkptmapError` whose ``str()`` is one
complete sentence: where, what is wrong, and what to do. The CLI maps the
classes below to exit codes (see ``design.md``); anything else is a bug.
"""

from __future__ import annotations

import os
from typing import Any


class CkptmapError(Exception):
    """Base class of every error ckptmap raises on purpose."""


class InputError(CkptmapError):
    """An input is unreadable, corrupt or unsupported (exit code 3)."""


class CorruptCheckpointError(InputError):
    """A checkpoint file is damaged: bad magic, CRC mismatch, out-of-range offsets.

    Attributes:
        path: the file in which the problem was found.
        detail: what is wrong, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the command needs does not exist."""

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        InputError.__init__(self, f"{self.path}: {detail}")

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class TensorNotFoundError(InputError, KeyError):
    """A tensor asked for by key is not in the checkpoint.

    Attributes:
        path: the checkpoint's index file.
        key: the key that was asked for.
        detail: what is wrong, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], key: str, detail: str) -> None:
        self.path = os.fspath(path)
        self.key = key
        self.detail = detail
        InputError.__init__(self, f"{self.path}: {detail}")

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class UnsupportedInputError(InputError):
    """The input is valid but uses something ckptmap cannot handle (an unknown dtype)."""


class GraphError(InputError):
    """A model description (GraphDef, MetaGraphDef, SavedModel, JSON spec) is unusable."""


class OutputError(CkptmapError):
    """An output cannot be written (exit code 4)."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and overwriting it was not allowed."""

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        OutputError.__init__(self, f"{self.path}: {detail}")

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class UsageError(CkptmapError):
    """The request makes no sense: bad option values or combinations (exit code 2)."""


class AliasError(UsageError):
    """An alias map or rule given by the user is invalid (not JSON, bad regex, unknown key)."""


class UnresolvedError(CkptmapError):
    """Some variables of the new model have no source (exit code 1).

    Attributes:
        report: the plan or report that lists them, for rendering.
    """

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)
