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

Example:
    >>> loc, name = open_parent("memory://demo/model.ckpt-1.index")  # doctest: +SKIP
    >>> loc.write(name, b"...")  # doctest: +SKIP
"""

from __future__ import annotations

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
