"""The ``checkpoint`` state file: which checkpoint of a folder is the latest (§1.2).

It is a protobuf text-format ``CheckpointState``: ``model_checkpoint_path``
(the latest prefix) and ``all_model_checkpoint_paths`` (the prefixes kept,
oldest first), optionally with timestamps. :func:`decode_state` and
:func:`encode_state` are its one codec; finding and resolving the prefixes is
the readers' business (:mod:`ckptmap.readers.state`), replacing the file the
writers' (:mod:`ckptmap.writers.state`).

The file TensorFlow writes has one ``field: value`` per line, each string
quoted without escapes; :func:`decode_state` reads that form itself, with
the values protobuf's text parser would give, and leaves any other text
(comments, escapes, separators, a field given twice, ...) to that parser.
So reading a model folder's state file never imports protobuf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_STATE_FILE_BYTES",
    "STATE_FILE_NAME",
    "StateFields",
    "StateFileError",
    "decode_state",
    "encode_state",
]

STATE_FILE_NAME = "checkpoint"
MAX_STATE_FILE_BYTES = 16 * 1024 * 1024  # a real one is a few hundred bytes

_PATH_FIELDS = ("model_checkpoint_path", "all_model_checkpoint_paths")
_TIME_FIELDS = ("all_model_checkpoint_timestamps", "last_preserved_timestamp")
_SINGULAR = frozenset({"model_checkpoint_path", "last_preserved_timestamp"})
# one line of TensorFlow's text form (compiled by re on first use: only a folder's listing needs it)
_LINE = (
    r'[ \t\r]*(?:([a-z_]+)[ \t]*:[ \t]*(?:"([^"\\\n]*)"|(-?[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?)))?'
    r"[ \t\r]*"
)


class StateFileError(Exception):
    """The bytes are not a ``CheckpointState`` text (the message names no file)."""


@dataclass(frozen=True, slots=True)
class StateFields:
    """The fields of a ``CheckpointState``, as protobuf would hold them."""

    model_checkpoint_path: str = ""
    all_model_checkpoint_paths: tuple[str, ...] = ()
    all_model_checkpoint_timestamps: tuple[float, ...] = ()
    last_preserved_timestamp: float = 0.0


def decode_state(data: bytes) -> StateFields:
    """Parse the bytes of a state file.

    Raises:
        StateFileError: if they are not UTF-8, or not a text ``CheckpointState``.

    Example:
        >>> decode_state(b'model_checkpoint_path: "model.ckpt-100"').model_checkpoint_path
        'model.ckpt-100'
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StateFileError("it is not UTF-8 text") from None
    fields = _plain_fields(text)
    return _parsed(text) if fields is None else fields


def encode_state(state: StateFields) -> bytes:
    """The text of a state file, as TensorFlow writes it.

    Raises:
        ValueError: if a path is not valid UTF-8 (a lone surrogate).
    """
    from google.protobuf import text_format

    from ckptmap.proto import ckptmap_tf_pb2

    message = ckptmap_tf_pb2.CheckpointState(
        model_checkpoint_path=state.model_checkpoint_path,
        all_model_checkpoint_paths=state.all_model_checkpoint_paths,
        all_model_checkpoint_timestamps=state.all_model_checkpoint_timestamps,
        last_preserved_timestamp=state.last_preserved_timestamp,
    )
    text: str = text_format.MessageToString(message)
    return text.encode("utf-8")


def _plain_fields(text: str) -> StateFields | None:
    """The fields of a state file in TensorFlow's one-field-per-line form, else ``None``."""
    values: dict[str, list[str | float]] = {name: [] for name in (*_PATH_FIELDS, *_TIME_FIELDS)}
    line_form = re.compile(_LINE)
    for line in text.split("\n"):
        match = line_form.fullmatch(line)
        if match is None:
            return None
        name, string, number = match.groups()
        if name is None:
            continue  # a blank line
        if name not in values or (string is None) != (name in _TIME_FIELDS):
            return None  # unknown, or a value of the wrong kind: protobuf says what is wrong
        if name in _SINGULAR and values[name]:
            return None  # given twice
        values[name].append(string if string is not None else float(number))
    latest = values["model_checkpoint_path"]
    preserved = values["last_preserved_timestamp"]
    return StateFields(
        str(latest[0]) if latest else "",
        tuple(str(p) for p in values["all_model_checkpoint_paths"]),
        tuple(float(t) for t in values["all_model_checkpoint_timestamps"]),
        float(preserved[0]) if preserved else 0.0,
    )


def _parsed(text: str) -> StateFields:
    """The fields as protobuf's text parser reads ``text``."""
    from google.protobuf import text_format

    from ckptmap.proto import ckptmap_tf_pb2

    message = ckptmap_tf_pb2.CheckpointState()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise StateFileError(str(err)) from None
    return StateFields(
        message.model_checkpoint_path,
        tuple(message.all_model_checkpoint_paths),
        tuple(message.all_model_checkpoint_timestamps),
        message.last_preserved_timestamp,
    )
