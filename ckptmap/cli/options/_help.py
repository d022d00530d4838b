"""Help text of option fields, read from ``:param name: help`` lines in docstrings.

This is the docstring convention of Monolith's ``gflags_utils``: a dataclass
documents each field with a reST field line, and that line is the option's help.
"""

from __future__ import annotations

import inspect
import re

# A ":param name: text" line (after stripping); the name as Monolith allowed it.
_PARAM = re.compile(r":param\s+([A-Za-z0-9._-]+)\s*:\s*(.*)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _own_help(cls: type) -> dict[str, str]:
    """The ``:param`` help written in ``cls``'s own docstring (not inherited)."""
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str):
        return {}
    found: dict[str, list[str]] = {}
    current: str | None = None
    param_indent = 0
    for line in inspect.cleandoc(doc).splitlines():
        text = " ".join(line.split())
        matched = _PARAM.fullmatch(text)
        if matched:
            current = matched.group(1)
            param_indent = _indent(line)
            found[current] = [matched.group(2)] if matched.group(2) else []
        elif current is not None and text and _indent(line) > param_indent:
            found[current].append(text)
        else:
            # A blank line or a line back at the field's indentation ends the help.
            current = None
    return {name: " ".join(parts) for name, parts in found.items()}


def extract_help_info(cls: type, *, nested: bool = True) -> dict[str, str]:
    """Read the help of each documented field from a class's docstring.

    A field is documented by a ``:param name: help`` line. The help may go on
    over the following lines when they are indented deeper than the ``:param``
    line; the lines are joined with single spaces. A blank line, or a line at
    the ``:param`` line's indentation or less, ends it.

    Args:
        cls: the class (usually an options dataclass) to read.
        nested: also read the docstrings of the base classes, as Monolith's
            ``is_nested`` did; a class's own help wins over its bases'.

    Returns:
        Field name to help text, for the documented fields only.

    Example:
        >>> class C:
        ...     '''Options.
        ...
        ...     :param shards: number of data files
        ...         to write.
        ...     '''
        >>> extract_help_info(C)
        {'shards': 'number of data files to write.'}
    """
    classes = reversed(cls.__mro__) if nested else (cls,)
    help_info: dict[str, str] = {}
    for klass in classes:
        help_info.update(_own_help(klass))
    return help_info
