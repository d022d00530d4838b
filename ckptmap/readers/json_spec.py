"""Read a model described by hand: the JSON model spec.

When no graph of the new model is at hand, its variables can be listed in a JSON
file (the format is documented in ``docs/model-spec.md``)::

    {"variables": [
      {"name": "global_step", "dtype": "int64", "shape": []},
      {"name": "tower/dense/kernel", "dtype": "float32", "shape": [8, 4]},
      {"name": "emb", "dtype": "float32", "shape": [10, 4],
       "partitions": {"axis": 0, "count": 3}},
      {"name": "wide/w", "dtype": "float64", "shape": [6, 8],
       "partitions": {"slices": ["6 8 0,6:0,3", "6 8 0,6:3,5"]}}
    ]}

Each entry is one checkpoint key. A partitioned entry also yields the graph
variables ``<name>/part_<i>``, one per slice, the way ``tf.compat.v1`` names the
parts of a partitioned variable.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import accumulate
from pathlib import Path
from typing import Any

from ckptmap.dtypes import DType, dtype_from_name
from ckptmap.errors import CkptmapError, GraphError, MissingInputError, UnsupportedInputError
from ckptmap.formats.object_graph import OBJECT_GRAPH_KEY
from ckptmap.readers._limits import check_shape
from ckptmap.spec import (
    GraphVariable,
    ModelSpec,
    TensorSpec,
    make_graph_variable,
    make_tensor_spec,
)
from ckptmap.split import PartitionError, SliceSpec, SliceSpecError, check_tiling
from ckptmap.storage.input_files import open_input

SPEC_VERSION = 1
GLOBAL_STEP = "global_step"
_TOP_FIELDS = frozenset({"version", "variables"})
_ENTRY_FIELDS = frozenset({"name", "dtype", "shape", "partitions", "trainable"})
_FIX = "see docs/model-spec.md for the format"
# Bounds checked before the text is parsed: a spec nests 5 levels deep (object,
# 'variables', entry, 'partitions', 'slices'), and json.loads recurses per level.
MAX_DEPTH = 20
MAX_BYTES = 64 * 2**20
MAX_PARTITIONS = 2**16  # slices of one entry
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET_BYTE = bytes(sorted(set(range(256)) - set(b"[]{}")))  # to delete
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"\\')))  # also keeps quotes, backslashes
_SURROGATE = re.compile("[\ud800-\udfff]")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def read_json_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """Read a JSON model spec file.

    Args:
        path: the ``.json`` file.

    Returns:
        The model: one key per entry, and its graph variables (``<name>/part_<i>``
        for partitioned entries).

    Raises:
        MissingInputError: if the file does not exist.
        GraphError: if it is not valid JSON (with line and column) or not a valid spec.

    Example:
        >>> spec = read_json_spec("new_model.json")  # doctest: +SKIP
        >>> spec.keys["emb"].slices[0].format()  # doctest: +SKIP
        '10 4 0,4:0,4'
    """
    path = Path(path)
    try:
        with os.fdopen(open_input(path, None), "rb") as handle:  # no FIFO or device
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_BYTES:
                raise _too_big(str(path), size)
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise MissingInputError(path, "no such JSON model spec") from None
    except OSError as err:
        raise GraphError(f"{path}: cannot read the JSON model spec ({err.strerror})") from err
    if len(raw) > MAX_BYTES:  # the file grew while being read
        raise _too_big(str(path), len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GraphError(f"{path}: not UTF-8 text at byte {err.start} ({_FIX})") from None
    return parse_json_spec(text, str(path))


def parse_json_spec(text: str, where: str = "<json>") -> ModelSpec:
    """Parse the text of a JSON model spec; ``where`` names it in messages.

    Raises:
        GraphError: if it is not valid JSON (with line and column), larger than
            :data:`MAX_BYTES`, nested deeper than :data:`MAX_DEPTH`, or not a valid spec.
        UnsupportedInputError: for a tensor of rank above 64 or a partition
            into more than :data:`MAX_PARTITIONS` slices.
    """
    if len(text) > MAX_BYTES:
        raise _too_big(where, len(text))
    _check_depth(text, where)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise GraphError(f"{where}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise GraphError(f"{where}: not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise GraphError(f"{where}: the top level must be an object with 'variables' ({_FIX})")
    _check_fields(doc, _TOP_FIELDS, where)
    version = doc.get("version", SPEC_VERSION)
    if type(version) is not int or version != SPEC_VERSION:
        raise GraphError(f"{where}: unsupported spec version {version!r} (this ckptmap reads 1)")
    entries = doc.get("variables")
    if not isinstance(entries, list):
        raise GraphError(f"{where}: 'variables' must be a list of objects ({_FIX})")
    keys: list[TensorSpec] = []
    seen: set[str] = set()
    trainable: dict[str, bool] = {}
    plain = _PlainEntries()
    for index, entry in enumerate(entries):
        parsed = plain.read(entry)
        if parsed is None:  # anything else, or an error: the full reader says what
            parsed = _read_entry(entry, f"{where}: variables[{index}]")
        spec, flag = parsed
        if spec.key in seen:
            raise GraphError(f"{where}: variables[{index}]: name {spec.key!r} is given twice")
        seen.add(spec.key)
        keys.append(spec)
        if flag is not None:
            trainable[spec.key] = flag
    return model_spec_from_keys(keys, where, trainable=trainable)


def _too_big(where: str, size: int) -> GraphError:
    return GraphError(
        f"{where}: the JSON model spec is {size} bytes, more than the {MAX_BYTES} "
        f"ckptmap reads ({_FIX})"
    )


def _check_depth(text: str, where: str) -> None:
    """Refuse brackets nested deeper than :data:`MAX_DEPTH`, before parsing anything.

    Strings are cut out first (brackets in names do not count); the rest is only
    the brackets, whose running depth is summed in C by ``accumulate``.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    brackets = _brackets_outside_strings(text)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise GraphError(
            f"{where}: brackets are nested more than {MAX_DEPTH} levels deep; a model spec "
            f"needs 5 ({_FIX})"
        )


