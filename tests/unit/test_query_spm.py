"""Jaeger's SPM API (/api/metrics/*): parameters, the OpenSearch bodies, rates and
quantiles per point against hand-computed numbers, and the JSON the Jaeger UI reads."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import datetime
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.routing import Route

from pipeline.config.settings import Settings
from pipeline.metrics.otlp import CALLS, DURATION, span_kind_str
from pipeline.metrics.red import DEFAULT_BUCKETS_MS
from pipeline.metrics.summary import histogram_quantile as summary_quantile
from pipeline.query.params import ParamError
from pipeline.query.spm import (
    CALL_SUMS,
    CALLS_METRIC,
    DURATION_METRIC,
    KIND_RED,
    MAX_POINTS,
    SPAN_KINDS,
    MetricsQuery,
    SpmReader,
    bucket_quantile,
    call_rate_family,
    error_rate_family,
    histogram_quantile,
    histograms_body,
    latency_family,
    metrics_calls,
    metrics_errors,
    metrics_latencies,
    metrics_minstep,
    parse_metrics_query,
    parse_quantile,
    rfc3339,
    series_body,
    window_sums,
)
from pipeline.sink.metrics_documents import KIND_RED as SINK_KIND_RED
from tests.asgi import get_all, handlers_app

NOW = 1_700_000_000_000  # ms, 2023-11-14T22:13:20Z
MINUTE = 60_000
BOUNDS = tuple(float(b) for b in DEFAULT_BUCKETS_MS)


# --- the names the store and Jaeger use ---------------------------------------------------


def test_store_names_are_the_sink_and_metrics_library_names():
    assert CALLS_METRIC == CALLS
    assert DURATION_METRIC == DURATION
    assert KIND_RED == SINK_KIND_RED
    # Every OTLP span kind the RED series can carry, under Jaeger's lower-case names.
    assert set(SPAN_KINDS.values()) == {span_kind_str(k) for k in Span.SpanKind.values()}
    assert SPAN_KINDS["server"] == span_kind_str(Span.SPAN_KIND_SERVER)


# --- parameters ---------------------------------------------------------------------------


def test_defaults_are_jaegers():
    query = parse_metrics_query([("service", "api")], NOW)
    assert query == MetricsQuery(
        services=("api",),
        group_by_operation=False,
        span_kinds=("SPAN_KIND_SERVER",),
        end=NOW,
        lookback=3_600_000,
        step=5_000,
        rate_per=600_000,
    )
    assert query.point_count == 721  # both ends of the hour


def test_what_the_jaeger_ui_sends():
    """ServicesView's metricQueryPayload, through queryString.stringify."""
    pairs = [
        ("service", "frontend"),
        ("quantile", "0.95"),
        ("endTs", str(NOW)),
        ("lookback", "3600000"),
        ("step", "60000"),
        ("ratePer", "600000"),
        ("spanKind", "server"),
        ("groupByOperation", "true"),
    ]
    query = parse_metrics_query(pairs, 0)
    assert query.services == ("frontend",)
    assert query.group_by_operation
    assert query.span_kinds == ("SPAN_KIND_SERVER",)
    assert (query.end, query.lookback, query.step, query.rate_per) == (
        NOW,
        3_600_000,
        MINUTE,
        600_000,
    )
    assert parse_quantile(pairs) == 0.95


def test_repeated_services_and_kinds():
    pairs = [
        ("service", "a"),
        ("service", "b"),
        ("service", "a"),
        ("service", ""),
        ("spanKind", "Client"),
        ("spanKind", "CONSUMER"),
        ("spanKind", "unspecified"),
    ]
    query = parse_metrics_query(pairs, NOW)
    assert query.services == ("a", "b")
    assert query.span_kinds == ("SPAN_KIND_CLIENT", "SPAN_KIND_CONSUMER", "SPAN_KIND_UNSPECIFIED")


