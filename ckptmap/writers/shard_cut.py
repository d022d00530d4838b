"""Cutting tensors into data files of bounded size, in the order they are written.

One rule serves every writer that fills files one after another (TensorFlow
bundles with ``max_shard_bytes``, safetensors' ``max_shard_size``): the next
tensor goes into the current file unless the file already holds bytes and the
tensor would push it past the limit; a tensor larger than the limit gets a file
of its own. :func:`count_shards` applies the rule to planned sizes, so a bundle's
file names (``P.data-00003-of-00012``) are known before the first byte is written
and each file can be published as soon as it is full.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["count_shards", "starts_new_shard"]


def starts_new_shard(used: int, size: int, limit: int) -> bool:
    """Whether a tensor of ``size`` bytes starts a new file after one holding ``used``.

    Example:
        >>> starts_new_shard(0, 30, 10), starts_new_shard(6, 4, 10), starts_new_shard(6, 5, 10)
        (False, False, True)
    """
    return used > 0 and used + size > limit


def count_shards(sizes: Iterable[int], limit: int) -> int:
    """How many files the rule fills with tensors of ``sizes``, in order (at least 1).

    Example:
        >>> count_shards([6, 5, 4, 20], 10), count_shards([], 10)
        (3, 1)
    """
    count, used = 1, 0
    for size in sizes:
        if starts_new_shard(used, size, limit):
            count, used = count + 1, 0
        used += size
    return count
