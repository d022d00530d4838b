"""The error hierarchy: every class in errors.py, its exit code, and its message form."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import FIXTURES

import ckptmap
from ckptmap import errors
from ckptmap.cli import main
from ckptmap.cli._output import exit_code_for
from ckptmap.errors import (
    AliasError,
    CkptmapError,
    CorruptCheckpointError,
    GraphError,
    InputError,
    MissingInputError,
    OutputError,
    OutputExistsError,
    PartitionError,
    PathError,
    RangeError,
    SliceSpecError,
    TensorNotFoundError,
    UnresolvedError,
    UnsupportedInputError,
    UsageError,
)
from ckptmap.split import SliceSpec, check_tiling

# README, "Exit codes": 1 unresolved or mismatched keys, 2 usage error,
# 3 unreadable or corrupt input, 4 output cannot be written.
DOCUMENTED_EXIT_CODES: dict[type[CkptmapError], int] = {
    UnresolvedError: 1,
    UsageError: 2,
    AliasError: 2,
    SliceSpecError: 2,
    PartitionError: 2,
    InputError: 3,
    CorruptCheckpointError: 3,
    MissingInputError: 3,
    TensorNotFoundError: 3,
    RangeError: 3,
    UnsupportedInputError: 3,
    GraphError: 3,
    OutputError: 4,
    OutputExistsError: 4,
}
KINDS = (UnresolvedError, UsageError, InputError, OutputError)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def _import_every_module() -> None:
    for info in pkgutil.walk_packages(ckptmap.__path__, "ckptmap."):
        if info.name in ("ckptmap.__main__",) or info.name.startswith("ckptmap.tf"):
            continue  # __main__ runs the CLI; ckptmap.tf needs TensorFlow
        importlib.import_module(info.name)


def _example(cls: type[CkptmapError]) -> CkptmapError:
    """An instance of ``cls`` made the way ckptmap makes them."""
    if cls is TensorNotFoundError:
        return cls("ckpt/model.ckpt-1.index", "dense/kernel", "no tensor 'dense/kernel'")
    if cls is RangeError:
        return cls("ckpt/model.data", 10, "bytes 8..12 lie past the end of the file", 8)
    if issubclass(cls, PathError):
        return cls("some/file", "what is wrong (what to do)")
    return cls("what is wrong (what to do)")


def test_every_error_class_lives_in_errors_and_has_its_documented_exit_code() -> None:
    _import_every_module()
    defined = _all_subclasses(CkptmapError) - {PathError}
    assert {cls for cls in defined if cls.__module__.startswith("ckptmap")} == set(
        DOCUMENTED_EXIT_CODES
    )
    assert all(cls.__module__ == "ckptmap.errors" for cls in defined)
    assert set(errors.__all__) == {c.__name__ for c in {*defined, CkptmapError, PathError}}


@pytest.mark.parametrize(
    ("cls", "code"), DOCUMENTED_EXIT_CODES.items(), ids=lambda v: getattr(v, "__name__", str(v))
)
def test_exit_code(cls: type[CkptmapError], code: int) -> None:
    assert sum(issubclass(cls, kind) for kind in KINDS) == 1  # exactly one kind
    assert exit_code_for(_example(cls)) == code


@pytest.mark.parametrize(
    "cls", sorted(_all_subclasses(PathError), key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_path_errors_print_as_path_colon_detail(cls: type[PathError]) -> None:
    err = _example(cls)
    assert str(err) == f"{err.path}: {err.detail}"
    assert err.args == (str(err),)
    assert exit_code_for(err) == DOCUMENTED_EXIT_CODES[cls]


def test_a_path_may_be_a_pathlib_path() -> None:
    err = CorruptCheckpointError(Path("ckpt") / "model.ckpt-1.index", "bad magic")
    assert (err.path, str(err)) == ("ckpt/model.ckpt-1.index", "ckpt/model.ckpt-1.index: bad magic")


def test_path_errors_keep_their_builtin_behaviour() -> None:
    missing = MissingInputError("m/f", "no such file")
    assert isinstance(missing, FileNotFoundError)
    assert missing.errno is None  # two arguments are not read as (errno, strerror)
    with pytest.raises(FileNotFoundError):
        raise missing
    not_found = TensorNotFoundError("i", "k", "no tensor 'k'")
    assert isinstance(not_found, KeyError)
    assert not_found.key == "k"
    assert str(not_found) == "i: no tensor 'k'"  # not KeyError's repr of its argument
    assert isinstance(OutputExistsError("o", "exists"), FileExistsError)
    past = RangeError("d", None, "bytes past the end")
    assert (past.size, past.offset) == (None, None)
    assert isinstance(SliceSpecError("x"), ValueError)
    assert isinstance(PartitionError("x"), ValueError)


def test_split_errors_are_the_ones_in_errors() -> None:
    import ckptmap.split

    assert ckptmap.split.SliceSpecError is SliceSpecError
    assert ckptmap.split.PartitionError is PartitionError


# -- a bad slice spec: from the caller a usage error, from a file a damaged input -------


def test_a_slice_spec_given_by_the_caller_is_a_usage_error() -> None:
    with pytest.raises(SliceSpecError, match="has a bad extent") as bad_text:
        SliceSpec.parse("6 4 0,2:x")
    assert exit_code_for(bad_text.value) == 2
    with pytest.raises(SliceSpecError, match="does not fit") as bad_extent:
        SliceSpec((6, 4), ((5, 2), (0, 4)))
    assert exit_code_for(bad_extent.value) == 2
    with pytest.raises(PartitionError, match="overlap") as overlap:
        check_tiling([SliceSpec.parse("4 0,3"), SliceSpec.parse("4 2,2")], (4,))
    assert exit_code_for(overlap.value) == 2


def _run(*args: str | Path) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_slice_spec_read_from_a_file_is_a_damaged_input(tmp_path: Path) -> None:
    spec = tmp_path / "new.json"
    entry = {"name": "w", "dtype": "float32", "shape": [6, 4]}
    spec.write_text(json.dumps({"variables": [{**entry, "partitions": {"slices": ["6 4 0,9:-"]}}]}))
    result = _run("check", "--old", FIXTURES / "ffm_v1", "--new-graph", spec)
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith(f"error: {spec}")
    assert "does not fit in a dimension of size 6" in result.stderr


def test_a_slice_spec_damaged_in_a_store_manifest_is_a_corrupt_input(tmp_path: Path) -> None:
    pytest.importorskip("tensorstore")
    from ckptmap.convert import convert

    out = tmp_path / "store.zarr"
    convert(FIXTURES / "ffm_v1", out)
    manifest = json.loads((out / "zarr.json").read_text())
    sliced = next(a for a in manifest["attributes"]["ckptmap"]["arrays"] if a["slices"])
    sliced["slices"][0] = "oops"
    (out / "zarr.json").write_text(json.dumps(manifest))
    result = _run("inspect", out)
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith(f"error: {out}/zarr.json: the manifest is invalid: ")
