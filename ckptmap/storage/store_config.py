"""How ckptmap reaches object stores: endpoints, region, credentials, retries (``StoreConfig``).

Users configure S3 and GCS the way their other tools are configured, and
ckptmap maps that onto tensorstore's drivers (docs/remote.md lists it all):

* S3: the endpoint from ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``
  (the AWS SDKs' convention; ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``
  ignores both), the region from ``AWS_REGION``, else ``AWS_DEFAULT_REGION``,
  the profile from ``AWS_PROFILE``. Credentials: ``AWS_ACCESS_KEY_ID`` (with
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``) when set, else the profile's
  entry in the shared credentials file when a profile is named, else the AWS
  default chain (credentials file, then instance metadata).
* GCS: an emulator from ``STORAGE_EMULATOR_HOST`` (the Google client
  libraries' convention; ``host:port`` or a URL). tensorstore reads its GCS
  endpoint from ``TENSORSTORE_GCS_HTTP_URL`` when a store is opened, so
  :func:`open_kvstore` sets that variable (in this one place) just before it
  opens a ``gs://`` store; like the Google client libraries, it sends no
  real Google credentials to an emulator (a placeholder token instead).
* Both: :class:`~ckptmap.storage.retry.RetryPolicy` (``CKPTMAP_STORAGE_RETRIES``,
  ``CKPTMAP_STORAGE_RETRY_DELAY``, ``CKPTMAP_STORAGE_RETRY_MAX_DELAY``).

A config file's ``[storage]``, ``[storage.s3]`` and ``[storage.gcs]`` tables
give the same settings; an environment variable wins over the file (the rule
of every ckptmap option). The CLI reads the file and hands the result to
:func:`configure`; the core never reads a config file. Without
:func:`configure` the environment alone applies (:func:`current`).

Example:
    >>> config = StoreConfig.from_environment({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    >>> store_spec("s3://bucket/run/", config)["endpoint"]
    'http://127.0.0.1:9000'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ckptmap.errors import UsageError
from ckptmap.storage.retry import RetryPolicy
from ckptmap.storage.store_env import (
    ACCESS_KEY,
    GCS_EMULATOR,
    IGNORE_ENDPOINTS,
    RETRY_NUMBERS,
    S3_ENDPOINTS,
    S3_PROFILE,
    S3_REGIONS,
)
from ckptmap.storage.urls import kvstore_spec

if TYPE_CHECKING:
    import tensorstore

__all__ = [
    "GcsSettings",
    "S3Settings",
    "StoreConfig",
    "configure",
    "current",
    "open_kvstore",
    "store_context",
    "store_spec",
    "use_gcs_endpoint",
]

GCS_URL_ENV = "TENSORSTORE_GCS_HTTP_URL"  # read by tensorstore's gcs driver at open
GCS_TEST_TOKEN_ENV = "GOOGLE_AUTH_TOKEN_FOR_TESTING"  # tensorstore: a fixed bearer token
EMULATOR_TOKEN = "ckptmap-emulator"  # what an emulator gets instead of real credentials
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where and how ``s3://`` URLs are reached.

    Attributes:
        endpoint: an S3-compatible endpoint (``http://127.0.0.1:9000``); ``None``: AWS.
        region: the bucket's region; ``None``: tensorstore asks the bucket.
        profile: the shared-credentials profile to use.
    """

    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class GcsSettings:
    """Where ``gs://`` URLs are reached.

    Attributes:
        endpoint: a GCS emulator or compatible server (``http://127.0.0.1:4443``);
            ``None``: Google Cloud Storage.
    """

    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Everything about reaching object stores, as plain values.

    Attributes:
        s3: ``s3://`` settings.
        gcs: ``gs://`` settings.
        retries: how failing requests are retried (all network stores).
        s3_environment_credentials: ``AWS_ACCESS_KEY_ID`` is set: S3 requests
            are signed with the ``AWS_*`` key variables.
    """

    s3: S3Settings = field(default_factory=S3Settings)
    gcs: GcsSettings = field(default_factory=GcsSettings)
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    s3_environment_credentials: bool = False

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, base: StoreConfig | None = None
    ) -> StoreConfig:
        """The settings of the environment, over ``base`` (a config file's, else the defaults).

        Raises:
            UsageError: for a malformed endpoint or retry variable (naming it).
        """
        env = os.environ if environ is None else environ
        config = base or cls()

        def get(*names: str) -> tuple[str, str] | None:
            for name in names:
                if env.get(name):
                    return name, env[name]
            return None

        s3 = config.s3
        endpoints: tuple[str, ...] = S3_ENDPOINTS
        if env.get(IGNORE_ENDPOINTS, "").lower() in _TRUE:
            endpoints = ()
        if (found := get(*endpoints)) is not None:
            s3 = replace(s3, endpoint=endpoint_url(found[1], found[0]))
        if (found := get(*S3_REGIONS)) is not None:
            s3 = replace(s3, region=found[1])
        if (found := get(S3_PROFILE)) is not None:
            s3 = replace(s3, profile=found[1])
        gcs = config.gcs
        if (found := get(GCS_EMULATOR)) is not None:
            gcs = replace(gcs, endpoint=endpoint_url(found[1], found[0]))
        retries = config.retries
        for name, member, kind in RETRY_NUMBERS:
            if (found := get(name)) is None:
                continue
            try:
                value: Any = kind(found[1])
                retries = replace(retries, **{member: value})
            except (ValueError, UsageError):
                raise UsageError(
                    f"{name}={found[1]}: expected a number, 0 or more, and retry_delay <= "
                    "retry_max_delay (fix or unset the variable)"
                ) from None
        return cls(s3, gcs, retries, bool(env.get(ACCESS_KEY)))

    def s3_members(self) -> dict[str, Any]:
        """The members an ``s3`` kvstore spec gets from these settings."""
        members: dict[str, Any] = {}
        if self.s3.endpoint:
            members["endpoint"] = self.s3.endpoint
        if self.s3.region:
            members["aws_region"] = self.s3.region
        elif self.s3.endpoint:
            members["aws_region"] = "us-east-1"  # what S3-compatible servers default to
        if self.s3_environment_credentials:
            members["aws_credentials"] = {"type": "environment"}
        elif self.s3.profile:
            members["aws_credentials"] = {"type": "profile", "profile": self.s3.profile}
        return members


def endpoint_url(text: str, where: str) -> str:
    """An endpoint as a URL without a trailing ``/``: ``host:port`` gets ``http://``.

    Raises:
        UsageError: for something that is not ``http(s)://host[:port]`` (naming ``where``).
    """
    url = text.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{where}={text}: expected an endpoint like http://HOST:PORT or HOST:PORT")
    return url


_CONFIG: StoreConfig | None = None
_LOCK = threading.Lock()
_BASE: tensorstore.Context | None = None
_CONTEXTS: dict[RetryPolicy, tensorstore.Context] = {}


def configure(config: StoreConfig | None) -> None:
    """Use ``config`` for every store opened from now on (``None``: the environment's)."""
    global _CONFIG  # noqa: PLW0603 -- the process's store settings, set by the CLI
    _CONFIG = config


def current() -> StoreConfig:
    """The settings in force: those given to :func:`configure`, else the environment's."""
    return _CONFIG if _CONFIG is not None else StoreConfig.from_environment()


def store_spec(url: str, config: StoreConfig | None = None) -> dict[str, Any]:
    """The kvstore spec of a folder URL with the store settings applied (``s3://`` endpoint,
    region, credentials); see :func:`~ckptmap.storage.urls.kvstore_spec` for the errors."""
    spec = kvstore_spec(url)
    if spec["driver"] == "s3":
        spec.update((config or current()).s3_members())
    return spec


def store_context(config: StoreConfig | None = None) -> tensorstore.Context:
    """The tensorstore context for ``config``'s retry policy.

    Every such context is a child of one process-wide context, so a
    ``memory://`` store lives as long as the process whatever the policy.
    """
    global _BASE  # noqa: PLW0603 -- a lazily created process-wide resource
    policy = (config or current()).retries
    with _LOCK:
        import tensorstore as ts

        if _BASE is None:
            _BASE = ts.Context()
        context = _CONTEXTS.get(policy)
        if context is None:
            spec = ts.Context.Spec(policy.context_json())
            context = _CONTEXTS[policy] = ts.Context(spec, parent=_BASE)
        return context


def open_kvstore(spec: dict[str, Any], config: StoreConfig | None = None) -> tensorstore.KvStore:
    """Open the kvstore ``spec`` (from :func:`store_spec`) with the store settings in force.

    A ``gcs`` spec is opened with ``TENSORSTORE_GCS_HTTP_URL`` set to the
    configured endpoint (and no real Google credentials; see the module
    docstring); without one, the variable is left as the user set it.

    Raises:
        ValueError: tensorstore's error (translate it with
            :func:`~ckptmap.storage.kvstore.translate_error`).
    """
    import tensorstore as ts

    config = config or current()
    if spec.get("driver") == "gcs":
        use_gcs_endpoint(config)
    return ts.KvStore.open(spec, context=store_context(config)).result()


def use_gcs_endpoint(config: StoreConfig | None = None) -> None:
    """Point tensorstore's ``gcs`` driver at the configured endpoint (before opening a
    ``gs://`` store; nothing without one). The one place ckptmap sets the variables."""
    config = config or current()
    if config.gcs.endpoint:
        os.environ[GCS_URL_ENV] = config.gcs.endpoint
        os.environ.setdefault(GCS_TEST_TOKEN_ENV, EMULATOR_TOKEN)
