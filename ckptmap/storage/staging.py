"""Names in an output folder that are not checkpoint files: commit staging folders.

A run that writes a checkpoint stages its files in a hidden folder
``<out folder>/.ckptmap-staging-<token>/`` (see :mod:`ckptmap.writers.commit`);
readers skip such names when they list a folder or a store: nothing in a
staging folder is part of a checkpoint.
"""

from __future__ import annotations

__all__ = ["STAGING_PREFIX", "is_staging_name"]

STAGING_PREFIX = ".ckptmap-staging-"


def is_staging_name(name: str) -> bool:
    """Whether a name (or the first part of a ``/``-separated name) is a staging folder's.

    Example:
        >>> is_staging_name(".ckptmap-staging-0123abcd/model.ckpt-1.index")
        True
        >>> is_staging_name("model.ckpt-1.index")
        False
    """
    return name.split("/", 1)[0].startswith(STAGING_PREFIX)