def test_first_value_wins_and_empty_means_default():
    """As Go's url.Values.Get, which Jaeger's parser uses."""
    pairs = [("service", "a"), ("endTs", "1000"), ("endTs", "2000"), ("lookback", "")]
    query = parse_metrics_query(pairs, NOW)
    assert query.end == 1000
    assert query.lookback == 3_600_000


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "service: please provide at least one service name"),
        ([("service", " ")], "service: please provide at least one service name"),
        ([("groupByOperation", "yes")], "groupByOperation: 'yes' is not a boolean"),
        ([("spanKind", "sideways")], "spanKind: unsupported span kind 'sideways'; use one of"),
        ([("spanKind", "")], "spanKind: unsupported span kind ''"),
        ([("endTs", "soon")], "endTs: 'soon' is not an integer"),
        ([("endTs", "-1")], "endTs: -1 must be at least 0"),
        ([("lookback", "1h")], "lookback: '1h' is not an integer"),
        ([("lookback", "-5")], "lookback: -5 must be at least 0"),
        ([("step", "1.5")], "step: '1.5' is not an integer"),
        ([("step", "0")], "step: 0 must be at least 1"),
        ([("ratePer", "0")], "ratePer: 0 must be at least 1"),
        ([("ratePer", "10m")], "ratePer: '10m' is not an integer"),
        ([("lookback", "86400000"), ("step", "1000")], "step: lookback 86400000 ms / step"),
    ],
)
def test_parameter_errors_name_the_parameter(pairs, message):
    if not any(key == "service" for key, _ in pairs) and "service" not in message:
        pairs = [("service", "api"), *pairs]
    with pytest.raises(ParamError) as caught:
        parse_metrics_query(pairs, NOW)
    assert str(caught.value).startswith(message)


def test_point_limit_is_prometheus():
    pairs = [("service", "a"), ("lookback", str((MAX_POINTS - 1) * 1000)), ("step", "1000")]
    assert parse_metrics_query(pairs, NOW).point_count == MAX_POINTS
    pairs[1] = ("lookback", str(MAX_POINTS * 1000))
    with pytest.raises(ParamError, match="at most 11000: increase step"):
        parse_metrics_query(pairs, NOW)


@pytest.mark.parametrize(
    ("text", "value"), [("0.95", 0.95), ("1", 1.0), (".5", 0.5), ("5e-1", 0.5)]
)
def test_quantiles(text, value):
    assert parse_quantile([("quantile", text)]) == value


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "quantile: is required"),
        ([("quantile", "")], "quantile: is required"),
        ([("quantile", "p95")], "quantile: 'p95' is not a number"),
        ([("quantile", "nan")], "quantile: 'nan' is not a number"),
        ([("quantile", "1_0")], "quantile: '1_0' is not a number"),
        ([("quantile", "0")], r"quantile: 0 is not in \(0, 1\]"),
        ([("quantile", "1.5")], r"quantile: 1.5 is not in \(0, 1\]"),
        ([("quantile", "-0.5")], r"quantile: -0.5 is not in \(0, 1\]"),
    ],
)
def test_quantile_errors(pairs, message):
    with pytest.raises(ParamError, match=f"^{message}"):
        parse_quantile(pairs)


# --- the grid of points and buckets -------------------------------------------------------


def test_points_and_rate_window():
    query = MetricsQuery(("a",), end=NOW, lookback=2 * MINUTE, step=MINUTE, rate_per=10 * MINUTE)
    assert query.points == [NOW - 2 * MINUTE, NOW - MINUTE, NOW]
    assert query.rate_steps == 10
    assert query.window_seconds == 600
    assert query.first_bucket == NOW - 12 * MINUTE
    assert query.last_point == NOW
    # ratePer in whole steps (Jaeger's Elasticsearch reader does the same).
    uneven = MetricsQuery(("a",), end=NOW, lookback=0, step=MINUTE, rate_per=90_000)
    assert (uneven.rate_steps, uneven.window_seconds) == (2, 120)
    short = MetricsQuery(("a",), end=NOW, lookback=0, step=MINUTE, rate_per=1)
    assert short.rate_steps == 1
    # Points from the start, as a Prometheus range query: the end is not always one.
    odd = MetricsQuery(("a",), end=NOW, lookback=150_000, step=MINUTE)
    assert odd.points == [NOW - 150_000, NOW - 90_000, NOW - 30_000]


