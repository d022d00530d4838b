"""The fast reader of TensorFlow's BundleEntryProto layout (ckptmap/formats/bundle_entry.py).

Whenever it accepts bytes, its fields must be what protobuf decodes from them:
checked on every entry TensorFlow wrote into the fixtures, and on a fixed-seed
set of mutations of them (bytes flipped, inserted, dropped, fields repeated).
"""

from __future__ import annotations

import random

import pytest
from google.protobuf.message import DecodeError
from helpers import FIXTURES, table_entries

from ckptmap.formats.bundle_entry import plain_entry_fields
from ckptmap.proto import ckptmap_tf_pb2

INDEXES = sorted(FIXTURES.glob("*/*.index"))


def tf_entries() -> list[bytes]:
    values = []
    for index in INDEXES:
        values.extend(bytes(value) for key, value in table_entries(index) if key)
    return values


def as_protobuf(data: bytes) -> tuple[int, bytes, int, int, int, int] | None:
    """What protobuf makes of ``data``, in the fast reader's terms (None: it has slices)."""
    proto = ckptmap_tf_pb2.BundleEntryProto.FromString(data)
    if proto.slices:
        return None
    return (
        proto.dtype,
        proto.shape.SerializeToString(),
        proto.shard_id,
        proto.offset,
        proto.size,
        proto.crc32c,
    )


def test_every_entry_tensorflow_wrote_is_read_fast_and_alike() -> None:
    values = tf_entries()
    assert len(values) > 100
    plain = 0
    for data in values:
        fields = plain_entry_fields(data)
        expected = as_protobuf(data)
        if expected is None:  # a partitioned tensor's full entry: left to protobuf
            assert fields is None
            continue
        plain += 1
        assert fields is not None, data.hex()
        shape = ckptmap_tf_pb2.TensorShapeProto.FromString(fields[1]).SerializeToString()
        assert (*fields[:1], shape, *fields[2:]) == expected
    assert plain > 100


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    at = rng.randrange(len(data) + 1)
    return [
        data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :],  # one byte changed
        data[:at] + bytes([rng.randrange(256)]) + data[at:],  # one byte inserted
        data[:at] + data[at + 1 :],  # one byte dropped
        data[:at],  # truncated
        data + data[:at],  # fields repeated
        data + bytes([0x08, rng.randrange(256), 0x01]),  # a dtype after the end
        data[:1] + bytes([0xFF] * rng.randrange(1, 12)) + data[1:],  # a long varint
    ]


@pytest.mark.parametrize("seed", range(4))
def test_mutated_entries_are_read_as_protobuf_reads_them_or_left_to_it(seed: int) -> None:
    rng = random.Random(seed)
    values = tf_entries()
    accepted = 0
    for data in rng.sample(values, 200):
        for mutant in _mutations(data, rng):
            fields = plain_entry_fields(mutant)
            if fields is None:
                continue
            accepted += 1
            try:
                expected = as_protobuf(mutant)
                shape = ckptmap_tf_pb2.TensorShapeProto.FromString(fields[1])
            except DecodeError:
                # protobuf refuses it; the index then parses it with protobuf too, once
                # its (dtype, shape) is new, so only the shape bytes need to decode alike
                with pytest.raises(DecodeError):
                    ckptmap_tf_pb2.BundleEntryProto.FromString(mutant)
                continue
            assert expected is not None, mutant.hex()
            assert (fields[0], shape.SerializeToString(), *fields[2:]) == expected, mutant.hex()
    assert accepted > 100


def test_what_is_left_to_protobuf() -> None:
    entry = bytes.fromhex("0801120412020804 2010 2810 35b96f57d8")
    assert plain_entry_fields(entry) == (1, bytes.fromhex("12020804"), 0, 16, 16, 3629608889)
    assert plain_entry_fields(entry + bytes.fromhex("3a00")) is None  # slices
    assert plain_entry_fields(bytes.fromhex("2010 0801")) is None  # out of order
    assert plain_entry_fields(bytes.fromhex("0801 0802")) is None  # repeated
    assert plain_entry_fields(bytes.fromhex("08ffffffff0f")) is None  # dtype beyond int32
    assert plain_entry_fields(bytes.fromhex("20ffffffffffffffff7f"))[3] == 2**63 - 1  # 9 bytes
    assert plain_entry_fields(bytes.fromhex("20ffffffffffffffffff01")) is None  # 10 bytes
    assert plain_entry_fields(bytes.fromhex("4001")) is None  # an unknown field
    assert plain_entry_fields(bytes.fromhex("1205")) is None  # shape past the end
    assert plain_entry_fields(b"") == (0, b"", 0, 0, 0, 0)  # every field at its default
