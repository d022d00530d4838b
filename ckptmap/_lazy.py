"""Package exports imported on first use (PEP 562), so importing a package costs nothing.

A package ``__init__`` lists what it re-exports and from which submodule, and
defines ``__getattr__`` with :func:`export`; ``from ckptmap.storage import
is_url`` then imports only ``ckptmap.storage.urls``. The names are also
imported under ``TYPE_CHECKING`` so type checkers and readers see them.

An exported name must not also be a submodule's name (``ckptmap.migration``
exports the function ``execute`` from ``migration/execute.py``, so it stays
eager): importing the submodule binds the module to that name on the package,
and ``__getattr__`` would no longer be asked.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["export"]


def export(package: str, exports: Mapping[str, str], name: str) -> Any:
    """The attribute ``name`` of ``package``, imported from the submodule ``exports`` names.

    The value is stored on the package, so the next access is a plain lookup.

    Raises:
        AttributeError: if ``name`` is not one of ``exports``.
    """
    module = exports.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{module}"), name)
    setattr(sys.modules[package], name, value)
    return value
