"""The old checkpoint's non-tensor files (Monolith hash filters, ``<prefix>.assets/``) in a remap.

They travel with the output untouched, staged in the output's commit
(:mod:`ckptmap.writers.commit`) so they appear with the checkpoint:
``<old>.assets/`` becomes ``<new>.assets/`` and legacy ``<old>hash_filter_<i>``
files become ``<new>hash_filter_<i>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ckptmap.storage import is_url, open_parent
from ckptmap.storage.input_files import resolved_input
from ckptmap.writers.commit import Commit


def stage_assets(
    output: Commit, old_prefix: Path, old_assets: Sequence[Path], mode: str
) -> list[str]:
    """Stage the old assets in ``output`` under the new prefix's name; return notes.

    ``mode`` is ``link`` (hard links where the filesystem allows, copies
    elsewhere), ``copy`` or ``skip``. An asset of a checkpoint at a URL is
    fetched whole.
    """
    notes: list[str] = []
    if mode == "skip" or not old_assets:
        return notes
    old_text = str(old_prefix)
    linked_all = True
    for src in old_assets:
        name = output.name + str(src)[len(old_text) :]
        if is_url(src):
            location, file_name = open_parent(src)
            output.add_bytes(name, location.read_all(file_name))
            continue
        # the checked regular file a link inside the folder resolves to: an
        # output never holds a link, and never anything from outside the folder
        target = resolved_input(src, old_prefix.parent)
        linked = output.add_file(name, target, link=mode == "link" and not is_url(output.prefix))
        linked_all = linked_all and linked
    if mode == "link" and not linked_all and not is_url(output.prefix):
        notes.append("some assets were copied because they could not be hard-linked")
    return notes
