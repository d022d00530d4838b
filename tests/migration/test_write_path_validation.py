"""The write path validates what the read path validates: corrupt input, nothing written.

Every damaged checkpoint of the shared case table (``tests/corruption_cases.py``,
the one ``inspect`` is tested on) is given to ``remap`` (plain and ``--link``),
``convert`` and ``check``, through the CLI and the library. Each must refuse it
the way ``inspect`` does: exit 3, one ``error:`` line naming the same file (and
the same tensor, when the damage is in one), and nothing at all in the output
folder (no files, no staging folder). ``check`` reads indexes only (README,
"check reads indexes and graphs only"), so damage inside a data file is
``check``'s documented exit 0; anything wrong in the index is exit 3.

Damaged new-model descriptions (a JSON spec or a graph claiming a 2**70 dim or
rank 65, nesting too deep, an alias-map entry naming an absent old key) are
refused by ``check`` and ``remap`` in the same way (the alias map is a usage
error, exit 2, naming the alias-map file).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from corruption_cases import CASES, Case, damaged_copy
from helpers import FIXTURES

from ckptmap.cli import main
from ckptmap.convert import convert
from ckptmap.errors import AliasError, InputError
from ckptmap.migration import check, remap
from ckptmap.readers import open_checkpoint

RULE = "^ffm/global_bias/(.*)$=ffm/bias_net/{}"


def run(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _prefix(case: Case, folder: Path) -> Path:
    """What to pass as --old: the folder, or the prefix of the state-file-less dtype_zoo."""
    return folder / "zoo" if case.fixture == "dtype_zoo" else folder


def _same_model(fixture: str, path: Path) -> Path:
    """The undamaged checkpoint's own keys as a JSON model spec: every key resolves."""
    variables = []
    with open_checkpoint(FIXTURES / fixture / ("zoo" if fixture == "dtype_zoo" else "")) as ckpt:
        for spec in ckpt.specs().values():
            var: dict[str, object] = {
                "name": spec.key,
                "dtype": spec.dtype.name,
                "shape": list(spec.shape),
            }
            if spec.slices:
                var["partitions"] = {"slices": [s.format() for s in spec.slices]}
            variables.append(var)
    path.write_text(json.dumps({"version": 1, "variables": variables}))
    return path


def _named(message: str) -> tuple[str, str | None]:
    """The file an inspect message names, and the tensor it names (if any)."""
    tensor = re.search(r"tensor '([^'\[]+)(?:\[[^']*\])?'", message)  # the name, not its slice
    return message.split(": ", 1)[0], tensor.group(1) if tensor else None


def _assert_refused(result: Result, file: str, tensor: str | None, code: int = 3) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {file}: "), lines[0]
    if tensor is not None:
        named = re.escape(tensor)
        assert re.search(rf"'{named}(\[[^']*\])?'", lines[0]), lines[0]  # name or name[slice]
    assert "Traceback" not in result.output


