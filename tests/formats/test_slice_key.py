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


def _tensor_byte_by_byte(raw: bytes) -> bytes | None:
    """The tensor key of a slice key, undoing OrderedCode's escapes one byte at a time."""
    if not raw or raw[0] != 0:
        return None
    name, pos = bytearray(), 1
    while pos + 1 < len(raw):
        pair = raw[pos : pos + 2]
        if pair == b"\x00\x01":
            return bytes(name)
        if pair in (b"\x00\xff", b"\xff\x00"):
            name.append(pair[0])
            pos += 2
        elif raw[pos] in (0x00, 0xFF):
            return None
        else:
            name.append(raw[pos])
            pos += 1
    return None


def test_tensor_of_a_slice_key_equals_decoding_byte_by_byte() -> None:
    """The unescaped-name shortcut gives what a byte-by-byte decoding gives, on any bytes."""
    import random

    from ckptmap.formats.slice_key import slice_key_tensor

    rng = random.Random(15)
    alphabet = b"\x00\x01\x02\xfe\xffab/_"
    for _ in range(20_000):
        name = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
        raw = bytearray(encode_slice_key(name, [(0, 4), (rng.randrange(-3, 300), -1)]))
        for _ in range(rng.randrange(0, 3)):  # mutations: any byte anywhere
            raw[rng.randrange(len(raw))] = rng.choice(alphabet)
        if rng.random() < 0.2:
            raw = raw[: rng.randrange(len(raw) + 1)]
        assert slice_key_tensor(bytes(raw)) == _tensor_byte_by_byte(bytes(raw)), bytes(raw)
