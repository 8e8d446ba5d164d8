"""The query benchmark against the real stack: a small run fills every figure (ours
against bare, services page, SPM, RBAC on against off) and leaves none of its indices
(spans, span metrics) or templates behind."""

from __future__ import annotations

import math

import pytest
from opensearchpy import OpenSearch

from pipeline.bench.query import KINDS, bench_query
from pipeline.bench.query_store import half_glob
from pipeline.bench.report import summary_rows
from pipeline.config.settings import Settings

pytestmark = pytest.mark.integration


def test_small_query_bench_fills_every_figure(stack: Settings, opensearch: OpenSearch, tmp_path):
    result = bench_query(stack, tmp_path, traces=200, requests=5)
    workload = result["workload"]
    assert workload["traces"] == 200
    assert workload["spans"] > 1_000  # the estate's traces average ~11 spans
    assert workload["services"] > 10 and workload["crossing_traces"] > 0
    assert workload["metric_documents"] > workload["red_documents"] > 0
    for kind in KINDS:
        figures, rbac = result[kind], result["rbac"][kind]
        assert "error" not in figures and "error" not in rbac, (kind, figures, rbac)
        for side in ("", "bare_"):
            assert all(figures[f"{side}p{q}_ms"] > 0 for q in (50, 95, 99)), (kind, figures)
        assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
        assert not math.isnan(figures["ratio_p50"]) and not math.isnan(figures["ratio_p95"])
        for side in ("off_", "on_"):
            assert all(rbac[f"{side}p{q}_ms"] > 0 for q in (50, 95, 99)), (kind, rbac)
        assert rbac["ratio_p50"] > 0 and rbac["ratio_p95"] > 0
    rbac = result["rbac"]
    assert rbac["placeholders_per_trace"] > 0  # the lookups under RBAC mask foreign spans
    assert 0 < rbac["granted_services"] < workload["services"]
    worst = result["rbac_worst_kind"]
    assert result["rbac_added_p50"] == rbac[worst]["ratio_p50"] - 1
    rows = summary_rows({"query": result})
    # the store, five kinds against bare, five kinds on / off, the RBAC headline
    assert [row[0] for row in rows] == ["query"] * 12
    assert rows[-1][1] == "RBAC added cost, worst kind"
    prefix = result["store_prefix"]
    assert not opensearch.indices.get(
        index=f"{prefix}*", ignore_unavailable=True, expand_wildcards="all"
    )
    assert not opensearch.indices.get_index_template(name=f"{prefix}*", ignore=404).get(
        "index_templates"
    )


def test_half_glob_splits_services_near_half():
    services = ["api", "b", "cart", "db", "edge", "front"]
    assert half_glob(services) == "[a-c]*"


def test_summary_of_a_result_from_before_p95_and_rbac():
    """JSON written by the earlier query bench (p50 / p99, three kinds) still renders."""
    old = {
        "workload": {"traces": 10_000, "spans": 102_400, "requests": 200},
        "search_limit": 20,
        **{
            kind: {
                "p50_ms": 5.0,
                "p99_ms": 9.0,
                "bare_p50_ms": 4.0,
                "bare_p99_ms": 8.0,
                "ratio_p50": 1.25,
            }
            for kind in ("trace_by_id", "search", "search_tag_duration")
        },
    }
    rows = summary_rows({"query": old})
    assert [row[1] for row in rows] == [
        "trace by id p50 / p99",
        "search, 20 traces p50 / p99",
        "search by tag + trace duration > 5 ms p50 / p99",
    ]
    assert rows[0][2:] == ("5.0 / 9.0 ms", "bare OpenSearch 4.0 / 8.0 ms (1.25 x at p50)")
