"""RED windows -> OTLP metrics; decoded with opentelemetry-proto classes only."""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from pipeline.metrics.otlp import append_red_window, encode_red_windows
from pipeline.metrics.red import Dimension, RedAggregator, RedConfig
from tests.unit.metrics.spans import attrs_of, span, tid, trace

S = 1_000_000_000
MS = 1_000_000
T0 = 1_699_999_995 * S
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def decoded(agg: RedAggregator, watermark: int) -> ExportMetricsServiceRequest:
    wire = encode_red_windows(agg.close(watermark)).SerializeToString()
    return ExportMetricsServiceRequest.FromString(wire)


def by_service(req: ExportMetricsServiceRequest) -> dict:
    out = {}
    for rm in req.resource_metrics:
        (svc,) = [kv.value.string_value for kv in rm.resource.attributes]
        assert [kv.key for kv in rm.resource.attributes] == ["service.name"]
        assert svc not in out, "one ResourceMetrics per service"
        (sm,) = rm.scope_metrics
        assert sm.scope.name == "spansieve.spanmetrics"
        out[svc] = {m.name: m for m in sm.metrics}
    return out


def test_encoded_request_decodes_with_proto_classes_only() -> None:
    agg = RedAggregator(RedConfig(dimensions=(Dimension("http.method"),)))
    agg.add_trace(
        trace(
            span("api", "GET /", "server", T0 + S, T0 + S + 3 * MS, span_id=b"\x0a" * 8,
                 attributes={"http.method": "GET"}),
            span("api", "GET /", "server", T0 + S, T0 + S + 120 * MS, status="error"),
            span("db", "SELECT", "client", T0 + 2 * S, T0 + 2 * S + 1 * MS, status="ok"),
        ),
        tid(7),
        True,
    )  # fmt: skip
    agg.add_trace(trace(span("api", "GET /", "server", T0 + 16 * S, T0 + 17 * S)), tid(8), False)
    req = decoded(agg, T0 + 30 * S)
    services = by_service(req)
    assert set(services) == {"api", "db"}

    api = services["api"]
    assert set(api) == {"traces.span.metrics.calls", "traces.span.metrics.duration"}
    calls = api["traces.span.metrics.calls"]
    assert calls.WhichOneof("data") == "sum"
    assert calls.sum.aggregation_temporality == DELTA and calls.sum.is_monotonic
    duration = api["traces.span.metrics.duration"]
    assert duration.WhichOneof("data") == "histogram"
    assert duration.histogram.aggregation_temporality == DELTA
    assert duration.unit == "ms"

    points = {
        (p.start_time_unix_nano, tuple(sorted(attrs_of(p).items()))): p
        for p in calls.sum.data_points
    }
    base = {"service.name": "api", "span.name": "GET /", "span.kind": "SPAN_KIND_SERVER"}
    ok = tuple(sorted({**base, "status.code": "STATUS_CODE_UNSET", "http.method": "GET"}.items()))
    err = tuple(sorted({**base, "status.code": "STATUS_CODE_ERROR"}.items()))
    later = tuple(sorted({**base, "status.code": "STATUS_CODE_UNSET"}.items()))
    assert set(points) == {(T0, ok), (T0, err), (T0 + 15 * S, later)}
    p = points[(T0, ok)]
    assert (p.as_int, p.time_unix_nano) == (1, T0 + 15 * S)
    # errors = calls with status.code STATUS_CODE_ERROR (no metric of their own)
    assert points[(T0, err)].as_int == 1
    assert points[(T0 + 15 * S, later)].time_unix_nano == T0 + 30 * S
    (ex,) = p.exemplars
    assert (ex.trace_id, ex.span_id, ex.time_unix_nano) == (tid(7), b"\x0a" * 8, T0 + S + 3 * MS)
    assert ex.as_double == 3.0

    hist = {
        (h.start_time_unix_nano, tuple(sorted(attrs_of(h).items()))): h
        for h in duration.histogram.data_points
    }
    assert set(hist) == set(points)
    h = hist[(T0, err)]
    assert list(h.explicit_bounds) == [
        2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000,
    ]  # fmt: skip
    assert (h.count, h.sum) == (1, 120.0)
    assert list(h.bucket_counts) == [0] * 7 + [1] + [0] * 9  # (100, 200]
    assert (h.start_time_unix_nano, h.time_unix_nano) == (T0, T0 + 15 * S)
    assert [e.trace_id for e in h.exemplars] == [tid(7)]
    assert [e.trace_id for e in hist[(T0 + 15 * S, later)].exemplars] == [tid(8)]

    db_calls = services["db"]["traces.span.metrics.calls"]
    (dp,) = db_calls.sum.data_points
    assert attrs_of(dp) == {
        "service.name": "db",
        "span.name": "SELECT",
        "span.kind": "SPAN_KIND_CLIENT",
        "status.code": "STATUS_CODE_OK",
    }
    (dh,) = services["db"]["traces.span.metrics.duration"].histogram.data_points
    assert dh.bucket_counts[0] == 1 and sum(dh.bucket_counts) == dh.count == 1


def test_overflow_series_encoding() -> None:
    agg = RedAggregator(RedConfig(max_series_per_service=1))
    agg.add_trace(
        trace(
            span("api", "a", "server", T0, T0 + MS),
            span("api", "b", "server", T0, T0 + 5 * MS),
            span("api", "c", "internal", T0, T0 + 5 * MS, status="error"),
        ),
        tid(1),
        True,
    )
    services = by_service(decoded(agg, T0 + 15 * S))
    calls = services["api"]["traces.span.metrics.calls"].sum.data_points
    by_name = {attrs_of(p).get("span.name"): p for p in calls}
    assert set(by_name) == {"a", None}
    over = by_name[None]
    assert attrs_of(over) == {"service.name": "api", "otel.metric.overflow": True}
    assert over.as_int == 2
    (oh,) = [
        h
        for h in services["api"]["traces.span.metrics.duration"].histogram.data_points
        if "otel.metric.overflow" in attrs_of(h)
    ]
    assert (oh.count, oh.bucket_counts[2]) == (2, 2)


def test_windows_share_one_resource_per_service_and_append_reuses_it() -> None:
    agg = RedAggregator()
    for i in range(3):
        agg.add_trace(trace(span("api", "x", "server", T0, T0 + i * 15 * S + S)), tid(i), False)
    w0, w1, w2 = agg.close(T0 + 45 * S)
    req = encode_red_windows([w0, w1])
    append_red_window(req, w2)
    (rm,) = req.resource_metrics
    (sm,) = rm.scope_metrics
    calls, duration = sm.metrics
    assert [p.start_time_unix_nano for p in calls.sum.data_points] == [
        T0, T0 + 15 * S, T0 + 30 * S,
    ]  # fmt: skip
    assert [p.count for p in duration.histogram.data_points] == [1, 1, 1]


def test_empty() -> None:
    assert encode_red_windows([]).SerializeToString() == b""