def test_series_body():
    query = MetricsQuery(
        ("api", "db"),
        span_kinds=("SPAN_KIND_SERVER", "SPAN_KIND_CLIENT"),
        end=NOW + 7,
        lookback=2 * MINUTE,
        step=MINUTE,
        rate_per=2 * MINUTE,
    )
    body = series_body(query, CALLS_METRIC, CALL_SUMS)
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"] == [
        {"term": {"kind": "red"}},
        {"term": {"metric": "traces.span.metrics.calls"}},
        {"terms": {"service.name": ["api", "db"]}},
        {"terms": {"span.kind": ["SPAN_KIND_SERVER", "SPAN_KIND_CLIENT"]}},
        {
            "range": {
                "@timestamp": {
                    "gte": NOW + 7 - 4 * MINUTE,
                    "lt": NOW + 7,
                    "format": "epoch_millis",
                }
            }
        },
    ]
    composite = body["aggs"]["series"]["composite"]
    assert [next(iter(s)) for s in composite["sources"]] == ["service", "time"]
    histogram = composite["sources"][1]["time"]["date_histogram"]
    assert histogram["field"] == "@timestamp"
    assert histogram["fixed_interval"] == "60000ms"
    # Bucket edges fall on every point (OpenSearch: key = floor((t - offset) / i) * i + offset).
    assert all((at - histogram["offset"]) % MINUTE == 0 for at in query.points)
    assert 0 <= histogram["offset"] < MINUTE
    assert "after" not in composite
    assert body["aggs"]["series"]["aggs"] == CALL_SUMS

    grouped = MetricsQuery(("api",), group_by_operation=True, end=NOW)
    after = {"service": "api", "operation": "GET /", "time": NOW - MINUTE}
    page = series_body(grouped, CALLS_METRIC, CALL_SUMS, after, size=10)
    composite = page["aggs"]["series"]["composite"]
    assert [next(iter(s)) for s in composite["sources"]] == ["service", "operation", "time"]
    assert composite["sources"][1] == {"operation": {"terms": {"field": "span.name"}}}
    assert composite["after"] == after
    assert composite["size"] == 10
    # Latencies: one scripted metric for the whole request, keyed by series and bucket.
    histograms = histograms_body(grouped)
    script = histograms["aggs"]["histograms"]["scripted_metric"]
    assert set(script) == {"init_script", "map_script", "combine_script", "reduce_script", "params"}
    assert script["params"] == {
        "first": grouped.first_bucket,
        "step": grouped.step,
        "by_operation": True,
    }
    assert "params['_source']" in script["map_script"]
    assert {"term": {"metric": DURATION_METRIC}} in histograms["query"]["bool"]["filter"]


# --- aggregation results -> points ----------------------------------------------------------


def key_of(query: MetricsQuery, at: int) -> int:
    """The start of the step bucket holding ``at``, as OpenSearch keys it."""
    return query.first_bucket + (at - query.first_bucket) // query.step * query.step


def calls_bucket(
    query: MetricsQuery, service: str, at: int, calls: int, errors: int = 0, op: str | None = None
) -> dict[str, Any]:
    key: dict[str, Any] = {"service": service, "time": key_of(query, at)}
    if op is not None:
        key["operation"] = op
    return {
        "key": key,
        "doc_count": 3,
        "calls": {"value": float(calls)},
        "errors": {"value": float(errors)},
    }


def histogram_bucket(
    query: MetricsQuery,
    service: str,
    at: int,
    counts: list[int],
    bounds: tuple[float, ...] = BOUNDS,
    op: str | None = None,
) -> dict[str, Any]:
    """A row of HISTOGRAM_SCRIPT: one series' histogram in the step bucket holding ``at``."""
    counts = counts + [0] * (len(bounds) + 1 - len(counts))
    index = (key_of(query, at) - query.first_bucket) // query.step
    operation = op if op is not None else ""
    return {
        "service": service,
        "operation": operation,
        "index": index,
        "bounds": list(bounds),
        "counts": counts,
    }


