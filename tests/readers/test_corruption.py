"""Damaged inputs: copies of real fixtures, changed in one place each.

Every failure mode asserts the exception type and the exact message, through
the library and through ``ckptmap inspect`` (one ``error:`` line, exit 3).
A hypothesis test then mutates real indexes at random: opening, listing and
reading either work or raise a ``CkptmapError``, never anything else.
"""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from corruption_cases import CASES, Case, damaged_copy
from helpers import FIXTURES, fix_block_crcs, table_blocks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptmap.cli import main
from ckptmap.errors import CkptmapError
from ckptmap.readers import open_checkpoint


def _act(action: str, folder: Path) -> None:
    """Open the damaged copy and go as far as ``action`` says."""
    with open_checkpoint(folder) as ckpt:
        if action == "list":
            ckpt.specs()
        if action in ("read", "verify"):
            for key in ckpt:
                ckpt.read(key)
        if action == "verify":
            ckpt.verify()


@pytest.mark.parametrize("case", CASES)
def test_library_error(case: Case, tmp_path: Path) -> None:
    folder = damaged_copy(case, tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(case.error) as info:
            _act(case.action, folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == case.message(folder)
    assert peak < 64 * 1024 * 1024  # a hostile entry never leads to a large allocation


@pytest.mark.parametrize("case", CASES)
def test_cli_error(case: Case, tmp_path: Path) -> None:
    folder = damaged_copy(case, tmp_path)
    result = CliRunner().invoke(
        main, ["inspect", str(folder), *case.cli_args], catch_exceptions=False
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == f"error: {case.message(folder)}\n"


# -- random damage -----------------------------------------------------------------


FUZZ_FIXTURES = ["dtype_zoo/zoo", "ffm_v1_ps2/model.ckpt-100", "tf2_module/ckpt-1"]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    for name in ("dtype_zoo", "ffm_v1_ps2", "tf2_module"):
        shutil.copytree(FIXTURES / name, root / name)
    return root


def _exercise(prefix: Path) -> None:
    """Open, list, read and verify; only CkptmapError may come out."""
    try:
        with open_checkpoint(prefix) as ckpt:
            ckpt.specs()
            for key in ckpt:
                ckpt.read(key, verify=True)
            ckpt.verify()
    except CkptmapError:
        pass
    except Exception as err:  # noqa: BLE001 - anything else is a bug the test must show
        pytest.fail(f"{type(err).__name__} escaped: {err}")


@pytest.mark.parametrize("name", FUZZ_FIXTURES)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_index_reads_or_raises_ckptmap_error(
    fuzz_dir: Path, name: str, data: st.DataObject
) -> None:
    original = (FIXTURES / f"{name}.index").read_bytes()
    mutated = bytearray(original)
    positions = st.integers(min_value=0, max_value=len(original) - 1)
    changes = st.lists(st.tuples(positions, st.integers(0, 255)), min_size=1, max_size=6)
    for pos, byte in data.draw(changes):
        mutated[pos] = byte
    if data.draw(st.booleans()):  # get past the block CRCs, into entries and data
        fix_block_crcs(mutated, table_blocks(FIXTURES / f"{name}.index"))
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(min_value=0, max_value=len(mutated)))]
    index = fuzz_dir / f"{name}.index"
    index.write_bytes(bytes(mutated))
    try:
        _exercise(fuzz_dir / name)
    finally:
        index.write_bytes(original)
