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

from ckptmap.formats.bundle_entry import plain_entry_fields, plain_shape_dims, plain_sliced_entry
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


def _slices_as_protobuf(data: bytes) -> tuple[int, bytes, tuple[tuple[tuple[int, int], ...], ...]]:
    proto = ckptmap_tf_pb2.BundleEntryProto.FromString(data)
    slices = tuple(
        tuple((e.start, e.length if e.HasField("length") else -1) for e in s.extent)
        for s in proto.slices
    )
    return proto.dtype, proto.shape.SerializeToString(), slices


def _dims_as_protobuf(shape: bytes) -> tuple[int, ...] | None:
    proto = ckptmap_tf_pb2.TensorShapeProto.FromString(shape)
    return None if proto.unknown_rank else tuple(d.size for d in proto.dim)


def test_partitioned_entries_and_shapes_tensorflow_wrote_are_read_fast_and_alike() -> None:
    sliced = shapes = 0
    for data in tf_entries():
        fields = plain_entry_fields(data)
        if fields is None:
            assert plain_sliced_entry(data) == _slices_as_protobuf(data), data.hex()
            sliced += 1
            shape = plain_sliced_entry(data)[1]  # type: ignore[index]
        else:
            assert plain_sliced_entry(data) is None  # no slices: not a partitioned entry
            shape = fields[1]
        assert plain_shape_dims(shape) == _dims_as_protobuf(shape), shape.hex()
        shapes += 1
    assert sliced >= 5
    assert shapes > 100


@pytest.mark.parametrize("seed", range(4))
def test_mutated_partitioned_entries_are_read_as_protobuf_reads_them_or_left_to_it(
    seed: int,
) -> None:
    rng = random.Random(seed)
    values = [v for v in tf_entries() if plain_entry_fields(v) is None]
    accepted = 0
    for _ in range(400):
        data = rng.choice(values)
        for mutant in _mutations(data, rng):
            got = plain_sliced_entry(mutant)
            # the shape bytes are the caller's to decode: when plain_shape_dims
            # leaves them to protobuf, so is the whole entry
            if got is not None and plain_shape_dims(got[1]) is not None:
                accepted += 1
                assert got == _slices_as_protobuf(mutant), mutant.hex()
                assert plain_shape_dims(got[1]) == _dims_as_protobuf(got[1]), got[1].hex()
    assert accepted > 50


@pytest.mark.parametrize("seed", range(4))
def test_mutated_shapes_are_read_as_protobuf_reads_them_or_left_to_it(seed: int) -> None:
    rng = random.Random(seed)
    shapes = sorted({f[1] for v in tf_entries() if (f := plain_entry_fields(v)) is not None})
    accepted = 0
    for _ in range(500):
        shape = rng.choice(shapes)
        for mutant in _mutations(shape, rng) if shape else [b"\x12", b"\x12\x01\x08"]:
            dims = plain_shape_dims(mutant)
            if dims is None:
                continue
            accepted += 1
            assert dims == _dims_as_protobuf(mutant), mutant.hex()
    assert accepted > 100


def test_what_is_left_to_protobuf_in_shapes_and_slices() -> None:
    assert plain_shape_dims(bytes.fromhex("1202 0804")) == (4,)
    assert plain_shape_dims(bytes.fromhex("1200")) == (0,)
    assert plain_shape_dims(bytes.fromhex("1801")) is None  # unknown_rank
    assert plain_shape_dims(bytes.fromhex("1205 0804 1201 61")) is None  # a dimension's name
    assert plain_shape_dims(bytes.fromhex("120b 08ffffffffffffffffff01")) is None  # -1
    assert plain_shape_dims(bytes.fromhex("1201 08")) is None  # a cut varint
    entry = bytes.fromhex("0801 1204 12020804 3a04 0a021002 3a06 0a0408021002")
    assert plain_sliced_entry(entry) == (1, bytes.fromhex("12020804"), (((0, 2),), ((2, 2),)))
    assert plain_sliced_entry(entry + bytes.fromhex("2010")) is None  # a data field too
    assert plain_sliced_entry(bytes.fromhex("0801 1204 12020804")) is None  # no slices
    assert plain_sliced_entry(bytes.fromhex("0801 1204 12020804 3a04 0a021002 0801")) is None
    assert plain_sliced_entry(bytes.fromhex("0801 1204 12020804 3a04 0a041002")) is None  # cut
    # an extent without a length is the whole dimension (-1), with a start it still counts
    assert plain_sliced_entry(bytes.fromhex("0801 1200 3a04 0a020803"))[2] == (((3, -1),),)  # type: ignore[index]


def test_offsets_and_sizes_of_every_varint_length_read_as_protobuf_reads_them() -> None:
    rng = random.Random(7)
    for bits in range(1, 64):
        for _ in range(200):
            proto = ckptmap_tf_pb2.BundleEntryProto(
                dtype=1,
                shard_id=rng.randrange(1 << min(bits, 31)),
                offset=rng.randrange(1 << bits),
                size=rng.randrange(1 << bits),
                crc32c=rng.randrange(1 << 32),
            )
            proto.shape.dim.add(size=rng.randrange(1 << bits))
            data = proto.SerializeToString()
            assert as_protobuf(data) == plain_entry_fields(data), data.hex()