def values(family: dict[str, Any], index: int = 0) -> list[tuple[str, float]]:
    return [
        (p["timestamp"], p["gaugeValue"]["doubleValue"])
        for p in family["metrics"][index]["metricPoints"]
    ]


# Four points a minute apart; each rate window is two steps (120 s).
GRID = MetricsQuery(("api", "db"), end=NOW, lookback=3 * MINUTE, step=MINUTE, rate_per=2 * MINUTE)
T0, T1, T2, T3 = GRID.points


def test_call_rates_are_per_second_over_the_rate_window():
    buckets = [
        calls_bucket(GRID, "api", T0 - MINUTE + 5_000, calls=30, errors=3),  # before T0
        calls_bucket(GRID, "api", T1 + 15_000, calls=90),  # [T1, T2)
        calls_bucket(GRID, "db", T2 + 1, calls=12, errors=12),  # [T2, T3)
    ]
    family = call_rate_family(GRID, buckets)
    assert family["name"] == "service_call_rate"
    assert family["type"] == "GAUGE"
    assert family["help"] == "calls/sec, grouped by service"
    assert [m["labels"] for m in family["metrics"]] == [
        [{"name": "service_name", "value": "api"}],
        [{"name": "service_name", "value": "db"}],
    ]
    stamps = [rfc3339(t) for t in (T0, T1, T2, T3)]
    # api: 30 calls in [T0-2m, T0) and [T1-2m, T1); 90 in the windows ending T2 and T3.
    assert values(family, 0) == list(zip(stamps, [0.25, 0.25, 0.75, 0.75], strict=True))
    # db: nothing stored before T2 means no calls, a rate of 0, not a gap.
    assert values(family, 1) == list(zip(stamps, [0.0, 0.0, 0.0, 0.1], strict=True))


def test_error_rates_are_fractions_of_calls():
    buckets = [
        calls_bucket(GRID, "api", T0 - MINUTE, calls=30, errors=3),
        calls_bucket(GRID, "api", T1, calls=90, errors=0),
        calls_bucket(GRID, "db", T2, calls=12, errors=12),
    ]
    family = error_rate_family(GRID, buckets)
    assert family["name"] == "service_error_rate"
    assert family["help"] == (
        "error rate, computed as a fraction of errors/sec over calls/sec, grouped by service"
    )
    stamps = [rfc3339(t) for t in (T0, T1, T2, T3)]
    assert values(family, 0) == [
        (stamps[0], 0.1),  # [T0-2m, T0): 3 / 30
        (stamps[1], 0.1),  # [T1-2m, T1) = [T0-1m, T1): 3 / 30
        (stamps[2], 0.0),  # [T0, T2): 0 / 90
        (stamps[3], 0.0),  # [T1, T3): 0 / 90
    ]
    # db had no calls before T2's window: no 0/0 points, only the one with calls.
    assert values(family, 1) == [(stamps[3], 1.0)]


def test_a_series_without_calls_in_any_window_is_left_out():
    family = error_rate_family(GRID, [])
    assert family["metrics"] == []
    assert family["name"] == "service_error_rate"


def test_grouped_by_operation():
    query = MetricsQuery(
        ("api",), group_by_operation=True, end=NOW, lookback=0, step=MINUTE, rate_per=MINUTE
    )
    buckets = [
        calls_bucket(query, "api", NOW - 1, calls=60, errors=6, op="GET /"),
        calls_bucket(query, "api", NOW - 1, calls=6, op="POST /pay"),
    ]
    calls = call_rate_family(query, buckets)
    assert calls["name"] == "service_operation_call_rate"
    assert calls["help"] == "calls/sec, grouped by service & operation"
    assert [m["labels"] for m in calls["metrics"]] == [
        [{"name": "service_name", "value": "api"}, {"name": "operation", "value": "GET /"}],
        [{"name": "service_name", "value": "api"}, {"name": "operation", "value": "POST /pay"}],
    ]
    assert [values(calls, i)[0][1] for i in range(2)] == [1.0, 0.1]
    errors = error_rate_family(query, buckets)
    assert errors["name"] == "service_operation_error_rate"
    assert [values(errors, i)[0][1] for i in range(2)] == [0.1, 0.0]


