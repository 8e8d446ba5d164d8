"""Closed windows -> cumulative Prometheus series, scraped through a real registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from pipeline.metrics.prometheus import SpanMetricsCollector, prometheus_label
from pipeline.metrics.red import DEFAULT_BUCKETS_MS, Dimension, RedAggregator, RedConfig
from pipeline.metrics.service_graph import DEFAULT_LATENCY_BUCKETS_SECONDS, ServiceGraph
from tests.unit.metrics.spans import span, tid, trace

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_010 * S  # aligned on a 15 s window
W2 = T0 + 15 * S
CALLS = "traces_span_metrics_calls_total"
DURATION = "traces_span_metrics_duration_milliseconds"
TOTAL = "traces_service_graph_request_total"
FAILED = "traces_service_graph_request_failed_total"
SERVER = "traces_service_graph_request_server_seconds"
CLIENT = "traces_service_graph_request_client_seconds"
LES_MS = [*(str(float(b)) for b in DEFAULT_BUCKETS_MS), "+Inf"]


def sid(i: int) -> bytes:
    return i.to_bytes(8, "big")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def registry(collector: SpanMetricsCollector) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(collector)
    return reg


def families(collector: SpanMetricsCollector, openmetrics: bool = False) -> dict:
    """Scrape through a fresh registry and parse: {family name: Metric}."""
    reg = registry(collector)
    if openmetrics:
        parsed = parse_openmetrics(generate_openmetrics(reg).decode())
    else:
        parsed = parse_text(generate_latest(reg).decode())
    out = {f.name: f for f in parsed}
    assert len(out) == len(list(reg.collect()))
    return out


def values(collector: SpanMetricsCollector) -> dict:
    """{(sample name, frozenset of labels): value} of a classic text scrape."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in families(collector).values()
        for s in f.samples
    }


def labels(**kv: str) -> frozenset:
    return frozenset(kv.items())


def buckets(vals: dict, name: str, les: list[str], **kv: str) -> list[float]:
    return [vals[(name + "_bucket", labels(**kv, le=le))] for le in les]


# -- RED --------------------------------------------------------------------------------

GET = {
    "service_name": "api",
    "span_name": "GET /",
    "span_kind": "SPAN_KIND_SERVER",
    "status_code": "STATUS_CODE_UNSET",
    "http_method": "GET",
    "deployment_environment": "prod",
}
POST = {
    "service_name": "api",
    "span_name": "POST /",
    "span_kind": "SPAN_KIND_SERVER",
    "status_code": "STATUS_CODE_ERROR",
    "deployment_environment": "prod",
}
DB = {
    "service_name": "db",
    "span_name": "q",
    "span_kind": "SPAN_KIND_SERVER",
    "status_code": "STATUS_CODE_OK",
    "deployment_environment": "prod",
}
OVERFLOW = {"service_name": "api", "otel_metric_overflow": "true"}


def red_aggregator() -> RedAggregator:
    return RedAggregator(
        RedConfig(
            dimensions=(Dimension("http.method"), Dimension("deployment.environment", "prod")),
            max_series_per_service=2,
            exemplars_per_series=2,
        )
    )


def get(start: int, ms: float, span_id: int, trace_id: bytes):
    return span(
        "api", "GET /", "server", start, start + int(ms * MS), span_id=sid(span_id),
        attributes={"http.method": "GET"}, trace_id=trace_id,
    )  # fmt: skip


def red_window_1(agg: RedAggregator) -> None:
    """GET / 3 ms, POST / 70 ms (error), PUT / 7 ms (overflow), db q 1 ms; one kept trace."""
    t = T0 + S
    agg.add_trace(
        trace(
            get(t, 3, 1, tid(1)),
            span("api", "POST /", "server", t, t + 70 * MS, status="error", span_id=sid(2)),
            span("api", "PUT /", "server", t, t + 7 * MS, span_id=sid(3)),
            span("db", "q", "server", t, t + 1 * MS, status="ok", span_id=sid(4)),
        ),
        tid(1),
        True,
    )


def red_window_2(agg: RedAggregator) -> None:
    """GET / 3.5 ms (dropped) and 120 ms (kept), POST / 70 ms, PUT / 9 ms (overflow, dropped)."""
    t = W2 + S
    agg.add_trace(trace(get(t, 3.5, 5, tid(2))), tid(2), False)
    agg.add_trace(
        trace(
            get(t + S, 120, 6, tid(3)),
            span("api", "POST /", "server", t, t + 70 * MS, status="error", span_id=sid(7)),
        ),
        tid(3),
        True,
    )
    agg.add_trace(
        trace(span("api", "PUT /", "server", t, t + 9 * MS, span_id=sid(8))), tid(4), False
    )


