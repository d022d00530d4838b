"""Rewrite a checkpoint unchanged with ckptmap's reader and BundleWriter (a benchmark subject).

Opens OLD with ``open_checkpoint`` and copies every stored tensor -- plain tensors
and the slices of partitioned ones -- in (shard, offset) order with
``BundleWriter.add_copy``, declaring partitioned tensors with ``add_sliced``,
then commits to NEW (fsynced, atomic). ``--trust-crc`` passes the stored CRC with
``verify=False`` (the bytes are never read into user space); by default the
writer reads each range once to check it against the stored CRC.

Usage::

    .venv/bin/python bench/_rewrite.py OLD_PREFIX NEW_PREFIX [--trust-crc]
"""

from __future__ import annotations

import argparse
import sys

from ckptmap.formats.crc import unmask_crc
from ckptmap.readers.tf_bundle import TensorEntry, open_checkpoint
from ckptmap.writers.tf_bundle import BundleWriter, slice_entry_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--trust-crc", action="store_true", help="add_copy(..., verify=False)")
    args = parser.parse_args(argv)

    with open_checkpoint(args.old) as ckpt:
        stored: list[tuple[str, TensorEntry]] = []  # (output key, entry holding bytes)
        sliced: list[TensorEntry] = []
        for key in ckpt:
            entry = ckpt.entry(key)
            if entry.is_sliced:
                sliced.append(entry)
                stored += [(slice_entry_key(key, s), e) for s, e in ckpt.slice_entries(key)]
            else:
                stored.append((key, entry))
        stored.sort(key=lambda item: (item[1].shard_id, item[1].offset))
        with BundleWriter(args.new, num_shards=ckpt.num_shards) as writer:
            for entry in sliced:
                writer.add_sliced(
                    entry.key, dtype=entry.dtype, full_shape=entry.shape, slices=entry.slices
                )
            for key, entry in stored:
                writer.add_copy(
                    key,
                    ckpt.shard_path(entry.shard_id),
                    entry.offset,
                    entry.size,
                    dtype=entry.dtype,
                    shape=entry.shape,
                    expected_crc32c=unmask_crc(entry.crc32c),
                    verify=not args.trust_crc,
                    shard=entry.shard_id,
                )
            writer.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
