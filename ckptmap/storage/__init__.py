"""Where checkpoint files live: a local folder or a URL (the storage seam).

A *location* is a folder of named files ("keys"): :class:`LocalLocation` for
plain OS files (the fast path: memory maps and kernel copies stay with the
readers and writers that use them) and :class:`KvLocation` for a URL that
tensorstore's kvstore drivers understand (``file://``, ``memory://``,
``http(s)://``, ``gs://``, ``s3://``).

The package:

* :mod:`~ckptmap.storage.urls`: URL or path, a URL's kvstore spec, folder and name;
* :mod:`~ckptmap.storage.location`: the :class:`Location` interface, :func:`open_location`;
* :mod:`~ckptmap.storage.local`: :class:`LocalLocation`;
* :mod:`~ckptmap.storage.kvstore`: :class:`KvLocation` (tensorstore, imported on first use);
* :mod:`~ckptmap.storage.io`: counting remote bytes (:func:`measure_io`);
* :mod:`~ckptmap.storage.staging`: the names readers skip (commit staging folders).

How an output is committed (staging folder, commit order, locks) is the
writers' business: :mod:`ckptmap.writers.commit`.

Names are imported from their submodules on first use, so ``from ckptmap.storage
import is_url`` loads only :mod:`~ckptmap.storage.urls`.

Example:
    >>> loc, name = open_parent("memory://demo/model.ckpt-1.index")  # doctest: +SKIP
    >>> loc.write(name, b"...")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckptmap._lazy import export

_EXPORTS = {
    "IoCounter": "io",
    "measure_io": "io",
    "KvLocation": "kvstore",
    "translate_error": "kvstore",
    "LocalLocation": "local",
    "Location": "location",
    "open_location": "location",
    "open_parent": "location",
    "STAGING_PREFIX": "staging",
    "is_staging_name": "staging",
    "SUPPORTED_SCHEMES": "urls",
    "check_scheme": "urls",
    "is_url": "urls",
    "kvstore_spec": "urls",
    "location_text": "urls",
    "split_name": "urls",
}

if TYPE_CHECKING:
    from ckptmap.storage.io import IoCounter, measure_io
    from ckptmap.storage.kvstore import KvLocation, translate_error
    from ckptmap.storage.local import LocalLocation
    from ckptmap.storage.location import Location, open_location, open_parent
    from ckptmap.storage.staging import STAGING_PREFIX, is_staging_name
    from ckptmap.storage.urls import (
        SUPPORTED_SCHEMES,
        check_scheme,
        is_url,
        kvstore_spec,
        location_text,
        split_name,
    )


def __getattr__(name: str) -> Any:  # the submodules are imported on first use
    return export(__name__, _EXPORTS, name)


__all__ = [
    "STAGING_PREFIX",
    "SUPPORTED_SCHEMES",
    "IoCounter",
    "KvLocation",
    "LocalLocation",
    "Location",
    "check_scheme",
    "is_staging_name",
    "is_url",
    "kvstore_spec",
    "location_text",
    "measure_io",
    "open_location",
    "open_parent",
    "split_name",
    "translate_error",
]
