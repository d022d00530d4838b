"""Names and URLs: telling a URL from a path, and a URL's tensorstore kvstore spec.

A URL that went through :class:`pathlib.Path` loses a slash
(``Path("http://host/a")`` is ``http:/host/a``); :func:`location_text` puts it
back, so a URL given as a ``Path`` (as click options give it) still works.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ckptmap.errors import UnsupportedInputError, UsageError

__all__ = [
    "SUPPORTED_SCHEMES",
    "check_scheme",
    "is_url",
    "kvstore_spec",
    "local_input",
    "location_text",
    "split_name",
]

SUPPORTED_SCHEMES = ("file", "memory", "http", "https", "gs", "s3")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):(?P<rest>.*)$", re.DOTALL)
_SUPPORTED = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)


def location_text(path: str | os.PathLike[str]) -> str:
    """The text of a path or URL, with a URL's ``//`` restored after :class:`~pathlib.Path`.

    ``Path("http://h/a")`` prints as ``http:/h/a`` and ``Path("memory://")`` as
    ``memory:``; both come back as URLs. Anything else is returned as it is.
    """
    text = os.fspath(path)
    match = _SCHEME.match(text)
    if match is None or text.startswith(f"{match['scheme']}://"):
        return text
    scheme, rest = match["scheme"], match["rest"]
    if rest.startswith("/"):
        return f"{scheme}://{'/' if scheme.lower() == 'file' else ''}{rest.lstrip('/')}"
    if not rest and scheme.lower() in SUPPORTED_SCHEMES:
        return f"{scheme}://"
    return text


def local_input(path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """An input named by a ``file://`` URL as the local path it names; anything else as it is.

    Local inputs are opened by ckptmap itself, with the model folder's checks
    (:mod:`ckptmap.storage.input_files`); through tensorstore's ``file`` driver
    they would escape them.

    Raises:
        UsageError: for a ``file://`` URL naming a host.
    """
    text = location_text(path)
    if not text.lower().startswith("file://"):
        return path
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise UsageError(f"{text}: file:// URLs name a local file (write file:///ABS/PATH)")
    return unquote(parts.path) or "/"


def is_url(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a URL (``scheme://...``), supported or not, rather than a local path.

    A scheme must have two letters or more, so ``C:/data`` stays a path.
    """
    text = location_text(path)
    match = _SCHEME.match(text)
    return match is not None and match["rest"].startswith("//")


def kvstore_spec(url: str) -> dict[str, Any]:
    """The tensorstore kvstore spec (a plain dict) of a folder URL.

    Args:
        url: ``file:///abs/dir/``, ``memory://name/``, ``http(s)://host/dir/``,
            ``gs://bucket/dir/`` or ``s3://bucket/dir/``.

    Raises:
        UnsupportedInputError: for another scheme (naming the supported ones).
        UsageError: for a URL without a host or bucket.

    Example:
        >>> kvstore_spec("gs://bucket/run1/")
        {'driver': 'gcs', 'bucket': 'bucket', 'path': 'run1/'}
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    path = unquote(parts.path)
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise UsageError(f"{url}: the URL names no host (write {scheme}://HOST/PATH)")
        spec: dict[str, Any] = {"driver": "http", "base_url": f"{scheme}://{parts.netloc}"}
        spec["path"] = path or "/"
        if parts.query:
            spec["base_url"] += f"?{parts.query}"
        return spec
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"{url}: file:// URLs name a local file (write file:///ABS/PATH)")
        return {"driver": "file", "path": path}
    if scheme == "memory":
        return {"driver": "memory", "path": (parts.netloc + path).lstrip("/")}
    if scheme in ("gs", "s3"):
        if not parts.netloc:
            raise UsageError(f"{url}: the URL names no bucket (write {scheme}://BUCKET/PATH)")
        driver = "gcs" if scheme == "gs" else "s3"
        return {"driver": driver, "bucket": parts.netloc, "path": path.lstrip("/")}
    check_scheme(url)
    raise AssertionError(url)  # every supported scheme is handled above


def split_name(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Split a path or URL into its folder and its last name.

    ``"http://h/a/c.index"`` gives ``("http://h/a/", "c.index")``.

    A URL's folder keeps its trailing ``/``; a name ending in ``/`` has an empty last name.
    """
    text = location_text(path)
    if is_url(text):
        head, _, tail = text.rpartition("/")
        return head + "/", tail
    local = Path(text)
    if text.endswith(("/", os.sep)):
        return str(local), ""
    return str(local.parent), local.name


def check_scheme(url: str) -> None:
    """Refuse a URL whose scheme tensorstore's kvstore cannot open, naming the supported ones.

    Raises:
        UnsupportedInputError: for another scheme (``ftp://``).
    """
    scheme = url.split(":", 1)[0]
    if scheme.lower() not in SUPPORTED_SCHEMES:
        raise UnsupportedInputError(
            f"{url}: unknown URL scheme {scheme + '://'!r} (supported: {_SUPPORTED}, "
            "or a local path)"
        )
