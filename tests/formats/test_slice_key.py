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


def test_every_slice_key_tf_wrote_decodes_to_its_tensor_and_extents() -> None:
    from ckptmap.formats.slice_key import decode_slice_key, key_label

    for prefix in (FIXTURES / "dtype_zoo" / "zoo", FIXTURES / "ffm_v1_ps2" / "model.ckpt-100"):
        stored = [k for k, _ in table_entries(prefix.with_name(prefix.name + ".index"))]
        with open_checkpoint(prefix) as ckpt:
            for key in ckpt:
                for spec in ckpt.entry(key).slices:
                    raw = encode_slice_key(key.encode(), spec.extents)
                    assert raw in stored
                    assert decode_slice_key(raw) == (key.encode(), list(spec.extents))
                    label = key_label(raw)
                    assert label.startswith(f"{key}[")
                    assert "\x00" not in label


def test_decoding_round_trips_big_negative_and_escaped() -> None:
    from ckptmap.formats.slice_key import decode_slice_key, key_label

    extents = [(0, -1), (2**40, 3), (-(2**63), 2**63 - 1), (63, 64), (-64, -65)]
    raw = encode_slice_key(b"a\x00b\xff", extents)
    assert decode_slice_key(raw) == (b"a\x00b\xff", extents)
    assert decode_slice_key(raw[:-1]) is None  # cut inside a number
    assert decode_slice_key(raw + b"\x80") is None  # bytes after the last extent
    assert key_label(raw[:-1]) == f"slice key {raw[:-1].hex()}"
    assert key_label("w") == "w"