def fed_red(collector: SpanMetricsCollector, windows: int = 2) -> None:
    agg = red_aggregator()
    red_window_1(agg)
    (w1,) = agg.close(W2)
    collector.add_red_window(w1)
    if windows == 2:
        red_window_2(agg)
        (w2,) = agg.close(W2 + 15 * S)
        collector.add_red_window(w2)


def test_red_families_names_and_types() -> None:
    c = SpanMetricsCollector()
    fed_red(c)
    fams = families(c)
    assert {n: f.type for n, f in fams.items()} == {
        # the classic parser strips _total from a counter's family name
        "traces_span_metrics_calls": "counter",
        DURATION: "histogram",
    }
    om = families(c, openmetrics=True)
    assert om[DURATION].unit == "milliseconds"
    assert {s.name for s in om["traces_span_metrics_calls"].samples} == {CALLS}
    assert {s.name for s in om[DURATION].samples} == {
        DURATION + "_bucket",
        DURATION + "_count",
        DURATION + "_sum",
    }


def test_red_after_one_window() -> None:
    c = SpanMetricsCollector()
    fed_red(c, windows=1)
    vals = values(c)
    assert vals[(CALLS, labels(**GET))] == 1
    assert vals[(CALLS, labels(**POST))] == 1
    assert vals[(CALLS, labels(**DB))] == 1
    assert vals[(CALLS, labels(**OVERFLOW))] == 1
    assert len([k for k in vals if k[0] == CALLS]) == 4
    assert buckets(vals, DURATION, LES_MS, **GET) == [0] + [1] * 16
    assert vals[(DURATION + "_sum", labels(**GET))] == 3.0


def test_red_two_windows_are_cumulative() -> None:
    c = SpanMetricsCollector()
    fed_red(c)
    vals = values(c)
    calls = {k[1]: v for k, v in vals.items() if k[0] == CALLS}
    assert calls == {labels(**GET): 3, labels(**POST): 2, labels(**DB): 1, labels(**OVERFLOW): 2}
    # GET /: 3 ms and 3.5 ms in (2, 4], 120 ms in (100, 200]; buckets cumulative over le
    assert buckets(vals, DURATION, LES_MS, **GET) == [0] + [2] * 6 + [3] * 10
    assert vals[(DURATION + "_count", labels(**GET))] == 3
    assert vals[(DURATION + "_sum", labels(**GET))] == pytest.approx(126.5)
    assert buckets(vals, DURATION, LES_MS, **POST) == [0] * 5 + [0] + [2] * 11
    assert vals[(DURATION + "_sum", labels(**POST))] == pytest.approx(140.0)
    # overflow: 7 ms then 9 ms, labels service_name and otel_metric_overflow only
    assert buckets(vals, DURATION, LES_MS, **OVERFLOW) == [0, 0, 0, 1] + [2] * 13
    assert vals[(DURATION + "_count", labels(**OVERFLOW))] == 2
    assert vals[(DURATION + "_sum", labels(**OVERFLOW))] == pytest.approx(16.0)
    # a missing dimension without a default is no label at all (POST has no http_method)
    assert 'http_method=""' not in generate_latest(registry(c)).decode()
    assert c.series_count == 4


def test_custom_buckets_are_the_le_labels() -> None:
    agg = RedAggregator(RedConfig(buckets_ms=(5.0, 50.0)))
    agg.add_trace(trace(span("api", "x", "server", T0, T0 + 10 * MS)), tid(1), True)
    c = SpanMetricsCollector()
    for w in agg.close(W2):
        c.add_red_window(w)
    vals = values(c)
    x = dict(service_name="api", span_name="x", span_kind="SPAN_KIND_SERVER",
             status_code="STATUS_CODE_UNSET")  # fmt: skip
    assert buckets(vals, DURATION, ["5.0", "50.0", "+Inf"], **x) == [0, 1, 1]
    assert len([k for k in vals if k[0] == DURATION + "_bucket"]) == 3


def exemplars(collector: SpanMetricsCollector, family: str) -> dict:
    """{(sample name, frozenset of labels): Exemplar} of an OpenMetrics scrape."""
    return {
        (s.name, frozenset(s.labels.items())): s.exemplar
        for s in families(collector, openmetrics=True)[family].samples
        if s.exemplar is not None
    }


