"""The non-tensor files of a checkpoint (ckptmap/readers/assets.py), locally and in a store."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import FIXTURES

from ckptmap.readers import Asset, list_assets, open_checkpoint
from ckptmap.storage import KvLocation, open_location


def test_assets_of_a_monolith_checkpoint() -> None:
    with open_checkpoint(FIXTURES / "ffm_v1") as ckpt:
        assets = ckpt.assets
    folder = FIXTURES / "ffm_v1"
    assert assets == [
        Asset(folder / "model.ckpt-100.assets" / "hash_filter_0", "hash_filter_0", 320,
              "hash_filter", 0, False),
        Asset(folder / "model.ckpt-100.assets" / "hash_filter_1", "hash_filter_1", 320,
              "hash_filter", 1, False),
        Asset(folder / "model.ckpt-100hash_filter_0", "hash_filter_0", 320, "hash_filter", 0, True),
    ]  # fmt: skip
    with open_checkpoint(FIXTURES / "ffm_v1", step=50) as ckpt:
        assert ckpt.assets == []


def test_split_hash_filters_and_other_dumps(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(FIXTURES / "ffm_v2_ps3", folder)
    assets_dir = folder / "model.ckpt-100.assets"
    (assets_dir / "hash_filter_2-00003-of-00007").write_bytes(b"x" * 7)
    (assets_dir / "tables").mkdir()
    (assets_dir / "tables" / "embedding.dump").write_bytes(b"y")
    with open_checkpoint(folder) as ckpt:
        found = {(a.name, a.kind, a.ps_index, a.size) for a in ckpt.assets}
    assert found == {
        ("hash_filter_0", "hash_filter", 0, 320),
        ("hash_filter_1", "hash_filter", 1, 320),
        ("hash_filter_2", "hash_filter", 2, 320),
        ("hash_filter_2-00003-of-00007", "hash_filter", 2, 7),
        ("tables/embedding.dump", "other", None, 1),
    }


def test_assets_in_a_store_have_urls_and_no_sizes() -> None:
    url = "memory://readers-assets/ffm_v1/"
    store = KvLocation(url)
    folder = FIXTURES / "ffm_v1"
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            store.write(path.relative_to(folder).as_posix(), path.read_bytes())
    local = list_assets(open_location(folder), "model.ckpt-100")
    remote = list_assets(store, "model.ckpt-100")
    assert [(a.name, a.kind, a.ps_index, a.legacy) for a in remote] == [
        (a.name, a.kind, a.ps_index, a.legacy) for a in local
    ]
    assert [a.size for a in remote] == [None] * len(local)
    assert str(remote[0].path) == str(Path(url + "model.ckpt-100.assets/hash_filter_0"))


def test_a_checkpoint_without_assets(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "dtype_zoo", tmp_path / "zoo")
    assert list_assets(open_location(tmp_path / "zoo"), "zoo") == []
