"""The store settings are loaded only when the environment or the config file sets them."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckptmap.cli import main
from ckptmap.cli.options import InspectOptions, resolve_options
from ckptmap.storage.store_config import StoreConfig, current
from ckptmap.storage.store_env import STORE_VARIABLES, configures_stores

FIXTURE = str(Path(__file__).resolve().parents[2] / "fixtures" / "ffm_v1")


class _Watched(Mapping[str, str]):
    """An environment that records the names it is asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_every_variable_the_store_settings_read_is_one_that_configures_stores() -> None:
    environ = _Watched()
    assert StoreConfig.from_environment(environ) == StoreConfig()
    assert len(environ.asked) >= 10  # endpoints, region, profile, emulator, retries, keys
    for name in sorted(environ.asked):
        assert configures_stores({name: "x"}), name
        assert not configures_stores({name: ""}), name  # an empty variable counts as unset
    assert environ.asked == STORE_VARIABLES
    unrelated = {"HOME": "/root", "CKPTMAP_SHARDS": "2", "AWS_CA_BUNDLE": "/etc/ssl/ca.pem"}
    assert not configures_stores(unrelated)


def test_without_store_variables_or_table_nothing_is_resolved() -> None:
    resolved = resolve_options(InspectOptions, "inspect", environ={"HOME": "/"}, discover=False)
    assert resolved.storage is None
    with_region = resolve_options(
        InspectOptions, "inspect", environ={"AWS_REGION": "eu-west-1"}, discover=False
    )
    assert with_region.storage is not None
    assert with_region.storage.s3.region == "eu-west-1"


def test_a_table_alone_is_resolved(tmp_path: Path) -> None:
    config = tmp_path / "ckptmap.toml"
    config.write_text("[storage]\nretries = 1\n", encoding="utf-8")
    resolved = resolve_options(InspectOptions, "inspect", config=config, environ={})
    assert resolved.storage is not None
    assert resolved.storage.retries.max_retries == 1


def test_a_bad_store_variable_still_fails_a_local_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKPTMAP_STORAGE_RETRIES", "many")
    result = CliRunner().invoke(main, ["inspect", FIXTURE, "--json"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: CKPTMAP_STORAGE_RETRIES=many: expected a number")


def test_a_later_run_without_settings_drops_an_earlier_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In one process (the library's users, these tests), one command's settings do not leak."""
    for name in [n for n in os.environ if configures_stores({n: "x"})]:
        monkeypatch.delenv(name)
    config = tmp_path / "ckptmap.toml"
    config.write_text("[storage]\nretries = 1\n", encoding="utf-8")
    runner = CliRunner()
    assert (
        runner.invoke(main, ["inspect", FIXTURE, "--json", "--config", str(config)]).exit_code == 0
    )
    assert current().retries.max_retries == 1
    monkeypatch.chdir(tmp_path.parent)  # no config file found from here
    assert runner.invoke(main, ["inspect", FIXTURE, "--json"]).exit_code == 0
    assert current() == StoreConfig()