def test_red_exemplars_in_openmetrics_prefer_kept_traces() -> None:
    c = SpanMetricsCollector()
    fed_red(c)
    ex = exemplars(c, DURATION)
    # (2, 4]: window 1's kept trace stays although window 2's dropped 3.5 ms span is newer
    e = ex[(DURATION + "_bucket", labels(**GET, le="4.0"))]
    assert e.labels == {"trace_id": tid(1).hex(), "span_id": sid(1).hex()}
    assert e.value == 3.0
    assert float(e.timestamp) == pytest.approx((T0 + S + 3 * MS) / S)
    e = ex[(DURATION + "_bucket", labels(**GET, le="200.0"))]
    assert e.labels == {"trace_id": tid(3).hex(), "span_id": sid(6).hex()}
    assert e.value == 120.0
    # an empty bucket takes a dropped trace's exemplar
    assert ex[(DURATION + "_bucket", labels(**OVERFLOW, le="8.0"))].labels["trace_id"] == (
        tid(1).hex()
    )
    assert ex[(DURATION + "_bucket", labels(**OVERFLOW, le="10.0"))].labels["trace_id"] == (
        tid(4).hex()
    )
    assert all(len(e.labels["trace_id"]) == 32 for e in ex.values())
    # the counter carries the latest kept one
    calls = exemplars(c, "traces_span_metrics_calls")
    assert calls[(CALLS, labels(**GET))].labels["trace_id"] == tid(3).hex()
    # the classic text format has none
    text = generate_latest(registry(c)).decode()
    assert tid(1).hex() not in text and tid(3).hex() not in text


def test_stale_kept_exemplar_yields_to_a_dropped_one() -> None:
    clock = Clock()
    c = SpanMetricsCollector(expiration_seconds=900, clock=clock)
    agg = RedAggregator()
    x = dict(service_name="api", span_name="x", span_kind="SPAN_KIND_SERVER",
             status_code="STATUS_CODE_UNSET", le="4.0")  # fmt: skip

    def feed(i: int, kept: bool) -> str:
        start = T0 + i * 15 * S
        agg.add_trace(trace(span("api", "x", "server", start, start + 3 * MS)), tid(i), kept)
        (w,) = agg.close(start + 15 * S)
        c.add_red_window(w)
        return exemplars(c, DURATION)[(DURATION + "_bucket", labels(**x))].labels["trace_id"]

    assert feed(1, True) == tid(1).hex()
    clock.now = 500
    assert feed(2, False) == tid(1).hex()
    clock.now = 950  # the kept exemplar was chosen 950 s ago
    assert feed(3, False) == tid(3).hex()
    assert values(c)[(CALLS, labels(**{k: v for k, v in x.items() if k != "le"}))] == 3


def test_series_expire_after_the_configured_time() -> None:
    clock = Clock()
    c = SpanMetricsCollector(expiration_seconds=900, clock=clock)
    fed_red(c, windows=1)  # GET, POST, DB, overflow at t=0
    clock.now = 600
    agg = red_aggregator()
    agg.add_trace(trace(span("db", "q", "server", W2, W2 + MS, status="ok")), tid(9), True)
    (w,) = agg.close(W2 + 15 * S)
    c.add_red_window(w)
    assert c.series_count == 4
    clock.now = 1000
    vals = values(c)
    assert {k[1] for k in vals if k[0] == CALLS} == {labels(**DB)}
    assert vals[(CALLS, labels(**DB))] == 2
    assert c.series_count == 1 and c.expired_series == 3
    # a dropped series that comes back starts from zero
    fed_red(c, windows=1)
    assert values(c)[(CALLS, labels(**GET))] == 1


def test_without_expiration_series_stay() -> None:
    clock = Clock()
    c = SpanMetricsCollector(expiration_seconds=None, clock=clock)
    fed_red(c)
    clock.now = 10**9
    assert c.expire() == 0 and c.series_count == 4
    with pytest.raises(ValueError):
        SpanMetricsCollector(expiration_seconds=0)


