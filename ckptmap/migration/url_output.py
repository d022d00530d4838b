"""A remap whose ``--out`` is a URL: staged locally, then uploaded in commit order.

Stores have no rename, so the ``.index`` is the commit point: the data shards
go first under their final names, then the assets, then the index, then (for
a folder URL ending in ``/``) the ``checkpoint`` state file (docs/remote.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ckptmap.errors import InputError, OutputError, OutputExistsError, UsageError
from ckptmap.storage import open_location, split_name

if TYPE_CHECKING:
    from ckptmap.migration.execute import RemapResult
    from ckptmap.migration.plan import RemapPlan
    from ckptmap.migration.write import Progress


def execute_to_url(
    plan: RemapPlan,
    out: str,
    *,
    force: bool,
    shards: int,
    assets: str,
    verify: bool,
    progress: Progress | None,
) -> RemapResult:
    """Write the checkpoint into a local staging folder, then upload it in commit order.

    Stores have no rename, so the ``.index`` is the commit point: the data
    shards go first under their final names, then the assets, then the index,
    then (for a folder URL ending in ``/``) the ``checkpoint`` state file. An
    existing index is refused without ``force``, and deleted first with it.
    A failed upload deletes what it wrote (docs/remote.md).
    """
    import tempfile

    from ckptmap.migration.execute import RemapResult, execute
    from ckptmap.storage import upload_files

    folder, name = split_name(out)
    try:
        location = open_location(folder)
    except (InputError, UsageError) as err:
        raise OutputError(f"--out {err}") from None
    model_dir = not name
    prefix_name = name or plan.output_name
    index_name = prefix_name + ".index"
    if location.exists(index_name) and not force:
        raise OutputExistsError(
            location.where(index_name), "a checkpoint exists here; pass --force to replace it"
        )
    with tempfile.TemporaryDirectory(prefix="ckptmap-stage-") as stage:
        staged_out = f"{stage}{os.sep}" if model_dir else os.path.join(stage, prefix_name)
        staged = execute(
            plan,
            staged_out,
            shards=shards,
            assets="copy" if assets == "link" else assets,
            verify=verify,
            progress=progress,
        )
        root = Path(stage)
        names = {f: f.relative_to(root).as_posix() for f in staged.files}
        index = [f for f in staged.files if names[f] == index_name]
        state = [f for f in staged.files if names[f] == "checkpoint"]
        data = [f for f in staged.files if ".data-" in names[f] and f not in index]
        rest = [f for f in staged.files if f not in (*index, *state, *data)]
        ordered = [(names[f], f) for f in (*data, *rest, *index, *state)]
        written = upload_files(location, ordered, delete_first=[index_name] if force else [])
    return RemapResult(
        prefix=Path(location.where(prefix_name)),
        files=tuple(Path(location.where(n)) for n in written),
        bytes_written=staged.bytes_written,
        plan=plan,
        notes=staged.notes,
    )
