"""The files a graph is saved in: reading one, and finding the graph saved with a checkpoint.

Nothing here parses a graph, so nothing here imports protobuf: ``inspect``
looks for the graph beside a checkpoint on every listing, reads the op types
it declares up front (a few kilobytes, :mod:`ckptmap.formats.graph_head`), and
has it parsed (:func:`ckptmap.readers.graph.restored_into`) only when it
restores a lookup table.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from ckptmap.errors import GraphError, MissingInputError
from ckptmap.formats.graph_head import declared_ops
from ckptmap.storage import is_url
from ckptmap.storage.input_files import open_input

__all__ = ["SAVED_MODEL_PB", "graph_beside", "graph_with_tables", "read_bytes"]

SAVED_MODEL_PB = "saved_model.pb"
_TABLE_IMPORT = b"LookupTableImport"  # the op name a table's restore uses (V1 and V2 ops)
_SCAN_WINDOW = 1 << 20  # bytes of a graph mapped and searched at a time (of mmap's granularity)


def read_bytes(path: Path, folder: Path | None = None) -> bytes:
    """The file's bytes; ``folder``: the named folder it was found in (links stay inside).

    Raises:
        MissingInputError: if there is no such file.
        GraphError: if it cannot be read (or is no regular file).
    """
    try:
        with os.fdopen(open_input(path, folder), "rb") as handle:  # no FIFO or device
            return handle.read()
    except FileNotFoundError:
        raise MissingInputError(path, "no such file") from None
    except OSError as err:
        raise GraphError(f"{path}: cannot read the file ({err.strerror})") from err


def graph_beside(checkpoint: str) -> Path | None:
    """The graph saved with a local checkpoint prefix, if there is one.

    A SavedModel's ``variables/variables`` has the SavedModel's ``saved_model.pb``;
    a TF1 Saver writes ``<prefix>.meta`` next to each checkpoint.
    """
    if is_url(checkpoint):
        return None
    prefix = Path(checkpoint)
    saved_model = prefix.parent.parent / SAVED_MODEL_PB
    if prefix.parts[-2:] == ("variables", "variables") and saved_model.is_file():
        return saved_model
    meta = Path(f"{prefix}.meta")
    return meta if meta.is_file() else None


def graph_with_tables(checkpoint: str) -> tuple[Path, bytes] | None:
    """The graph beside a local checkpoint and its bytes, if it restores a lookup table.

    The graph is opened like the checkpoint's files: a regular file, links
    followed only inside its folder. ``None`` without a graph, if it cannot be
    read (its problems are for ``check`` to report, not for a listing), or if
    it holds no lookup table's import op: a listing of a model without tables
    does not pay for parsing it (another kind of saveable alone is then not
    marked).
    """
    graph = graph_beside(checkpoint)
    if graph is None:
        return None
    try:
        if not _holds(graph, _TABLE_IMPORT, saved_model=graph.name == SAVED_MODEL_PB):
            return None
        return graph, read_bytes(graph, graph.parent)
    except (MissingInputError, GraphError):
        return None


def _holds(path: Path, needle: bytes, *, saved_model: bool = False) -> bool:
    """Whether the graph file uses an op type named with ``needle``, or else holds the bytes.

    A graph as TensorFlow writes it declares its op types up front
    (:func:`ckptmap.formats.graph_head.declared_ops`): only they are searched,
    so a graph of any size costs a few kilobytes. Any other file is searched
    whole, a window at a time. Each window is a read-only map of the file,
    so nothing is copied and little stays mapped at once; consecutive
    windows overlap, so a match across two is found.
    """
    keep = len(needle) - 1
    try:
        with os.fdopen(open_input(path, path.parent), "rb", buffering=0) as handle:
            fd = handle.fileno()
            size = os.fstat(fd).st_size
            ops = declared_ops(
                lambda at, count: os.pread(fd, count, at), size, saved_model=saved_model
            )
            if ops is not None:
                return any(needle in op_list for op_list in ops)
            for start in range(0, size - keep, _SCAN_WINDOW):
                length = min(_SCAN_WINDOW + keep, size - start)
                with mmap.mmap(fd, length, offset=start, access=mmap.ACCESS_READ) as window:
                    if window.find(needle) >= 0:
                        return True
    except ValueError:  # shortened since its size was read: what is left is searched next time
        return False
    except FileNotFoundError:
        raise MissingInputError(path, "no such file") from None
    except OSError as err:
        raise GraphError(f"{path}: cannot read the file ({err.strerror})") from err
    return False
