"""The one check two commands' options share: a global step is 0 or more."""

from __future__ import annotations

from ckptmap.errors import UsageError

__all__ = ["check_step"]


def check_step(step: int | None) -> None:
    """Refuse a negative ``step`` (``None``: the latest checkpoint)."""
    if step is not None and step < 0:
        raise UsageError(f"step {step} is negative; a global step is 0 or more")
