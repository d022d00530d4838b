"""s3:// and gs:// against real local servers (moto_server, gcp-storage-emulator).

Every test runs on both stores, each in a new bucket, reached the way users
configure them (``AWS_ENDPOINT_URL`` + keys, ``STORAGE_EMULATOR_HOST``): inspect
and check read only the index; remap from a bucket equals a local remap; remap
and convert into a bucket write byte-identical files; a killed upload's
leftovers are removed by the next write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner, Result
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.readers import open_source
from ckptmap.storage import KvLocation
from ckptmap.writers._protocol import DATA, INDEX, Journal

OLD = FIXTURES / "ffm_v1_ps2"
GRAPH = FIXTURES / "ffm_v2_ps3" / "graph.pbtxt"
RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def upload(folder: Path, url: str) -> KvLocation:
    location = KvLocation(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            location.write(path.relative_to(folder).as_posix(), path.read_bytes())
    return location


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def objects(url: str) -> dict[str, bytes]:
    location = KvLocation(url)
    return {name: location.read_all(name) for name in location.list() or []}


def remap(old: str, out: str, *extra: str) -> dict[str, Any]:
    return run_json(
        "remap", "--old", old, "--new-graph", str(GRAPH), "--out", out, "--rule", RULE, *extra
    )


def test_inspect_and_check_read_only_the_index(bucket_url: str) -> None:
    upload(OLD, f"{bucket_url}/ffm_v1_ps2/")
    prefix = f"{bucket_url}/ffm_v1_ps2/model.ckpt-100"
    index_size = (OLD / "model.ckpt-100.index").stat().st_size
    remote = run_json("inspect", prefix)
    local = run_json("inspect", str(OLD / "model.ckpt-100"))
    assert remote["tensors"] == local["tensors"]
    assert remote["io"]["bytes_read"] == index_size
    checked = run_json("check", "--old", prefix, "--new-graph", str(GRAPH))
    reference = run_json("check", "--old", str(OLD), "--new-graph", str(GRAPH))
    for field in ("ok", "counts", "resolved", "unresolved", "mismatched"):
        assert checked[field] == reference[field], field
    assert checked["io"]["bytes_read"] == index_size
    verified = run_json("inspect", f"{bucket_url}/ffm_v1_ps2/", "--verify", "--stats")
    assert verified["tensors"] == run_json("inspect", str(OLD), "--verify", "--stats")["tensors"]


def test_remap_from_a_bucket_equals_a_local_remap(bucket_url: str, tmp_path: Path) -> None:
    upload(OLD, f"{bucket_url}/ffm_v1_ps2/")
    remap(str(OLD), f"{tmp_path}/local/")
    remote = remap(f"{bucket_url}/ffm_v1_ps2", f"{tmp_path}/remote/")
    assert remote["old"] == f"{bucket_url}/ffm_v1_ps2/model.ckpt-100"
    local_files, remote_files = files(tmp_path / "local"), files(tmp_path / "remote")
    assert local_files.keys() == remote_files.keys()
    for name, data in local_files.items():
        if name != "checkpoint":  # names its folder's checkpoint; compared below
            assert remote_files[name] == data, name


def test_remap_to_a_bucket_writes_the_local_bytes(bucket_url: str, tmp_path: Path) -> None:
    remap(str(OLD), f"{tmp_path}/local/")
    out = f"{bucket_url}/remapped/"
    result = remap(str(OLD), out)
    assert result["output"]["files"][-2:] == [f"{out}model.ckpt-100.index", f"{out}checkpoint"]
    uploaded, local = objects(out), files(tmp_path / "local")
    assert uploaded.keys() == local.keys()
    for name, data in local.items():
        if name != "checkpoint":
            assert uploaded[name] == data, name
    assert b'model_checkpoint_path: "model.ckpt-100"' in uploaded["checkpoint"]
    again = run("remap", "--old", str(OLD), "--new-graph", str(GRAPH), "--out", out, "--rule", RULE)
    assert again.exit_code == 4
    assert "a checkpoint exists here; pass --force to replace it" in again.stderr
    remap(str(OLD), out, "--force")
    assert objects(out) == uploaded  # the writer is deterministic


def test_convert_to_a_bucket(bucket_url: str, tmp_path: Path) -> None:
    store = f"{bucket_url}/ffm_v1_ps2.zarr"
    result = run("convert", "--old", str(OLD), "--to", "zarr3", "--out", store)
    assert result.exit_code == 0, result.stderr
    with open_source(store) as converted, open_source(OLD) as original:
        assert sorted(converted.keys()) == sorted(original.keys())
        for key in original:
            np.testing.assert_array_equal(converted.read(key), original.read(key), err_msg=key)
    local = tmp_path / "local.zarr"
    result = run("convert", "--old", str(OLD), "--to", "zarr3", "--out", str(local))
    assert result.exit_code == 0, result.stderr
    assert objects(f"{store}/") == files(local)  # the same store, object for file
    again = run("convert", "--old", str(OLD), "--to", "zarr3", "--out", store)
    assert again.exit_code == 4
    assert "a store already exists here (pass --force to replace it)" in again.stderr
    result = run("convert", "--old", str(OLD), "--to", "zarr3", "--out", store, "--force")
    assert result.exit_code == 0, result.stderr
    assert objects(f"{store}/") == files(local)


def test_a_killed_uploads_leftovers_go_with_the_next_write(bucket_url: str) -> None:
    out = f"{bucket_url}/run/"
    location = KvLocation(out)
    leftover = "model.ckpt-100.data-00000-of-00009"  # a shard count no new output has
    location.write(leftover, b"half an upload")
    journal = Journal("model.ckpt-100", [(leftover, DATA), ("model.ckpt-100.index", INDEX)])
    location.write(".ckptmap-staging-0badc0de.journal", journal.encode())
    remap(str(OLD), out)
    names = location.list() or []
    assert leftover not in names
    assert not [n for n in names if n.startswith(".ckptmap-staging-")]
    assert "model.ckpt-100.index" in names


def test_a_folder_lists_only_its_own_objects(bucket_url: str) -> None:
    """Sibling folders that sort after it (the GCS emulator ignores a range's end) stay out."""
    bucket = KvLocation(f"{bucket_url}/")
    for name in ("k0/a", "k0/b/c", "k0x/d", "labels/index", "labels/model.ckpt-1.index"):
        bucket.write(name, name.encode())
    assert KvLocation(f"{bucket_url}/k0/").list() == ["a", "b/c"]
    assert KvLocation(f"{bucket_url}/k0/").list("b") == ["b/c"]
    assert KvLocation(f"{bucket_url}/empty/").list() == []
    assert KvLocation(f"{bucket_url}/labels/").list("model") == ["model.ckpt-1.index"]
    assert bucket.list("k0") == ["k0/a", "k0/b/c", "k0x/d"]