# Durations 3, 7, 12, 120, 5 and 50 ms over the default bounds 2, 4, 6, 8, 10, 50, 100, 200 ..:
# per bucket (<=2, <=4, <=6, <=8, <=10, <=50, <=100, <=200) = 0, 1, 1, 1, 0, 2, 0, 1.
SIX = [0, 1, 1, 1, 0, 2, 0, 1]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 8.0),  # rank 3 in (6, 8]: 6 + 2 * (3 - 2) / 1
        (0.75, 40.0),  # rank 4.5 in (10, 50]: 10 + 40 * (4.5 - 3) / 2
        (0.95, 170.0),  # rank 5.7 in (100, 200]: 100 + 100 * (5.7 - 5) / 1
        (1.0, 200.0),
        (0.1, 2.0 + 2.0 * 0.6),  # rank 0.6 in (2, 4]
    ],
)
def test_latency_quantiles_by_hand(q, expected):
    query = MetricsQuery(("api",), end=NOW, lookback=0, step=MINUTE, rate_per=MINUTE)
    family = latency_family(query, q, [histogram_bucket(query, "api", NOW - 1, SIX)])
    assert family["name"] == "service_latencies"
    assert family["help"] == f"{q:.2f}th quantile latency, grouped by service"
    [(stamp, value)] = values(family)
    assert stamp == rfc3339(NOW)
    assert value == pytest.approx(expected)


def test_latency_windows_add_histograms_and_leave_empty_points_out():
    # [T1, T2): 3, 7, 12 ms; [T2, T3): 120, 5, 50 ms. Windows are two steps.
    first = [0, 1, 0, 1, 0, 1]
    second = [0, 0, 1, 0, 0, 1, 0, 1]
    buckets = [
        histogram_bucket(GRID, "api", T1, first),
        histogram_bucket(GRID, "api", T2 + 59_999, second),
    ]
    family = latency_family(GRID, 0.5, buckets)
    assert values(family) == [
        # T0, T1: no spans in [T0-2m, T1): no points.
        (rfc3339(T2), pytest.approx(6.0 + 2.0 * (1.5 - 1) / 1)),  # 3, 7, 12: rank 1.5
        (rfc3339(T3), pytest.approx(8.0)),  # all six: rank 3, as by hand above
    ]


def test_histograms_with_other_bounds_add_up_by_le():
    """As ``sum by (le)`` before histogram_quantile: each upper bound's cumulative counts."""
    counts = {((10.0, 20.0), 0): 2, ((10.0, 20.0), 1): 2, ((10.0, 20.0), 2): 0}
    counts |= {((20.0,), 0): 4, ((20.0,), 1): 0}
    # le 10: 2, le 20: 4 + 4 = 8, +Inf: 8 -> q=0.5, rank 4 in (10, 20]: 10 + 10 * 2 / 6
    assert histogram_quantile(0.5, counts) == pytest.approx(10 + 10 * 2 / 6)
    # A histogram without observations takes no part (its window moved past it).
    counts[(5.0,), 0] = 0
    counts[(5.0,), 1] = 0
    assert histogram_quantile(0.5, counts) == pytest.approx(10 + 10 * 2 / 6)


def test_window_sums_run_over_sparse_buckets():
    buckets = {0: {"c": 1}, 2: {"c": 10}, 5: {"c": 100}, 9: {"c": 1000}}
    assert [dict(w) for w in window_sums(buckets, 4, 3)] == [
        {"c": 11},  # 0..2
        {"c": 10},  # 1..3
        {"c": 10},  # 2..4
        {"c": 100},  # 3..5
    ]
    assert [w.get("c", 0) for w in window_sums({-1: {"c": 5}, 1: {"c": 1}}, 2, 1)] == [0, 1]


# --- Prometheus' histogram_quantile -------------------------------------------------------

INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(10, 4), (INF, 4)], 5.0),  # the first bucket starts at 0
        (0.5, [(10, 1), (20, 1), (INF, 6)], 20.0),  # rank in +Inf: the highest finite bound
        (0.25, [(0, 2), (10, 4), (INF, 4)], 0.0),  # a first bound <= 0 is returned
        (0.9, [(1, 5), (2, 3), (INF, 6)], 2.0),  # counts made monotonic: 5, 5, 6
        (0.4, [(INF, 6), (2, 3), (1, 1)], 1.7),  # any order: rank 2.4 in (1, 2]
        (0.5, [(1, 0), (INF, 0)], None),  # no observations
        (0.5, [(1, 2), (2, 4)], None),  # no +Inf bucket
        (0.5, [(INF, 4)], None),  # no finite bound
        (0.5, [], None),
    ],
)
def test_bucket_quantile(q, buckets, expected):
    found = bucket_quantile(q, buckets)
    assert found == (expected if expected is None else pytest.approx(expected))


def test_same_as_the_metrics_top_quantiles():
    """``spansieve metrics top`` estimates as histogram_quantile too: same numbers."""
    rng = random.Random(7)
    for _ in range(300):
        counts = [rng.choice((0, 0, 1, 2, 5, 40)) for _ in range(len(BOUNDS) + 1)]
        q = rng.choice((0.5, 0.75, 0.95, 0.99, 1.0, rng.random() or 0.5))
        flat = {(BOUNDS, i): c for i, c in enumerate(counts)}
        assert histogram_quantile(q, flat) == pytest.approx(summary_quantile(q, BOUNDS, counts))


# --- the JSON the Jaeger UI reads -----------------------------------------------------------

# From jaeger-ui packages/jaeger-ui/src/reducers/metrics.mock.ts (serviceLatencies50's
# value, less the ``quantile`` that JaegerAPI.fetchMetrics adds itself).
UI_SAMPLE = {
    "name": "service_latencies",
    "type": "GAUGE",
    "help": "0.5th quantile latency, grouped by service",
    "metrics": [
        {
            "labels": [{"name": "service_name", "value": "cartservice"}],
            "metricPoints": [
                {
                    "gaugeValue": {"doubleValue": 189.85919098822325},
                    "timestamp": "2021-09-10T11:03:43.806Z",
                }
            ],
        }
    ],
}


