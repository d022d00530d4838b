"""The old checkpoint's non-tensor files (Monolith hash filters, ``<prefix>.assets/``) in a remap.

They travel with the output untouched: ``<old>.assets/`` becomes
``<new>.assets/`` and legacy ``<old>hash_filter_<i>`` files become
``<new>hash_filter_<i>``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ckptmap.errors import OutputError, OutputExistsError
from ckptmap.storage import is_url, open_parent


def copy_assets(
    old_prefix: Path, old_assets: Sequence[Path], prefix: Path, mode: str, force: bool
) -> tuple[list[Path], list[str]]:
    """Link or copy the old checkpoint's assets next to the new prefix.

    ``<old>.assets/`` becomes ``<new>.assets/`` and legacy ``<old>hash_filter_<i>``
    files become ``<new>hash_filter_<i>``. Files are hard-linked when ``mode`` is
    ``link`` and the filesystem allows it, copied otherwise.
    """
    notes: list[str] = []
    written: list[Path] = []
    if mode == "skip" or not old_assets:
        return written, notes
    old_text = str(old_prefix)
    linked_all = True
    for src in old_assets:
        rel = str(src)[len(old_text) :]
        dst = Path(str(prefix) + rel)
        if dst.exists() and not force:
            raise OutputExistsError(dst, "asset exists; pass --force to replace it")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".ckptmap-tmp")
        tmp.unlink(missing_ok=True)
        try:
            if is_url(src):  # an asset of a checkpoint at a URL: fetched whole
                location, name = open_parent(src)
                tmp.write_bytes(location.read_all(name))
            elif mode == "link":
                try:
                    os.link(src, tmp)
                except OSError:
                    linked_all = False
                    shutil.copy2(src, tmp)
            else:
                shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{dst}: cannot write asset ({err.strerror or err})") from err
        written.append(dst)
    if mode == "link" and not linked_all:
        notes.append("some assets were copied because they could not be hard-linked")
    return written, notes
