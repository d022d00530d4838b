"""What the commands import: each loads only the modules its own work needs.

Start-up is most of a listing's time and a good part of a 1 GB convert's
(bench/README.md). These run the real command in a fresh interpreter and look
at ``sys.modules`` afterwards, so re-adding an eager import of a heavy module
fails here, with no timing involved.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from ckptmap.storage.store_env import configures_stores

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"

_RUN = """
import json, sys
before = set(sys.modules)
from ckptmap.cli import main
import ckptmap.cli.{module}
import {library}
started = set(sys.modules)
try:
    main(json.loads(sys.argv[1]), prog_name="ckptmap")
except SystemExit as err:
    code = err.code
else:
    code = 0
print(json.dumps({{"code": code, "started": sorted(started), "ran": sorted(sys.modules)}}))
"""


def _modules(module: str, library: str, args: list[str]) -> tuple[set[str], set[str]]:
    """The modules loaded once the command's code is imported, and after it ran."""
    code = _RUN.format(module=module, library=library)
    environ = {k: v for k, v in os.environ.items() if not configures_stores({k: v})}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=environ,  # as a user with no object store configured
    )
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["code"] == 0, out.stderr
    return set(result["started"]), set(result["ran"])


def test_inspect_json_loads_neither_numpy_nor_the_engines() -> None:
    _, ran = _modules(
        "inspect_cmd", "ckptmap.inspect", ["inspect", str(FIXTURES / "ffm_v1"), "--json"]
    )
    unwanted = {
        "numpy",  # listing reads the index only
        "ckptmap.value_stats",  # only for --stats
        "ckptmap.storage.store_config",  # no AWS_* etc. set and no [storage] table
        "ckptmap.storage.retry",
        "tensorstore",  # a local checkpoint
        "rich",  # --json prints with click.echo
        "ckptmap.alias",  # the option defaults come from ckptmap.defaults
        "ckptmap.naming",
        "ckptmap.migration",
        "ckptmap.writers",  # ckptmap.storage / readers / writers export lazily
        "ckptmap.writers.tf_bundle",
        "logging",  # configured (and imported by the CLI) only with -v
        "google.protobuf",  # index entries, slices included, and the header decode without it
        "ckptmap.readers.graph",  # the .meta beside is searched, not parsed: it has no table
        "ckptmap.readers.object_graph",  # a name-based checkpoint has no object graph
        "ckptmap.readers.json_spec",
        "ckptmap.spec",  # the model's side (tensor specs are built for planning)
        "difflib",  # only for the "did you mean" of a missing key
        "cramjam",  # only for a Snappy-compressed index (TensorFlow 1.x)
        "ckptmap.cli.options.commands.plan",  # the other commands' options
        "ckptmap.cli.options.commands.convert",
        "ckptmap.cli.options.commands.diff",
    }
    assert sorted(unwanted & ran) == []


def test_convert_to_safetensors_starts_without_numpy_or_the_zarr_writer(tmp_path: Path) -> None:
    args = ["convert", "--old", str(FIXTURES / "ffm_v1"), "--to", "safetensors"]
    started, ran = _modules("convert_cmd", "ckptmap.convert", [*args, "--out", str(tmp_path)])
    assert (tmp_path / "model.safetensors").is_file()
    # numpy comes with the CRC32C pass over the copied bytes, in its worker thread
    assert sorted({"numpy", "ml_dtypes", "tensorstore", "rich"} & started) == []
    unwanted = {
        "tensorstore",
        "ckptmap.writers.zarr3",  # only for --to zarr3
        "ckptmap.readers.zarr_store",
        "ckptmap.writers.npz",  # only for --to npz
        "ckptmap.writers.tf_bundle",
        "ckptmap.alias",
        "ckptmap.migration",
        "google.protobuf",  # no state file is written and the index decodes without it
        "rich",  # its one line of report is plain text, written directly off a terminal
    }
    assert sorted(unwanted & ran) == []


@pytest.mark.parametrize("package", ["ckptmap.storage", "ckptmap.readers", "ckptmap.writers"])
def test_lazy_exports_are_the_submodules_objects(package: str) -> None:
    pkg = importlib.import_module(package)
    exports: dict[str, str] = pkg._EXPORTS
    # a name that is also a submodule would be shadowed by the module once it is imported
    submodules = {info.name for info in pkgutil.iter_modules(pkg.__path__)}
    assert sorted(set(exports) & submodules) == []
    assert sorted(exports) == sorted(pkg.__all__)
    for name, module in exports.items():
        sub = importlib.import_module(f"{package}.{module}")
        assert getattr(pkg, name) is getattr(sub, name), name


def test_options_export_each_commands_dataclass_from_its_own_module() -> None:
    from ckptmap.cli import options
    from ckptmap.cli.options import commands

    for package in (options, commands):
        for name in package._EXPORTS:
            assert name in package.__all__, name
            found = getattr(package, name)
            home = importlib.import_module(f"{commands.__name__}.{commands._EXPORTS[name]}")
            assert found is getattr(home, name), name
            assert found.__module__ == home.__name__, name
    assert len(commands.COMMAND_OPTIONS) == 6  # their order: tests/cli/test_options_cli.py
    for command, cls in commands.COMMAND_OPTIONS.items():
        assert cls is getattr(options, cls.__name__), command
    assert commands.COMMAND_OPTIONS["remap"] is options.RemapOptions
    assert dict(commands.COMMAND_OPTIONS)["diff"] is options.DiffOptions


def test_a_command_loads_only_its_own_options_module() -> None:
    _, ran = _modules("remap_cmd", "ckptmap.cli.options", ["check", "--help"])
    loaded = {m for m in ran if m.startswith("ckptmap.cli.options.commands.")}
    assert loaded == {"ckptmap.cli.options.commands.plan"}  # not inspect, convert or diff