def shape(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_answer_has_the_shape_the_ui_reads():
    query = MetricsQuery(("cartservice",), end=NOW + 806, lookback=0, step=MINUTE, rate_per=MINUTE)
    family = latency_family(query, 0.5, [histogram_bucket(query, "cartservice", NOW, SIX)])
    assert shape(family) == shape(UI_SAMPLE)
    # fetchServiceMetricsDone: the service from labels[0], x from new Date(timestamp).
    metric = family["metrics"][0]
    assert metric["labels"][0]["value"] == "cartservice"
    [point] = metric["metricPoints"]
    assert point["timestamp"] == "2023-11-14T22:13:20.806Z"
    parsed = datetime.fromisoformat(point["timestamp"])
    assert round(parsed.timestamp() * 1000) == NOW + 806
    assert round(point["gaugeValue"]["doubleValue"], 2) == 8.0


def test_timestamps_as_protobuf_json_writes_them():
    assert rfc3339(1_622_711_526_000) == "2021-06-03T09:12:06Z"
    assert rfc3339(1_631_271_823_806) == "2021-09-10T11:03:43.806Z"
    assert rfc3339(5) == "1970-01-01T00:00:00.005Z"


# --- handlers, over a stand-in OpenSearch client --------------------------------------------


class FakeClient:
    """Answers each search with the next canned answer and keeps the requests."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    async def search(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return self.answers.pop(0)


def page(buckets: list[dict[str, Any]], after: dict[str, Any] | None = None) -> dict[str, Any]:
    series: dict[str, Any] = {"buckets": buckets}
    if after is not None:
        series["after_key"] = after
    return {"aggregations": {"series": series}}


def serve(client: FakeClient, *paths: str, **settings: Any) -> list[httpx.Response]:
    routes = [
        Route("/api/metrics/calls", metrics_calls),
        Route("/api/metrics/errors", metrics_errors),
        Route("/api/metrics/latencies", metrics_latencies),
        Route("/api/metrics/minstep", metrics_minstep),
    ]
    app = handlers_app(routes, client, Settings(store_index_prefix="t-", **settings))
    return get_all(app, paths)


def test_handlers_answer_families():
    end = NOW
    query = MetricsQuery(("api",), end=end, lookback=0, step=MINUTE, rate_per=MINUTE)
    calls = page([calls_bucket(query, "api", end - 1, calls=120, errors=30)])
    rows = [histogram_bucket(query, "api", end - 1, SIX)]
    latencies = {"aggregations": {"histograms": {"value": rows}}}
    client = FakeClient(calls, calls, latencies)
    common = f"service=api&endTs={end}&lookback=0&step={MINUTE}&ratePer={MINUTE}"
    rates, errors, p95 = serve(
        client,
        f"/api/metrics/calls?{common}",
        f"/api/metrics/errors?{common}",
        f"/api/metrics/latencies?{common}&quantile=0.95",
    )
    for reply in (rates, errors, p95):
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/json"
    assert values(rates.json()) == [(rfc3339(end), 2.0)]
    assert values(errors.json()) == [(rfc3339(end), 0.25)]
    assert values(p95.json()) == [(rfc3339(end), pytest.approx(170.0))]
    assert [r["index"] for r in client.requests] == ["t-spansieve-metrics-*"] * 3
    assert all(r["ignore_unavailable"] and r["allow_no_indices"] for r in client.requests)
    metrics = [r["body"]["query"]["bool"]["filter"][1]["term"]["metric"] for r in client.requests]
    assert metrics == [CALLS_METRIC, CALLS_METRIC, DURATION_METRIC]


def test_no_index_yet_is_an_empty_family():
    [reply] = serve(FakeClient({"hits": {"hits": []}}), "/api/metrics/calls?service=api")
    assert reply.json() == {
        "name": "service_call_rate",
        "type": "GAUGE",
        "help": "calls/sec, grouped by service",
        "metrics": [],
    }


def test_bad_parameters_are_400_in_jaegers_envelope():
    client = FakeClient()
    missing, quantile, kind = serve(
        client,
        "/api/metrics/calls",
        "/api/metrics/latencies?service=api",
        "/api/metrics/errors?service=api&spanKind=sideways",
    )
    for reply in (missing, quantile, kind):
        assert reply.status_code == 400
        body = reply.json()
        assert body["data"] is None
        assert (body["total"], body["limit"], body["offset"]) == (0, 0, 0)
        [problem] = body["errors"]
        assert problem["code"] == 400
    assert missing.json()["errors"][0]["msg"].startswith("service: ")
    assert quantile.json()["errors"][0]["msg"].startswith("quantile: is required")
    assert kind.json()["errors"][0]["msg"].startswith("spanKind: unsupported span kind")
    assert client.requests == []  # nothing was asked of OpenSearch


def test_minstep_is_the_span_metrics_window():
    [default] = serve(FakeClient(), "/api/metrics/minstep")
    assert default.json() == {"data": 15_000, "total": 0, "limit": 0, "offset": 0, "errors": None}
    [thirty] = serve(FakeClient(), "/api/metrics/minstep", span_metrics_window=30.0)
    assert thirty.json()["data"] == 30_000


def test_reader_pages_through_composite_buckets():
    query = MetricsQuery(("api",), end=NOW, lookback=MINUTE, step=MINUTE, rate_per=MINUTE)
    first = [calls_bucket(query, "api", NOW - MINUTE - 1, calls=60)]
    first.append(calls_bucket(query, "api", NOW - 1, calls=120))
    after = first[-1]["key"]
    client = FakeClient(page(first, after), page([], None))
    reader = SpmReader(client, "m-*", page_size=2)  # type: ignore[arg-type]
    family = asyncio.run(reader.call_rates(query))
    assert [v for _t, v in values(family)] == [1.0, 2.0]
    assert [r["body"]["aggs"]["series"]["composite"].get("after") for r in client.requests] == [
        None,
        after,
    ]
