"""The zarr3 store layout: node names, keys as JSON, the manifest and its parser."""

from __future__ import annotations

import json

import pytest

from ckptmap.dtypes import dtype_from_name
from ckptmap.errors import CorruptCheckpointError
from ckptmap.formats.zarr_layout import (
    FORMAT,
    ZarrArrayInfo,
    array_path,
    array_paths,
    decode_key,
    encode_key,
    expected_layout,
    manifest_metadata,
    parse_manifest,
    storage_of,
)
from ckptmap.split import SliceSpec


def test_array_path_escapes_to_one_portable_name() -> None:
    assert array_path("ffm/dense_1/kernel/Adam") == "ffm.dense_1.kernel.Adam"
    assert array_path("a.b/c d") == "a%2Eb.c%20d"
    assert array_path("ünï") == "%C3%BCn%C3%AF"
    assert array_path("/lead") == "%2Flead"
    assert array_path("__x") == "%5F_x"
    assert array_path("zarr/json").startswith("zarr.json~")  # the root's metadata name
    long = array_path("k" * 300)
    assert len(long) <= 200
    assert long.startswith("k" * 100)
    assert long != array_path("k" * 301)


def test_array_paths_separate_keys_differing_in_case() -> None:
    paths = array_paths(["case/Kernel", "case/kernel", "case/KERNEL", "other"])
    assert paths["other"] == "other"
    folded = {p.lower() for k, p in paths.items() if k != "other"}
    assert len(folded) == 3
    assert all(p.startswith("case.") and "~" in p for k, p in paths.items() if k != "other")


@pytest.mark.parametrize("key", ["dense/kernel", "ünï", "bad\udcff/bytes"])
def test_keys_survive_json(key: str) -> None:
    encoded = encode_key(key)
    assert list(encoded) == (["key_hex"] if "\udcff" in key else ["key"])
    assert decode_key(json.loads(json.dumps(encoded))) == key


@pytest.mark.parametrize(
    ("dtype", "storage", "data_type"),
    [("float32", "native", "float32"), ("bfloat16", "native", "bfloat16"),
     ("qint8", "native", "int8"), ("uint4", "bytes", "uint8"), ("string", "strings", "uint8")],
)  # fmt: skip
def test_storage_and_data_type_follow_the_dtype(dtype: str, storage: str, data_type: str) -> None:
    info = ZarrArrayInfo.of("k", "k", dtype_from_name(dtype), (3, 2), ())
    assert storage_of(info.dtype) == info.storage == storage
    assert expected_layout(info, "k") == ((None if storage == "strings" else (3, 2)), data_type)
    if storage == "strings":
        assert expected_layout(info, "k/lengths") == ((3, 2), "uint64")


def test_the_manifest_parses_back_to_its_entries() -> None:
    sliced = ZarrArrayInfo.of(
        "emb", "emb", dtype_from_name("float32"), (4, 2),
        (SliceSpec.parse("4 2 0,2:-"), SliceSpec.parse("4 2 2,2:-")),
    )  # fmt: skip
    odd = ZarrArrayInfo.of("x\udcff", "x%FF", dtype_from_name("string"), (), ())
    raw = manifest_metadata("ckpt/model.ckpt-1", [sliced, odd])
    doc = json.loads(raw)
    assert doc["node_type"] == "group"
    assert doc["attributes"]["ckptmap"]["arrays"][0] == {
        "key": "emb", "dtype": "float32", "shape": [4, 2],
        "slices": ["4 2 0,2:-", "4 2 2,2:-"], "storage": "native", "path": "emb",
    }  # fmt: skip
    assert sliced.attributes("src")["ckptmap"] == {
        **{k: v for k, v in doc["attributes"]["ckptmap"]["arrays"][0].items() if k != "path"},
        "format": FORMAT,
        "source": "src",
    }
    manifest = parse_manifest("s/zarr.json", raw)
    assert manifest.source == "ckpt/model.ckpt-1"
    assert manifest.arrays == {"emb": sliced, "x\udcff": odd}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"attributes": {"ckptmap": {"format": "ckptmap-zarr3/9"}}}, "unknown store format"),
        ({"attributes": {}}, "the manifest is missing or invalid"),
        (
            {"attributes": {"ckptmap": {"format": FORMAT, "arrays": [
                {"key": "k", "path": "k", "dtype": "float32", "shape": [2],
                 "slices": ["2 0,1:0,1"], "storage": "native"}]}}},
            "the manifest is invalid",
        ),
        (
            {"attributes": {"ckptmap": {"format": FORMAT, "arrays": [
                {"key": "k", "path": "k", "dtype": "float32", "shape": [2],
                 "slices": [], "storage": "packed"}]}}},
            "unknown storage 'packed'",
        ),
    ],
)  # fmt: skip
def test_a_bad_manifest_is_a_corrupt_store(document: dict, message: str) -> None:
    with pytest.raises(CorruptCheckpointError, match=message) as info:
        parse_manifest("s/zarr.json", json.dumps(document).encode())
    assert str(info.value).startswith("s/zarr.json: ")
