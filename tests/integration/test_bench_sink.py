"""The sink benchmark against the real stack: every figure filled, the on-disk split adds
up to the store size, and pinning the node to a core is undone afterwards."""

from __future__ import annotations

import os

import pytest

from pipeline.bench.sink import bench_sink, opensearch_process, separate_cores
from pipeline.config.settings import Settings

pytestmark = pytest.mark.integration


def test_small_sink_bench_fills_every_figure():
    result = bench_sink(Settings(), traces=300, rounds=1)
    spans = result["workload"]["spans"]
    assert result["sink"]["docs"] == spans and result["sink"]["rejected"] == 0
    assert result["raw_bulk"]["docs_per_s"] > 0 and result["sink_vs_raw"] > 0
    assert result["bytes_per_span"]["ours"] > 0
    assert result["bytes_per_span"]["default_settings"] > result["bytes_per_span"]["ours"]
    parts = result["bytes_per_span_by_structure"]
    if parts is not None:  # None when the force-merged segment is a compound file
        assert parts["stored fields"] > 0 and parts["terms"] > 0
        assert sum(parts.values()) == pytest.approx(result["bytes_per_span"]["ours"], rel=0.05)
    if len(os.sched_getaffinity(0)) >= 2 and opensearch_process(Settings()) is not None:
        assert result["separate_cores"]["sink_docs_per_s"] > 0


def test_separate_cores_restores_the_affinities():
    node = opensearch_process(Settings())
    if node is None or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs the local node and two cores")
    own, theirs = os.sched_getaffinity(0), os.sched_getaffinity(node.pid)
    with separate_cores(node) as pinned:
        assert pinned
        assert len(os.sched_getaffinity(0)) == 1
        assert len(os.sched_getaffinity(node.pid)) == 1
        assert os.sched_getaffinity(0) != os.sched_getaffinity(node.pid)
    assert os.sched_getaffinity(0) == own
    assert os.sched_getaffinity(node.pid) == theirs
