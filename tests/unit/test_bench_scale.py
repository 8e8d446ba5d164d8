"""The scale model's arithmetic and the bench summary over a results dict."""

from __future__ import annotations

import math

from pipeline.bench.report import summary_rows
from pipeline.bench.scale import ASSUMPTIONS, scale_model

RESULTS = {
    "gateway": {
        "request_spans": 500,
        "request_bytes": 200_000,  # 400 bytes per span on the wire
        "parse_ceiling_spans_per_s": 2_000_000.0,
        "kafka_produce_ceiling_spans_per_s": 1_500_000.0,
        "http": {"spans_per_core_s": 280_000.0, "ratio_to_parse_ceiling": 0.14},
        "grpc": {"spans_per_core_s": 250_000.0, "ratio_to_parse_ceiling": 0.125},
    },
    "sampler": {
        "kafka_consume_ceiling_spans_per_s": 500_000.0,
        "spans_per_core_s": 140_000.0,
        "ratio_to_consume_ceiling": 0.28,
        "rss_bytes_per_buffered_span": 170.0,
        "buffered_spans": 600_000,
        "kept_traces": 584.0,
        "error_traces": 584,
    },
    "sink": {
        "raw_bulk": {"docs_per_s": 20_000.0},
        "sink": {"docs_per_s": 18_000.0, "docs_per_cpu_s": 30_000.0},
        "sink_vs_raw": 0.9,
        "bytes_per_span": {"ours": 120.0, "default_settings": 300.0},
        "bytes_per_span_by_structure": {"stored fields": 50.0, "terms": 40.0, "other": 30.0},
    },
}


def test_cores_use_the_slower_transport_and_the_headroom():
    model = scale_model(RESULTS, target=10_000_000)
    headroom = ASSUMPTIONS["core_headroom"]
    assert model["gateway_cores"] == math.ceil(10_000_000 / (250_000 * headroom))
    assert model["worker_cores"] == math.ceil(10_000_000 / (140_000 * headroom))


def test_kafka_is_sized_by_bytes_and_never_below_the_worker_count():
    model = scale_model(RESULTS, target=10_000_000)
    assert model["kafka_ingest_mb_per_s"] == 4_000  # 10 M x 400 B
    assert model["kafka_partitions"] == 512  # 400 by bytes, to the next power of two
    assert model["kafka_partitions"] >= model["worker_cores"]
    assert model["kafka_brokers"] == 120  # 4 000 MB/s x 3 replicas / 100 MB/s


def test_storage_for_seven_days_at_one_and_five_percent():
    kept = scale_model(RESULTS, target=10_000_000)["kept"]
    one = 10_000_000 * 0.01 * 86_400 * 7 * 120 / 1e12
    assert math.isclose(kept["1%"]["storage_tb_primary"], one)
    assert math.isclose(kept["5%"]["storage_tb_primary"], 5 * one)
    assert math.isclose(kept["1%"]["storage_tb_with_replicas"], 2 * one)
    assert kept["1%"]["opensearch_nodes"] == math.ceil(100_000 / (20_000 * 0.7))


def test_unmeasured_stages_leave_their_resources_open():
    model = scale_model({})
    assert model["gateway_cores"] is None and model["worker_cores"] is None
    assert "kafka_partitions" not in model
    assert model["kept"]["1%"]["opensearch_nodes"] is None


def test_summary_has_a_row_per_measured_figure():
    stages = [stage for stage, *_ in summary_rows(RESULTS)]
    assert stages.count("gateway") == 2
    assert stages.count("sampler") == 3
    assert stages.count("sink") == 3
    assert stages.count("ceiling") == 4


def test_span_metrics_row_shows_the_extra_cpu_per_span():
    results = {
        "sampler": {
            **RESULTS["sampler"],
            "spans_per_core_s_metrics_on": 120_000.0,
            "metrics_cost_ratio": 140_000 / 120_000 - 1,
            "metrics_cost_in_run": 0.12,
        }
    }
    row = next(row for row in summary_rows(results) if "span metrics on" in row[1])
    assert row == (
        "sampler",
        "spans per worker core, span metrics on",
        "120,000 spans/s",
        "+17 % CPU per span, best of 2 interleaved passes each (issue budget 15 %)",
    )
    row = next(row for row in summary_rows(results) if "own account" in row[1])
    assert row[2] == "+12 % CPU"


def test_adaptive_policies_row_shows_their_cost_against_the_plain_ones():
    results = {
        "sampler": {
            **RESULTS["sampler"],
            "spans_per_core_s_adaptive": 90_000.0,
            "adaptive_cost_ratio": 0.05,
        }
    }
    row = next(row for row in summary_rows(results) if "adaptive" in row[1])
    assert row[2] == "90,000 spans/s"
    assert row[3].startswith("+5 % CPU per span against latency > 800 ms + 1 %")


def test_structure_row_lists_the_largest_first():
    row = next(row for row in summary_rows(RESULTS) if row[1] == "bytes per span by structure")
    assert row[2:] == ("50 / 40 / 30", "stored fields / terms / other")