def test_dimension_names_become_prometheus_labels() -> None:
    assert prometheus_label("http.method") == "http_method"
    assert prometheus_label("k8s.pod-name") == "k8s_pod_name"
    assert prometheus_label("1st") == "key_1st"
    # two dimensions with one label: values joined, as the Collector's exporter does
    agg = RedAggregator(RedConfig(dimensions=(Dimension("a.b"), Dimension("a_b"))))
    attributes = {"a.b": "x", "a_b": "y"}
    agg.add_trace(trace(span("s", "n", attributes=attributes, start_ns=T0, end_ns=T0 + MS)),
                  tid(1), True)  # fmt: skip
    c = SpanMetricsCollector()
    for w in agg.close(W2):
        c.add_red_window(w)
    ((_, ls),) = [k for k in values(c) if k[0] == CALLS]
    assert dict(ls)["a_b"] == "x;y"


def test_registering_twice_in_one_registry_is_refused() -> None:
    reg = CollectorRegistry()
    reg.register(SpanMetricsCollector())
    with pytest.raises(ValueError, match="Duplicated"):
        reg.register(SpanMetricsCollector())
    assert generate_latest(reg) == b""  # nothing fed: no family at all


# -- service graph ----------------------------------------------------------------------

API_DB = {"client": "api", "server": "db", "connection_type": ""}
USER_API = {"client": "user", "server": "api", "connection_type": "virtual_node"}
LES_S = [*(str(float(b)) for b in DEFAULT_LATENCY_BUCKETS_SECONDS), "+Inf"]


def graph_trace(start: int, server_ms: int, error: bool, i: int):
    """user -> api (SERVER 20 ms) -> api CLIENT (10 ms) -> db SERVER (server_ms)."""
    return trace(
        span("api", "GET /", "server", start, start + 20 * MS, span_id=sid(10 * i + 1)),
        span("api", "q", "client", start, start + 10 * MS, span_id=sid(10 * i + 2),
             parent=sid(10 * i + 1)),
        span("db", "q", "server", start, start + server_ms * MS, span_id=sid(10 * i + 3),
             parent=sid(10 * i + 2), status="error" if error else "unset"),
    )  # fmt: skip


def fed_graph(collector: SpanMetricsCollector) -> None:
    g = ServiceGraph()
    g.add_trace(graph_trace(T0 + S, 1, True, 1), tid(1), True)
    for w in g.close(W2):
        collector.add_graph_window(w)
    g.add_trace(graph_trace(W2 + S, 5, False, 2), tid(2), False)
    for w in g.close(W2 + 15 * S):
        collector.add_graph_window(w)


def test_service_graph_two_windows_are_cumulative() -> None:
    c = SpanMetricsCollector()
    fed_graph(c)
    fams = families(c)
    assert {n: f.type for n, f in fams.items()} == {
        "traces_service_graph_request": "counter",
        "traces_service_graph_request_failed": "counter",
        SERVER: "histogram",
        CLIENT: "histogram",
    }
    vals = values(c)
    assert vals[(TOTAL, labels(**API_DB))] == 2
    assert vals[(TOTAL, labels(**USER_API))] == 2
    assert {k[1]: v for k, v in vals.items() if k[0] == FAILED} == {labels(**API_DB): 1}
    # db server side: 1 ms then 5 ms; api client side 10 ms twice
    assert buckets(vals, SERVER, LES_S, **API_DB) == [1, 1, 2] + [2] * 14
    assert vals[(SERVER + "_sum", labels(**API_DB))] == pytest.approx(0.006)
    assert vals[(SERVER + "_count", labels(**API_DB))] == 2
    assert buckets(vals, CLIENT, LES_S, **API_DB) == [0, 0, 0, 0, 2] + [2] * 12
    # the virtual client "user": client latency 0, server latency the api span's 20 ms
    assert buckets(vals, CLIENT, LES_S, **USER_API) == [2] * 17
    assert buckets(vals, SERVER, LES_S, **USER_API) == [0] * 5 + [2] * 12
    om = families(c, openmetrics=True)
    assert om[SERVER].unit == "seconds" and om[CLIENT].unit == "seconds"
    assert {s.name for s in om["traces_service_graph_request"].samples} == {TOTAL}


def test_service_graph_exemplar_on_request_total() -> None:
    c = SpanMetricsCollector()
    fed_graph(c)
    ex = exemplars(c, "traces_service_graph_request")
    e = ex[(TOTAL, labels(**API_DB))]
    assert e.labels == {"trace_id": tid(1).hex()}  # kept, not the later dropped tid(2)
    assert e.value == 1
    assert float(e.timestamp) == W2 / S  # the end of its window
    assert set(ex) == {(TOTAL, labels(**API_DB)), (TOTAL, labels(**USER_API))}
