"""Slice keys (ckptmap/formats/slice_key.py): the bytes TensorFlow writes for every stored slice."""

from __future__ import annotations

from helpers import FIXTURES, table_entries

from ckptmap.formats.slice_key import encode_slice_key, is_slice_key
from ckptmap.readers import open_checkpoint


def test_documented_examples() -> None:
    """tf-checkpoint-format.md §6.4."""
    assert encode_slice_key(b"t_a", [(0, 4), (0, 4)]).hex() == "00745f610001010280848084"
    assert encode_slice_key(b"x\xffy\x00z", [(2, 2)]) == bytes.fromhex(
        "0078ff0079 00ff7a0001010182 82"
    )


def test_every_slice_key_tf_wrote() -> None:
    for prefix in (FIXTURES / "dtype_zoo" / "zoo", FIXTURES / "ffm_v1_ps2" / "model.ckpt-100"):
        stored = {key for key, _ in table_entries(prefix.with_name(prefix.name + ".index"))}
        written = set()
        with open_checkpoint(prefix) as ckpt:
            for key in ckpt:
                for spec in ckpt.entry(key).slices:
                    written.add(encode_slice_key(key.encode(), spec.extents))
        assert written
        assert written == {k for k in stored if is_slice_key(k)}


def test_large_and_negative_numbers() -> None:
    key = encode_slice_key(b"v", [(2**40, -1)])
    assert is_slice_key(key)
    assert key.startswith(b"\x00v\x00\x01\x01\x01")
    assert not is_slice_key(b"v")
    assert not is_slice_key(b"")
