"""How TensorFlow lays out a ``BundleHeaderProto`` on the wire (tf-checkpoint-format.md §4.1).

TensorFlow writes ``num_shards`` (field 1, a varint), ``endianness`` (2,
left out when little-endian, the default) and ``version`` (3, a
``VersionDef`` holding only ``producer``, field 1): ``08 01 1a 02 08 01``
for a one-shard checkpoint. :func:`plain_header_fields` reads exactly that
layout, with one-byte values, without importing protobuf; it answers
``None`` for anything else, which the caller then parses with protobuf.
For the bytes it accepts, the values are the ones protobuf would give, with
``min_consumer`` 0 and no ``bad_consumers``.
"""

from __future__ import annotations

import re

__all__ = ["PlainHeader", "plain_header_fields"]

# num_shards, endianness, version.producer
PlainHeader = tuple[int, int, int]

_LAYOUT = re.compile(rb"\x08([\x00-\x7f])(?:\x10([\x00-\x7f]))?\x1a\x02\x08([\x00-\x7f])")


def plain_header_fields(data: bytes) -> PlainHeader | None:
    """The fields of a header in TensorFlow's layout, or ``None`` for any other bytes.

    Example:
        >>> plain_header_fields(bytes.fromhex("08011a020801"))
        (1, 0, 1)
        >>> plain_header_fields(bytes.fromhex("0801100208011a020801")) is None  # repeated
        True
    """
    match = _LAYOUT.fullmatch(data)
    if match is None:
        return None
    shards, endianness, producer = match.groups()
    return shards[0], 0 if endianness is None else endianness[0], producer[0]
