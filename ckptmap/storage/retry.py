"""Retrying transient store failures: the policy, and the words for a request that kept failing.

tensorstore's ``http``, ``s3`` and ``gcs`` drivers already retry a request
that fails transiently (HTTP 5xx and 429, a dropped connection, a reply cut
short, a timeout) with exponential backoff: each retry waits a random time up
to twice the last wait, starting at ``initial_delay`` and capped at
``max_delay``. ckptmap does not retry on top of that (a request would then be
tried ``(n+1)^2`` times); it sets tensorstore's policy
(:meth:`RetryPolicy.context_json`, the ``*_request_retries`` context resources)
and, when every attempt failed, says so in one line naming the file and the
last status (:func:`retries_exhausted`).

Example:
    >>> policy = RetryPolicy(max_retries=2, initial_delay=0.1, max_delay=1.0)
    >>> policy.context_json()["s3_request_retries"]
    {'max_retries': 2, 'initial_delay': '0.1s', 'max_delay': '1.0s'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ckptmap.errors import UsageError

__all__ = ["RETRY_RESOURCES", "RetryPolicy", "retries_exhausted"]

RETRY_RESOURCES = ("http_request_retries", "s3_request_retries", "gcs_request_retries")
"""The tensorstore context resources that hold each driver's retry policy."""

_EXHAUSTED = re.compile(r"^All (?P<count>\d+) retry attempts failed: (?P<last>.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing request to a store is tried again.

    Attributes:
        max_retries: retries after the first attempt (0: fail at once).
        initial_delay: seconds before the first retry.
        max_delay: the longest wait between two attempts, in seconds.
    """

    max_retries: int = 4
    initial_delay: float = 0.2
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise UsageError(f"retries must be an integer, not {self.max_retries!r}")
        if self.max_retries < 0:
            raise UsageError(f"retries must be 0 or more, not {self.max_retries}")
        if not 0 <= self.initial_delay <= self.max_delay:
            raise UsageError(
                f"retry delays must satisfy 0 <= retry_delay <= retry_max_delay "
                f"(got {self.initial_delay} and {self.max_delay})"
            )

    def context_json(self) -> dict[str, Any]:
        """The tensorstore context entries that give every network driver this policy."""
        policy = {
            "max_retries": self.max_retries,
            "initial_delay": f"{self.initial_delay}s",
            "max_delay": f"{self.max_delay}s",
        }
        return {resource: dict(policy) for resource in RETRY_RESOURCES}


def retries_exhausted(detail: str) -> str | None:
    """The words for a request that failed on every attempt, or ``None`` if it did not.

    ``detail`` is tensorstore's message without its status code, e.g.
    ``All 4 retry attempts failed: Service Unavailable [HTTP code 503]``.

    Example:
        >>> retries_exhausted("All 4 retry attempts failed: Service Unavailable [HTTP code 503]")
        'failed 5 times (4 retries); last: Service Unavailable [HTTP code 503]'
    """
    match = _EXHAUSTED.match(detail)
    if match is None:
        return None
    retries = int(match["count"])
    return f"failed {retries + 1} times ({retries} retries); last: {match['last'].strip()}"
