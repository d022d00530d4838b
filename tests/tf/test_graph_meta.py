"""get_meta: one metadata dict per graph, kept in a graph collection."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.tf


def test_get_meta_is_created_once_per_graph(tf: Any) -> None:
    from ckptmap.tf import GRAPH_META_COLLECTION, get_meta

    calls: list[int] = []

    def factory() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    with tf.Graph().as_default() as first:
        meta = get_meta("counters", factory)
        assert get_meta("counters", factory) is meta
        other = get_meta("other", list)
        assert other == []
        assert first.get_collection(GRAPH_META_COLLECTION) == [{"counters": meta, "other": other}]
    with tf.Graph().as_default() as second:
        fresh = get_meta("counters", factory)
        assert fresh is not meta
        assert fresh == {"n": 2}
    assert get_meta("counters", factory, graph=first) is meta
    assert get_meta("counters", factory, graph=second) is fresh
    assert len(calls) == 2


def test_get_meta_works_on_a_finalized_graph(tf: Any) -> None:
    from ckptmap.tf import get_meta

    with tf.Graph().as_default() as graph:
        graph.finalize()
        meta = get_meta("late", dict)
        assert get_meta("late", dict) is meta
