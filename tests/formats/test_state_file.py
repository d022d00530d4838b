"""The ``checkpoint`` state file codec (ckptmap/formats/state_file.py)."""

from __future__ import annotations

import pytest
from helpers import FIXTURES

from ckptmap.formats.state_file import StateFileError, decode_state, encode_state


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