def _brackets_outside_strings(text: str) -> bytes:
    """The brackets of ``text`` outside its JSON strings, in order, as ASCII bytes.

    The same as the brackets left by ``_STRING.sub("", text)``. Without a
    backslash no string holds a quote, so the strings are what lies between the
    1st and 2nd quote, the 3rd and 4th, ...; everything but quotes and brackets
    is deleted first (one ``bytes.translate``: a UTF-8 byte of another
    character is never one of them), so the split on quotes is over a short
    text. With a backslash the regular expression decides.
    """
    data = text.encode("utf-8", "surrogatepass").translate(None, _NOT_STRUCTURE)
    if b"\\" in data:
        data = _STRING.sub("", text).encode("utf-8", "surrogatepass")
        return data.translate(None, _NOT_BRACKET_BYTE)
    pieces = data.split(b'"')
    outside = pieces[0::2]
    if len(pieces) % 2 == 0:  # an odd number of quotes: the last one opens no string
        outside.append(pieces[-1])
    return b"".join(outside)


def model_spec_from_keys(
    keys: Iterable[TensorSpec], source: str, *, trainable: dict[str, bool] | None = None
) -> ModelSpec:
    """A model whose variables are named after its keys, as a TF1 Saver would save them.

    A whole key ``k`` is the variable ``k``; a sliced key gets the variables
    ``k/part_<i>``, numbered in the order of their slices' start offsets.
    ``_CHECKPOINTABLE_OBJECT_GRAPH`` stays a key but is no variable. A variable
    is trainable unless it is ``global_step`` or ``trainable`` says otherwise.
    """
    # Slices in offset order, as in every ModelSpec ckptmap builds.
    key_list = [
        replace(spec, slices=tuple(sorted(spec.slices, key=lambda s: s.starts)))
        if len(spec.slices) > 1
        else spec
        for spec in keys
    ]
    trainable = trainable or {}
    variables: list[GraphVariable] = []
    for spec in key_list:
        if spec.key == OBJECT_GRAPH_KEY:
            continue
        is_step = spec.key == GLOBAL_STEP
        flag = trainable.get(spec.key, not is_step)
        if not spec.slices:
            variables.append(
                make_graph_variable(spec.key, spec.key, spec.dtype, spec.shape, None, flag, is_step)
            )
            continue
        variables.extend(
            GraphVariable(f"{spec.key}/part_{i}", spec.key, spec.dtype, s.shape, s, flag, is_step)
            for i, s in enumerate(spec.slices)
        )
    return ModelSpec.from_parts(key_list, variables, source=source)


