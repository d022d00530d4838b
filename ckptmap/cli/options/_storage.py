"""The config file's ``[storage]`` tables: how object stores are reached (docs/remote.md).

::

    [storage]             # every network store
    retries = 4           # retries after the first attempt of a request
    retry_delay = 0.2     # seconds before the first retry (doubling, randomised)
    retry_max_delay = 2.0 # the longest wait between two attempts

    [storage.s3]
    endpoint = "http://127.0.0.1:9000"   # an S3-compatible server (MinIO, moto, Ceph)
    region = "us-east-1"
    profile = "ci"                       # a profile of ~/.aws/credentials

    [storage.gcs]
    endpoint = "http://127.0.0.1:4443"   # a GCS emulator

The environment wins over the file (``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``,
``STORAGE_EMULATOR_HOST``, ``CKPTMAP_STORAGE_RETRIES``, ...: see
:mod:`ckptmap.storage.store_config`), as for every ckptmap option.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ckptmap.cli.options._config import ConfigFile
from ckptmap.errors import UsageError
from ckptmap.storage.store_env import configures_stores

if TYPE_CHECKING:  # loaded only when something configures a store
    from ckptmap.storage.store_config import StoreConfig

__all__ = ["STORAGE_TABLE", "storage_config"]

STORAGE_TABLE = "storage"
_NUMBERS = {
    "retries": "max_retries",
    "retry_delay": "initial_delay",
    "retry_max_delay": "max_delay",
}
_TABLES = {"s3": ("endpoint", "region", "profile"), "gcs": ("endpoint",)}


def _unknown(config: ConfigFile, keys: tuple[str, ...], valid: list[str]) -> UsageError:
    import difflib  # only for the message of a mistyped key

    close = difflib.get_close_matches(keys[-1], valid, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(valid)}"
    table = ".".join(config.prefix + (STORAGE_TABLE, *keys[:-1]))
    return UsageError(f"{config.where(STORAGE_TABLE, *keys)}: [{table}] unknown key '{keys[-1]}' "
                      f"({hint})")  # fmt: skip


def _text(config: ConfigFile, keys: tuple[str, ...], value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(
            f"{config.where(STORAGE_TABLE, *keys)}: storage.{'.'.join(keys)}: "
            f"expected a non-empty string, got {value!r}"
        )
    if keys[-1] != "endpoint":
        return value
    from ckptmap.storage.store_config import endpoint_url

    try:
        return endpoint_url(value, f"storage.{'.'.join(keys)}")
    except UsageError as err:
        raise UsageError(f"{config.where(STORAGE_TABLE, *keys)}: {err}") from None


def storage_config(config: ConfigFile | None, environ: Mapping[str, str]) -> StoreConfig | None:
    """The store settings of the config file's tables, under the environment's.

    ``None`` when neither sets any: the defaults apply, and the store settings
    are not loaded.

    Raises:
        UsageError: an unknown key (with the nearest valid one) or a value of
            the wrong type, naming the file and line; a malformed variable.
    """
    table = {} if config is None else config.table.get(STORAGE_TABLE, {})
    if (config is None or not table) and not configures_stores(environ):
        return None
    from ckptmap.storage.store_config import StoreConfig

    base = None if config is None or not table else _from_file(config, table)
    return StoreConfig.from_environment(environ, base=base)


def _from_file(config: ConfigFile, table: Any) -> StoreConfig:
    """The store settings the config file's ``[storage]`` tables give."""
    from ckptmap.storage.retry import RetryPolicy
    from ckptmap.storage.store_config import GcsSettings, S3Settings, StoreConfig

    if not isinstance(table, Mapping):
        raise UsageError(f"{config.where(STORAGE_TABLE)}: 'storage' must be a table ([storage])")
    numbers: dict[str, Any] = {}
    tables: dict[str, dict[str, str]] = {name: {} for name in _TABLES}
    for key, value in table.items():
        if key in _NUMBERS:
            kind = int if key == "retries" else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
                expected = "a whole number" if key == "retries" else "a number of seconds"
                raise UsageError(
                    f"{config.where(STORAGE_TABLE, key)}: storage.{key}: expected {expected}, "
                    f"0 or more, got {value!r}"
                )
            numbers[_NUMBERS[key]] = value
        elif key in _TABLES:
            if not isinstance(value, Mapping):
                raise UsageError(
                    f"{config.where(STORAGE_TABLE, key)}: storage.{key} must be a table "
                    f"([storage.{key}])"
                )
            for member, text in value.items():
                if member not in _TABLES[key]:
                    raise _unknown(config, (key, member), list(_TABLES[key]))
                tables[key][member] = _text(config, (key, member), text)
        else:
            raise _unknown(config, (key,), [*_NUMBERS, *_TABLES])
    try:
        retries = RetryPolicy(**numbers)
    except UsageError as err:
        raise UsageError(f"{config.where(STORAGE_TABLE)}: [storage] {err}") from None
    return StoreConfig(S3Settings(**tables["s3"]), GcsSettings(**tables["gcs"]), retries)
