"""The fast reader of TensorFlow's BundleHeaderProto layout (ckptmap/formats/bundle_header.py).

Whenever it accepts bytes, its fields must be what protobuf decodes from them:
checked on every header TensorFlow wrote into the fixtures, and on every
one-byte change, insertion and cut of them.
"""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from helpers import FIXTURES, table_entries

from ckptmap.formats.bundle_header import plain_header_fields
from ckptmap.proto import ckptmap_tf_pb2

INDEXES = sorted(FIXTURES.glob("*/*.index"))


def _as_protobuf(data: bytes) -> tuple[int, int, int] | None:
    """protobuf's fields of ``data`` when the fast reader could hold them, else ``None``."""
    try:
        proto = ckptmap_tf_pb2.BundleHeaderProto.FromString(data)
    except DecodeError:
        return None
    version = proto.version
    if version.min_consumer or version.bad_consumers:
        return None
    return proto.num_shards, proto.endianness, version.producer


def _headers() -> list[bytes]:
    headers = [bytes(table_entries(index)[0][1]) for index in INDEXES]
    assert headers
    return headers


def test_every_header_tensorflow_wrote_is_read_fast_and_alike() -> None:
    for header in _headers():
        assert plain_header_fields(header) is not None, header.hex()
        assert plain_header_fields(header) == _as_protobuf(header)


def test_a_big_endian_header_is_read() -> None:
    assert plain_header_fields(bytes.fromhex("0803 1001 1a020801")) == (3, 1, 1)


@pytest.mark.parametrize("header", sorted(set(_headers())))
def test_every_small_change_is_read_as_protobuf_reads_it_or_left_to_it(header: bytes) -> None:
    mutants = [header[:at] for at in range(len(header))]
    for at in range(len(header) + 1):
        for byte in range(256):
            mutants.append(header[:at] + bytes([byte]) + header[at + 1 :])
            mutants.append(header[:at] + bytes([byte]) + header[at:])
    accepted = 0
    for mutant in mutants:
        fields = plain_header_fields(mutant)
        if fields is not None:
            accepted += 1
            assert fields == _as_protobuf(mutant), mutant.hex()
    assert accepted > 100