def _check_fields(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed))
        raise GraphError(f"{where}: unknown field {unknown[0]!r} (expected: {expected})")


_PLAIN_FIELDS = frozenset({"name", "dtype", "shape", "trainable"})


class _PlainEntries:
    """A fast reader of the common entry (valid, unpartitioned), with the checks of _read_entry.

    :meth:`read` returns ``None`` for anything it does not accept (a partition,
    an unusual spelling, any error), which the full reader then handles, so the
    result and every message are the full reader's. Dtype names and shapes
    already checked are remembered: a model has few of each.
    """

    def __init__(self) -> None:
        self._dtypes: dict[str, DType] = {}
        self._shapes: dict[tuple[int, ...], tuple[int, ...]] = {}

    def read(self, entry: object) -> tuple[TensorSpec, bool | None] | None:
        if type(entry) is not dict or not entry.keys() <= _PLAIN_FIELDS:
            return None
        name = entry.get("name")
        value = entry.get("shape")
        flag = entry.get("trainable")
        if type(name) is not str or not name or type(value) is not list:
            return None
        if not name.isascii() and _SURROGATE.search(name):
            return None
        if flag is not None and type(flag) is not bool:
            return None
        dtype_name = entry.get("dtype")
        if type(dtype_name) is not str:
            return None
        dtype = self._dtypes.get(dtype_name) or self._new_dtype(dtype_name)
        if dtype is None or not all(type(d) is int for d in value):
            return None  # a bool is no dimension (True == 1 as a dict key)
        shape = tuple(value)
        known = self._shapes.get(shape)  # () is a known shape too: compared with None
        if known is None and (known := self._new_shape(shape)) is None:
            return None
        return make_tensor_spec(name, dtype, known), flag

    def _new_dtype(self, name: str) -> DType | None:
        """A dtype name not seen yet: checked, and remembered if valid."""
        try:
            dtype = self._dtypes[name] = dtype_from_name(name)
        except CkptmapError:
            return None
        return dtype

    def _new_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """A shape not seen yet: checked, and remembered if valid."""
        try:
            check_shape(shape, "")  # also refuses negative dimensions
        except CkptmapError:
            return None
        self._shapes[shape] = shape
        return shape


def _read_entry(entry: object, where: str) -> tuple[TensorSpec, bool | None]:
    if not isinstance(entry, dict):
        raise GraphError(f"{where}: must be an object with name, dtype and shape ({_FIX})")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise GraphError(f"{where}: 'name' must be a non-empty string ({_FIX})")
    where = f"{where} ({name!r})"
    if _SURROGATE.search(name):  # JSON can spell them (\ud800); no key can hold one
        raise GraphError(
            f"{where}: 'name' holds a lone surrogate escape, which is not a character "
            f"(a key is UTF-8 text; {_FIX})"
        )
    _check_fields(entry, _ENTRY_FIELDS, where)
    dtype = _read_dtype(entry.get("dtype"), where)
    shape = _read_shape(entry.get("shape"), where)
    flag = entry.get("trainable")
    if flag is not None and not isinstance(flag, bool):
        raise GraphError(f"{where}: 'trainable' must be true or false")
    slices: tuple[SliceSpec, ...] = ()
    if entry.get("partitions") is not None:
        slices = _read_partitions(entry["partitions"], shape, where)
    return TensorSpec(name, dtype, shape, slices), flag


