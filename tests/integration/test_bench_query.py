"""The query benchmark against the real stack: a small run fills every figure and leaves
none of its indices behind."""

from __future__ import annotations

import math

import pytest
from opensearchpy import OpenSearch

from pipeline.bench.query import bench_query
from pipeline.bench.report import summary_rows
from pipeline.config.settings import Settings

pytestmark = pytest.mark.integration


def test_small_query_bench_fills_every_figure(stack: Settings, opensearch: OpenSearch, tmp_path):
    result = bench_query(stack, tmp_path, traces=200, requests=5)
    assert result["workload"]["traces"] == 200
    for key in ("trace_by_id", "search", "search_tag_duration"):
        figures = result[key]
        assert all(figures[name] > 0 for name in ("p50_ms", "p99_ms", "bare_p50_ms"))
        assert not math.isnan(figures["ratio_p50"])
    assert [row[0] for row in summary_rows({"query": result})] == ["query"] * 3
    leftovers = f"{result['store_prefix']}*"
    assert not opensearch.indices.get(index=leftovers, ignore_unavailable=True)
