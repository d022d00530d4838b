"""The environment variables that configure object stores, known without loading their settings.

:mod:`ckptmap.storage.store_config` reads these variables and says what each
one does; the names live here so that the CLI can ask
:func:`configures_stores` first: a command run with none of them set, and no
``[storage]`` table in its config file, does not load the store settings at
all (the defaults then apply).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ACCESS_KEY",
    "GCS_EMULATOR",
    "IGNORE_ENDPOINTS",
    "RETRY_NUMBERS",
    "S3_ENDPOINTS",
    "S3_PROFILE",
    "S3_REGIONS",
    "STORE_VARIABLES",
    "configures_stores",
]

S3_ENDPOINTS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # the first one set wins
IGNORE_ENDPOINTS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
S3_REGIONS = ("AWS_REGION", "AWS_DEFAULT_REGION")
S3_PROFILE = "AWS_PROFILE"
ACCESS_KEY = "AWS_ACCESS_KEY_ID"  # set: S3 requests are signed with the AWS_* key variables
GCS_EMULATOR = "STORAGE_EMULATOR_HOST"
# each variable of the retry policy, the RetryPolicy field it sets, and its type
RETRY_NUMBERS: tuple[tuple[str, str, type[int] | type[float]], ...] = (
    ("CKPTMAP_STORAGE_RETRIES", "max_retries", int),
    ("CKPTMAP_STORAGE_RETRY_DELAY", "initial_delay", float),
    ("CKPTMAP_STORAGE_RETRY_MAX_DELAY", "max_delay", float),
)
STORE_VARIABLES = frozenset(
    {
        *S3_ENDPOINTS,
        IGNORE_ENDPOINTS,
        *S3_REGIONS,
        S3_PROFILE,
        ACCESS_KEY,
        GCS_EMULATOR,
        *(name for name, _, _ in RETRY_NUMBERS),
    }
)


def configures_stores(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` sets any of :data:`STORE_VARIABLES` (an empty one counts as unset).

    >>> configures_stores({"AWS_REGION": "eu-west-1"}), configures_stores({"HOME": "/root"})
    (True, False)
    """
    return any(environ.get(name) for name in STORE_VARIABLES)
