"""Files that travel with a Monolith checkpoint but are not tensors.

Monolith saves its hash filters (one per parameter server, ``hash_filter_<ps>``,
possibly split into ``hash_filter_<ps>-<split>-of-<n>``) and hash-table dumps
into ``<prefix>.assets/``. Older versions wrote the hash filters next to the
checkpoint as ``<prefix>hash_filter_<ps>`` (no separator). ckptmap lists them
and copies them untouched; it never reads their contents.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ckptmap.storage import Location

ASSETS_SUFFIX = ".assets"
HASH_FILTER_STEM = "hash_filter_"
_HASH_FILTER = re.compile(r"^hash_filter_(?P<ps>\d+)(?:-\d+-of-\d+)?$")

AssetKind = Literal["hash_filter", "other"]


@dataclass(frozen=True, slots=True)
class Asset:
    """One file that belongs to a checkpoint but holds no tensor.

    Attributes:
        path: the file.
        name: its name relative to ``<prefix>.assets/`` (POSIX separators), or,
            for a legacy file, the part after the prefix (``hash_filter_0``).
        size: its size in bytes (``None`` for a file at a URL: stores do not
            tell sizes without reading).
        kind: ``"hash_filter"`` for a hash-filter file, ``"other"`` otherwise.
        ps_index: the parameter server a hash filter belongs to, else ``None``.
        legacy: True for a ``<prefix>hash_filter_<ps>`` file outside ``.assets/``.
    """

    path: Path
    name: str
    size: int | None
    kind: AssetKind
    ps_index: int | None
    legacy: bool


def assets_dir(prefix: str | os.PathLike[str]) -> Path:
    """The asset folder of the checkpoint at ``prefix``: ``<prefix>.assets``."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + ASSETS_SUFFIX)


def list_assets(prefix: str | os.PathLike[str]) -> list[Asset]:
    """List the assets of the checkpoint at ``prefix``, ``.assets/`` first, by name.

    A missing asset folder is not an error: most checkpoints have none.
    """
    prefix = Path(prefix)
    folder = assets_dir(prefix)
    found: list[Asset] = []
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            found.append(_asset(path, name, legacy=False))
    legacy_stem = prefix.name + HASH_FILTER_STEM
    if prefix.parent.is_dir():
        for path in sorted(prefix.parent.glob(glob.escape(legacy_stem) + "*")):
            name = path.name[len(prefix.name) :]
            if path.is_file() and _HASH_FILTER.match(name):
                found.append(_asset(path, name, legacy=True))
    return found


def list_remote_assets(location: Location, prefix: str) -> list[Asset]:
    """List the assets of the checkpoint ``prefix`` in a store, as :func:`list_assets` does.

    Stores that cannot list (HTTP) have no assets that ckptmap can see: the
    result is empty. ``Asset.path`` holds the file's URL as a path
    (:func:`ckptmap.storage.location_text` gives the URL back).
    """
    folder = prefix + ASSETS_SUFFIX + "/"
    inside = location.list(folder)
    if inside is None:
        return []
    found = [
        _asset(Path(location.where(n)), n[len(folder) :], legacy=False, remote=True) for n in inside
    ]
    stem = prefix + HASH_FILTER_STEM
    for name in location.list(stem) or []:
        rest = name[len(prefix) :]
        if "/" not in rest and _HASH_FILTER.match(rest):
            found.append(_asset(Path(location.where(name)), rest, legacy=True, remote=True))
    return found


def _asset(path: Path, name: str, *, legacy: bool, remote: bool = False) -> Asset:
    match = _HASH_FILTER.match(name.rsplit("/", 1)[-1])
    size = None if remote else path.stat().st_size
    if match:
        return Asset(path, name, size, "hash_filter", int(match["ps"]), legacy)
    return Asset(path, name, size, "other", None, legacy)
