"""The ``checkpoint`` state file: which checkpoint of a folder is the latest (§1.2).

It is a protobuf text-format ``CheckpointState``: ``model_checkpoint_path``
(the latest prefix) and ``all_model_checkpoint_paths`` (the prefixes kept,
oldest first), optionally with timestamps. :func:`decode_state` and
:func:`encode_state` are its one codec; finding and resolving the prefixes is
the readers' business (:mod:`ckptmap.readers.state`), replacing the file the
writers' (:mod:`ckptmap.writers.state`).

protobuf's ``text_format`` is imported on first use: listing a checkpoint
named by its prefix never reads a state file.
"""

from __future__ import annotations

from ckptmap.proto import ckptmap_tf_pb2

__all__ = [
    "MAX_STATE_FILE_BYTES",
    "STATE_FILE_NAME",
    "StateFileError",
    "decode_state",
    "encode_state",
]

STATE_FILE_NAME = "checkpoint"
MAX_STATE_FILE_BYTES = 16 * 1024 * 1024  # a real one is a few hundred bytes


class StateFileError(Exception):
    """The bytes are not a ``CheckpointState`` text (the message names no file)."""


def decode_state(data: bytes) -> ckptmap_tf_pb2.CheckpointState:
    """Parse the bytes of a state file.

    Raises:
        StateFileError: if they are not UTF-8, or not a text ``CheckpointState``.

    Example:
        >>> decode_state(b'model_checkpoint_path: "model.ckpt-100"').model_checkpoint_path
        'model.ckpt-100'
    """
    from google.protobuf import text_format

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StateFileError("it is not UTF-8 text") from None
    message = ckptmap_tf_pb2.CheckpointState()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise StateFileError(str(err)) from None
    return message


def encode_state(state: ckptmap_tf_pb2.CheckpointState) -> bytes:
    """The text of a state file, as TensorFlow writes it."""
    from google.protobuf import text_format

    text: str = text_format.MessageToString(state)
    return text.encode("utf-8")
