"""Files that travel with a Monolith checkpoint but are not tensors.

Monolith saves its hash filters (one per parameter server, ``hash_filter_<ps>``,
possibly split into ``hash_filter_<ps>-<split>-of-<n>``) and hash-table dumps
into ``<prefix>.assets/``. Older versions wrote the hash filters next to the
checkpoint as ``<prefix>hash_filter_<ps>`` (no separator). ckptmap lists them
and copies them untouched; it never reads their contents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ckptmap.storage import Location
from ckptmap.storage.input_files import resolved_input

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


def list_assets(location: Location, prefix: str) -> list[Asset]:
    """List the assets of the checkpoint ``prefix`` in ``location``, ``.assets/`` first, by name.

    A missing asset folder is not an error: most checkpoints have none. A
    store that cannot list (HTTP) has no assets ckptmap can see: the result is
    empty. ``Asset.path`` is the file's path, or its URL as a path
    (:func:`ckptmap.storage.location_text` gives the URL back).
    """
    folder = prefix + ASSETS_SUFFIX + "/"
    inside = location.list(folder)
    if inside is None:
        return []
    found = [_asset(location, name, name[len(folder) :], legacy=False) for name in inside]
    for name in location.list(prefix + HASH_FILTER_STEM) or []:
        rest = name[len(prefix) :]
        if "/" not in rest and _HASH_FILTER.match(rest):
            found.append(_asset(location, name, rest, legacy=True))
    return found


def _asset(location: Location, name: str, asset_name: str, *, legacy: bool) -> Asset:
    match = _HASH_FILTER.match(asset_name.rsplit("/", 1)[-1])
    path = Path(location.where(name))
    size = None  # a store tells a size only by reading the file: sizes are for local files
    if location.is_local:
        # a link is followed only inside the model folder; no FIFO, socket or device
        size = resolved_input(path, location.where("")).stat().st_size
    if match:
        return Asset(path, asset_name, size, "hash_filter", int(match["ps"]), legacy)
    return Asset(path, asset_name, size, "other", None, legacy)