def _read_dtype(value: object, where: str) -> DType:
    if not isinstance(value, str):
        raise GraphError(f"{where}: 'dtype' must be a string such as \"float32\" ({_FIX})")
    try:
        return dtype_from_name(value)
    except CkptmapError as err:
        raise GraphError(f"{where}: {err}") from err


def _read_shape(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_count(d) for d in value):
        shown = json.dumps(value)
        raise GraphError(
            f"{where}: 'shape' must be a list of non-negative integers, such as [8, 4] "
            f"or [] for a scalar, not {shown if len(shown) <= 80 else shown[:77] + '...'}"
        )
    check_shape(value, f"{where}: 'shape'")
    return tuple(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_partitions(value: object, shape: tuple[int, ...], where: str) -> tuple[SliceSpec, ...]:
    where = f"{where}: partitions"
    if not isinstance(value, dict):
        raise GraphError(
            f'{where}: must be an object: {{"axis": A, "count": N}}, '
            f'{{"axis": A, "sizes": [...]}} or {{"slices": [...]}} ({_FIX})'
        )
    if "slices" in value:
        _check_fields(value, frozenset({"slices"}), where)
        return _read_slices(value["slices"], shape, where)
    _check_fields(value, frozenset({"axis", "count", "sizes"}), where)
    if not shape:
        raise GraphError(f"{where}: a scalar cannot be partitioned")
    axis = value.get("axis", 0)
    if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < len(shape):
        raise GraphError(f"{where}: 'axis' must be an integer from 0 to {len(shape) - 1}")
    dim = shape[axis]
    if ("count" in value) == ("sizes" in value):
        raise GraphError(f"{where}: give exactly one of 'count' and 'sizes'")
    if "count" in value:
        count = value["count"]
        if not _is_count(count) or not 1 <= count <= dim:
            raise GraphError(
                f"{where}: 'count' must be an integer from 1 to {dim} (the size of axis {axis})"
            )
        _check_parts(count, where)
        sizes = [dim // count + (1 if i < dim % count else 0) for i in range(count)]
    else:
        sizes = value["sizes"]
        if not isinstance(sizes, list) or not sizes or not all(_is_count(s) and s for s in sizes):
            raise GraphError(f"{where}: 'sizes' must be a list of positive integers")
        _check_parts(len(sizes), where)
        if sum(sizes) != dim:
            raise GraphError(
                f"{where}: 'sizes' add up to {sum(sizes)}, not {dim} (the size of axis {axis})"
            )
    return _slices_along(shape, axis, sizes)


def _check_parts(count: int, where: str) -> None:
    if count > MAX_PARTITIONS:
        raise UnsupportedInputError(
            f"{where}: {count} slices are more than the {MAX_PARTITIONS} ckptmap reads "
            "for one tensor"
        )


def _slices_along(shape: tuple[int, ...], axis: int, sizes: Sequence[int]) -> tuple[SliceSpec, ...]:
    """Cut ``shape`` along ``axis`` into ``sizes``, spelled as the Python Saver does (§6.1)."""
    slices = []
    offset = 0
    for size in sizes:
        extents = tuple((offset, size) if i == axis else (0, d) for i, d in enumerate(shape))
        slices.append(SliceSpec(shape, extents))
        offset += size
    return tuple(slices)


def _read_slices(value: object, shape: tuple[int, ...], where: str) -> tuple[SliceSpec, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise GraphError(f"{where}: 'slices' must be a non-empty list of slice-spec strings")
    _check_parts(len(value), where)
    slices = []
    for text in value:
        try:
            spec = SliceSpec.parse(text)
        except CkptmapError as err:
            raise GraphError(f"{where}: {err}") from err
        if spec.full_shape != shape:
            raise GraphError(
                f"{where}: slice {text!r} is of a tensor of shape {list(spec.full_shape)}, "
                f"not {list(shape)}"
            )
        slices.append(spec)
    try:
        check_tiling(slices, shape)
    except (PartitionError, SliceSpecError) as err:
        raise GraphError(f"{where}: {err}") from None
    return tuple(slices)
