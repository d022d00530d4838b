"""The op types a graph file declares before its graph (tf-checkpoint-format.md §9.6).

TensorFlow writes a ``MetaGraphDef`` field by field in number order, so its
``meta_info_def`` (field 1) comes first, and that holds ``stripped_op_list``
(field 2): an ``OpDef`` of every op type the graph uses, its functions'
included. A ``SavedModel`` is a ``saved_model_schema_version`` (field 1) and
its ``MetaGraphDef``\\ s (field 2). :func:`declared_ops` walks only those
fields' framing, so whether a graph uses an op type is known from a few
kilobytes, however large the graph. For any other layout it answers
``None``, and the caller looks through the whole file instead.
"""

from __future__ import annotations

from collections.abc import Callable

from ckptmap.formats.table import MAX_VARINT64_BYTES, read_varint

__all__ = ["declared_ops"]

_LEN, _VARINT, _FIXED64, _FIXED32 = 2, 0, 1, 5  # wire types
_MAX_INFO_BYTES = 64 << 20  # a real MetaInfoDef takes kilobytes: a larger one is not read whole
_META_INFO_DEF = 1 << 3 | _LEN  # MetaGraphDef.meta_info_def
_STRIPPED_OP_LIST = 2  # MetaInfoDef.stripped_op_list
_SCHEMA_VERSION = 1 << 3 | _VARINT  # SavedModel.saved_model_schema_version
_META_GRAPHS = 2 << 3 | _LEN  # SavedModel.meta_graphs

Read = Callable[[int, int], bytes]  # (offset, count) -> at most count bytes from offset


def declared_ops(read: Read, size: int, *, saved_model: bool) -> list[bytes] | None:
    """The raw ``stripped_op_list`` of each meta graph in a graph file of ``size`` bytes.

    Args:
        read: reads the file: ``read(offset, count)``.
        size: the file's size.
        saved_model: the file is a ``saved_model.pb``, not a ``.meta``.

    Returns:
        One op list per meta graph, or ``None`` if any meta graph has none, or
        the file is not laid out as TensorFlow writes it.
    """
    if not saved_model:
        found = _op_list(read, 0, size)
        return None if found is None else [found]
    lists = []
    pos = 0
    while pos < size:
        head = read(pos, 2 * MAX_VARINT64_BYTES)
        tag = _varint(head, 0)
        value = None if tag is None else _varint(head, tag[1])
        if tag is None or value is None:
            return None
        if tag[0] == _SCHEMA_VERSION:
            pos += value[1]
            continue
        end = pos + value[1] + value[0]
        if tag[0] != _META_GRAPHS or end > size:
            return None
        found = _op_list(read, pos + value[1], end)
        if found is None:
            return None
        lists.append(found)
        pos = end
    return lists or None


def _op_list(read: Read, pos: int, end: int) -> bytes | None:
    """The op list of the ``MetaGraphDef`` at ``pos`` (up to ``end``), if its info comes first."""
    head = read(pos, 2 * MAX_VARINT64_BYTES)
    tag = _varint(head, 0)
    length = None if tag is None else _varint(head, tag[1])
    if tag is None or tag[0] != _META_INFO_DEF or length is None:
        return None
    start = pos + length[1]
    if start + length[0] > end or length[0] > _MAX_INFO_BYTES:
        return None
    info = read(start, length[0])
    return _ops_in(info) if len(info) == length[0] else None


def _ops_in(info: bytes) -> bytes | None:
    """``stripped_op_list`` of a ``MetaInfoDef``'s bytes; ``None`` without one or if malformed."""
    pos, end = 0, len(info)
    ops: bytes | None = None
    while pos < end:
        tag = _varint(info, pos)
        if tag is None:
            return None
        number, wire = tag[0] >> 3, tag[0] & 7
        pos = tag[1]
        if wire == _VARINT:
            skipped = _varint(info, pos)
            if skipped is None:
                return None
            pos = skipped[1]
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        elif wire == _LEN:
            length = _varint(info, pos)
            if length is None or length[1] + length[0] > end:
                return None
            if number == _STRIPPED_OP_LIST:  # a message given twice is merged: keep both
                ops = (ops or b"") + info[length[1] : length[1] + length[0]]
            pos = length[1] + length[0]
        else:
            return None
    return ops if pos == end else None


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """The varint at ``pos`` and the offset after it; ``None`` if cut or over-long."""
    return read_varint(data, pos, len(data))