def _assert_nothing_written(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == []


def _in_data_file(file: str) -> bool:
    return ".data-" in Path(file).name


Damaged = tuple[str, str | None, Path, Path, Path]


@pytest.fixture
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Damaged:
    """(the file and tensor inspect names, --old, a same-model JSON spec, an empty output)."""
    case: Case = request.param
    (tmp_path / "in").mkdir()
    folder = damaged_copy(case, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    file, tensor = _named(case.message(folder))
    spec = _same_model(case.fixture, tmp_path / "new.json")
    return file, tensor, _prefix(case, folder), spec, out


@pytest.mark.parametrize("damaged", CASES, indirect=True)
@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_remap_refuses_and_writes_nothing(damaged: Damaged, link: bool) -> None:
    file, tensor, old, spec, out = damaged
    extra = ["--link"] if link else []
    result = run(
        "remap",
        "--old",
        old,
        "--new-graph",
        spec,
        "--out",
        f"{out}/",
        "--continue-training",
        *extra,
    )
    _assert_refused(result, file, tensor)
    _assert_nothing_written(out)


@pytest.mark.parametrize("damaged", CASES, indirect=True)
def test_convert_refuses_and_writes_nothing(damaged: Damaged) -> None:
    file, tensor, old, _, out = damaged
    result = run("convert", "--old", old, "--to", "zarr3", "--out", out / "store.zarr")
    _assert_refused(result, file, tensor)
    _assert_nothing_written(out)


@pytest.mark.parametrize("damaged", CASES, indirect=True)
def test_check_refuses_a_damaged_index(damaged: Damaged) -> None:
    file, tensor, old, spec, _ = damaged
    result = run("check", "--old", old, "--new-graph", spec, "--continue-training")
    if _in_data_file(file) and not Path(file).exists():  # a missing data file fails check
        _assert_refused(result, file, None)
    elif _in_data_file(file):  # check reads no tensor data: documented exit 0
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
    else:
        _assert_refused(result, file, tensor)


@pytest.mark.parametrize("damaged", CASES, indirect=True)
def test_library_refuses_and_writes_nothing(damaged: Damaged) -> None:
    file, _, old, spec, out = damaged
    with pytest.raises(InputError) as info:
        remap(old, spec, out / "model.ckpt", continue_training=True)
    assert str(info.value).startswith(f"{file}: ")
    with pytest.raises(InputError) as info:
        convert(old, out / "store.zarr")
    assert str(info.value).startswith(f"{file}: ")
    if not _in_data_file(file):
        with pytest.raises(InputError):
            check(old, spec, continue_training=True)
    _assert_nothing_written(out)


# -- damaged descriptions of the new model -----------------------------------------


def _spec_with_shape(path: Path, shape: list[int]) -> Path:
    var = {"name": "ffm/bias_net/w", "dtype": "float32", "shape": shape}
    path.write_text(json.dumps({"version": 1, "variables": [var]}))
    return path


def _deep_spec(folder: Path) -> Path:
    path = folder / "deep.json"
    path.write_text('{"version": 1, "variables": ' + "[" * 5000 + "]" * 5000 + "}")
    return path


def _graph_with_dim(path: Path, variable: str, dim: int) -> Path:
    """The v2 graph.pbtxt with the first dimension of ``variable``'s shape attr set to ``dim``."""
    nodes = (FIXTURES / "ffm_v2" / "graph.pbtxt").read_text().split("\nnode {")
    for i, node in enumerate(nodes):
        if f'name: "{variable}"\n' in node and 'key: "shape"' in node:
            at = node.index("size: ", node.index('key: "shape"'))
            end = node.index("\n", at)
            nodes[i] = f"{node[:at]}size: {dim}{node[end:]}"
            break
    else:
        raise AssertionError(f"no variable {variable} in the graph")
    path.write_text("\nnode {".join(nodes))
    return path


MODEL_CASES = [
    pytest.param(
        lambda d: _spec_with_shape(d / "new.json", [2**70, 1]),
        "dimension 0 is 1180591620717411303424, beyond 2**62",
        id="json-dim-2**70",
    ),
    pytest.param(
        lambda d: _spec_with_shape(d / "new.json", [1] * 65),
        "rank 65 is more than ckptmap supports",
        id="json-rank-65",
    ),
    pytest.param(
        _deep_spec,
        "nested more than 20 levels deep",
        id="json-deep",
    ),
    pytest.param(
        lambda d: _graph_with_dim(d / "graph.pbtxt", "ffm/tower/dense/kernel", 2**70),
        "variable 'ffm/tower/dense/kernel' (key 'ffm/tower/dense/kernel'): dimension 0 is "
        "1180591620717411303424, beyond 2**62",
        id="graph-dim-2**70",
    ),
]


@pytest.mark.parametrize(("make", "detail"), MODEL_CASES)
@pytest.mark.parametrize("command", ["check", "remap"])
def test_a_damaged_new_model_is_refused(
    make: Callable[[Path], Path], detail: str, command: str, tmp_path: Path
) -> None:
    model = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "ffm_v1", old)
    args = ["--old", old, "--new-graph", model, "--rule", RULE]
    result = run(command, *args, *(["--out", f"{out}/"] if command == "remap" else []))
    _assert_refused(result, str(model), None)
    assert detail in result.stderr
    _assert_nothing_written(out)


@pytest.mark.parametrize("command", ["check", "remap"])
def test_an_alias_map_naming_an_absent_old_key_names_the_map(command: str, tmp_path: Path) -> None:
    alias_map = tmp_path / "aliases.json"
    alias_map.write_text(json.dumps({"ffm/global_bias/w": "ffm/absent/w"}))
    out = tmp_path / "out"
    out.mkdir()
    args = ["--old", FIXTURES / "ffm_v1", "--new-graph", FIXTURES / "ffm_v2" / "graph.pbtxt"]
    args += ["--rule", RULE, "--alias-map", alias_map]
    result = run(command, *args, *(["--out", f"{out}/"] if command == "remap" else []))
    _assert_refused(result, str(alias_map), "ffm/absent/w", code=2)
    assert "the old checkpoint has no key 'ffm/absent/w'" in result.stderr
    _assert_nothing_written(out)
    with pytest.raises(AliasError, match=re.escape(f"{alias_map}: ")):
        remap(FIXTURES / "ffm_v1", FIXTURES / "ffm_v2" / "graph.pbtxt", out / "m.ckpt",
              rules=[RULE], alias_map=alias_map)  # fmt: skip
    _assert_nothing_written(out)
