"""The ``checkpoint`` state file codec (ckptmap/formats/state_file.py)."""

from __future__ import annotations

import random

import pytest
from helpers import FIXTURES

from ckptmap.formats.state_file import StateFields, StateFileError, decode_state, encode_state


@pytest.mark.parametrize("folder", ["ffm_v1", "tf2_module"])
def test_tf_written_state_files_round_trip(folder: str) -> None:
    raw = (FIXTURES / folder / "checkpoint").read_bytes()
    state = decode_state(raw)
    assert state.model_checkpoint_path
    assert state.model_checkpoint_path == state.all_model_checkpoint_paths[-1]
    assert decode_state(encode_state(state)) == state


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"\xff\xfe", "it is not UTF-8 text", id="not-utf8"),
        pytest.param(b"model_checkpoint_path: 12 {\n", "1:", id="not-a-state"),
        pytest.param(b"no_such_field: 1\n", "no_such_field", id="unknown-field"),
    ],
)
def test_garbage_is_a_state_file_error(raw: bytes, message: str) -> None:
    with pytest.raises(StateFileError, match=message):
        decode_state(raw)


def _as_protobuf(raw: bytes) -> StateFields | None:
    """What protobuf's text parser makes of ``raw`` (``None``: it refuses it)."""
    from google.protobuf import text_format

    from ckptmap.proto import ckptmap_tf_pb2

    message = ckptmap_tf_pb2.CheckpointState()
    try:
        text_format.Parse(raw.decode("utf-8"), message)
    except (text_format.ParseError, UnicodeDecodeError):
        return None
    return StateFields(
        message.model_checkpoint_path,
        tuple(message.all_model_checkpoint_paths),
        tuple(message.all_model_checkpoint_timestamps),
        message.last_preserved_timestamp,
    )


_TEXTS = [
    b'model_checkpoint_path: "model.ckpt-100"\nall_model_checkpoint_paths: "model.ckpt-50"\n'
    b'all_model_checkpoint_paths: "model.ckpt-100"\n',
    b'model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-1"\n'
    b'all_model_checkpoint_paths: "ckpt-2"\nall_model_checkpoint_timestamps: 1733300000.5\n'
    b"all_model_checkpoint_timestamps: 1.7333e+09\nlast_preserved_timestamp: 1733299999.25\n",
    b"",
    b"\n\n",
    b'model_checkpoint_path: "a b\t\xc3\xa9"\r\n',
    b'  model_checkpoint_path :  "x"  \n',
    b'model_checkpoint_path: "x"\nmodel_checkpoint_path: "y"\n',  # singular field twice
    b'model_checkpoint_path: "x" # a comment\n',
    b'model_checkpoint_path: "x\\n"\n',  # an escape
    b"model_checkpoint_path: 'x'\n",
    b'model_checkpoint_path: "x";\n',
    b"model_checkpoint_path: 12\n",
    b'last_preserved_timestamp: "12"\n',
    b"last_preserved_timestamp: -0\n",
    b"last_preserved_timestamp: 1e999\n",
    b"last_preserved_timestamp: 12.\n",
    b"all_model_checkpoint_timestamps: 1\nall_model_checkpoint_timestamps: 2\n",
    b'model_checkpoint_path\n: "x"\n',
    b'model_checkpoint_path: "x" "y"\n',
    b'unknown_field: "x"\n',
]


@pytest.mark.parametrize("raw", _TEXTS)
def test_the_fast_reading_equals_protobufs(raw: bytes) -> None:
    expected = _as_protobuf(raw)
    if expected is None:
        with pytest.raises(StateFileError):
            decode_state(raw)
    else:
        assert decode_state(raw) == expected


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # protobuf on mutated escapes
def test_mutated_state_files_read_as_protobuf_reads_them() -> None:
    rng = random.Random(0)
    alphabet = b' \t\r\n":#\\;.-+e0123456789_abmodel'
    checked = 0
    for _ in range(3000):
        raw = bytearray(rng.choice(_TEXTS[:2]))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(raw) + 1)
            if rng.random() < 0.5 and at < len(raw):
                raw[at] = rng.choice(alphabet)
            else:
                raw[at:at] = bytes([rng.choice(alphabet)])
        expected = _as_protobuf(bytes(raw))
        if expected is None:
            with pytest.raises(StateFileError):
                decode_state(bytes(raw))
        else:
            got = decode_state(bytes(raw))
            assert got == expected or _same_nan(got, expected), bytes(raw)
            checked += 1
    assert checked > 300


def _same_nan(a: StateFields, b: StateFields) -> bool:
    return repr(a) == repr(b)  # nan != nan, but both print as nan
