"""Service-graph windows -> OTLP metrics; decoded with opentelemetry-proto classes only."""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from pipeline.metrics.otlp import (
    append_red_window,
    append_service_graph_window,
    encode_service_graph_windows,
)
from pipeline.metrics.red import RedAggregator, RedConfig
from pipeline.metrics.service_graph import (
    DEFAULT_LATENCY_BUCKETS_SECONDS,
    ServiceGraph,
    ServiceGraphWindow,
)
from tests.unit.metrics.spans import attrs_of, span, tid, trace

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_010 * S  # aligned on a 15 s window
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
TOTAL = "traces_service_graph_request_total"
FAILED = "traces_service_graph_request_failed_total"
SERVER = "traces_service_graph_request_server_seconds"
CLIENT = "traces_service_graph_request_client_seconds"
BOUNDS = list(DEFAULT_LATENCY_BUCKETS_SECONDS)


def sid(i: int) -> bytes:
    return i.to_bytes(8, "big")


def edge_of(point) -> tuple[str, str, str]:
    a = attrs_of(point)
    return a["client"], a["server"], a["connection_type"]


def roundtrip(req: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(req.SerializeToString())


def graph_scope(req: ExportMetricsServiceRequest) -> dict:
    """The one service-graph ResourceMetrics (empty resource) -> {metric name: Metric}."""
    (rm,) = [
        rm
        for rm in req.resource_metrics
        if any(sm.scope.name == "spansieve.servicegraph" for sm in rm.scope_metrics)
    ]
    assert list(rm.resource.attributes) == []
    (sm,) = rm.scope_metrics
    names = [m.name for m in sm.metrics]
    assert len(names) == len(set(names))
    return {m.name: m for m in sm.metrics}


def add_call(
    g: ServiceGraph,
    trace_no: int,
    at: int,
    client_ms: int,
    server_ms: int,
    *,
    kept: bool = True,
    server_error: bool = False,
) -> None:
    """frontend --CLIENT--> backend (SERVER child), ending at ``at``."""
    g.add_trace(
        trace(
            span("frontend", "GET /api", "client", at - client_ms * MS, at, span_id=sid(1),
                 trace_id=tid(trace_no)),
            span("backend", "GET /api", "server", at - client_ms * MS, at - client_ms * MS
                 + server_ms * MS, span_id=sid(2), parent=sid(1), trace_id=tid(trace_no),
                 status="error" if server_error else "unset"),
        ),
        tid(trace_no),
        kept,
    )  # fmt: skip


def add_db_call(g: ServiceGraph, trace_no: int, at: int, ms: int, *, kept: bool) -> None:
    g.add_trace(
        trace(
            span("backend", "SELECT", "client", at - ms * MS, at, span_id=sid(3),
                 attributes={"db.name": "orders"}, trace_id=tid(trace_no)),
        ),
        tid(trace_no),
        kept,
    )  # fmt: skip


def test_metrics_names_temporality_attributes_and_histograms() -> None:
    g = ServiceGraph()
    add_call(g, 1, T0 + 1 * S, 30, 20)  # client 0.03 s, server 0.02 s
    add_call(g, 2, T0 + 2 * S, 3000, 1, server_error=True, kept=False)  # 3 s, 0.001 s
    add_db_call(g, 3, T0 + 3 * S, 5, kept=True)
    (window,) = g.close(T0 + 15 * S)
    req = roundtrip(encode_service_graph_windows([window]))

    metrics = graph_scope(req)
    assert set(metrics) == {TOTAL, FAILED, SERVER, CLIENT}
    for name in (TOTAL, FAILED):
        m = metrics[name]
        assert m.WhichOneof("data") == "sum"
        assert m.sum.aggregation_temporality == DELTA and m.sum.is_monotonic
    for name in (SERVER, CLIENT):
        m = metrics[name]
        assert m.WhichOneof("data") == "histogram"
        assert m.histogram.aggregation_temporality == DELTA
        assert m.unit == "s"

    api = ("frontend", "backend", "")
    db = ("backend", "orders", "database")
    totals = {edge_of(p): p for p in metrics[TOTAL].sum.data_points}
    assert set(totals) == {api, db}
    assert totals[api].as_int == 2 and totals[db].as_int == 1
    for p in totals.values():
        # Exactly the connector's default labels, in order; no `failed` attribute.
        assert [kv.key for kv in p.attributes] == ["client", "server", "connection_type"]
        assert p.start_time_unix_nano == T0 and p.time_unix_nano == T0 + 15 * S

    # Failed: only the edge that failed has a point.
    (failed,) = metrics[FAILED].sum.data_points
    assert edge_of(failed) == api and failed.as_int == 1
    assert (failed.start_time_unix_nano, failed.time_unix_nano) == (T0, T0 + 15 * S)

    def bucket(seconds: float) -> int:
        return next((i for i, b in enumerate(BOUNDS) if seconds <= b), len(BOUNDS))

    servers = {edge_of(p): p for p in metrics[SERVER].histogram.data_points}
    clients = {edge_of(p): p for p in metrics[CLIENT].histogram.data_points}
    assert set(servers) == set(clients) == {api, db}
    for p in (*servers.values(), *clients.values()):
        assert list(p.explicit_bounds) == BOUNDS
        assert len(p.bucket_counts) == len(BOUNDS) + 1
        assert p.count == sum(p.bucket_counts)
        assert (p.start_time_unix_nano, p.time_unix_nano) == (T0, T0 + 15 * S)
    expected_client = [0] * (len(BOUNDS) + 1)
    expected_client[bucket(0.03)] += 1
    expected_client[bucket(3.0)] += 1
    assert list(clients[api].bucket_counts) == expected_client
    assert clients[api].count == 2 and abs(clients[api].sum - 3.03) < 1e-9
    expected_server = [0] * (len(BOUNDS) + 1)
    expected_server[bucket(0.02)] += 1
    expected_server[bucket(0.001)] += 1
    assert list(servers[api].bucket_counts) == expected_server
    assert abs(servers[api].sum - 0.021) < 1e-9
    # Database edge: server latency = client latency = the span's duration.
    for p in (servers[db], clients[db]):
        assert p.count == 1 and abs(p.sum - 0.005) < 1e-9
        assert p.bucket_counts[bucket(0.005)] == 1


def test_exemplar_carries_trace_id_preferring_kept() -> None:
    g = ServiceGraph()
    add_call(g, 1, T0 + 1 * S, 10, 5, kept=False)
    add_call(g, 2, T0 + 2 * S, 10, 5, kept=True)
    add_call(g, 3, T0 + 3 * S, 10, 5, kept=False)
    add_db_call(g, 4, T0 + 4 * S, 2, kept=False)
    req = roundtrip(encode_service_graph_windows(g.close(T0 + 15 * S)))
    metrics = graph_scope(req)
    totals = {edge_of(p): p for p in metrics[TOTAL].sum.data_points}

    (ex,) = totals[("frontend", "backend", "")].exemplars
    assert ex.trace_id == tid(2)
    assert ex.as_int == 1 and ex.time_unix_nano == T0 + 15 * S
    assert [(kv.key, kv.value.bool_value) for kv in ex.filtered_attributes] == [
        ("spansieve.trace.kept", True)
    ]
    (ex,) = totals[("backend", "orders", "database")].exemplars
    assert ex.trace_id == tid(4)
    assert [(kv.key, kv.value.bool_value) for kv in ex.filtered_attributes] == [
        ("spansieve.trace.kept", False)
    ]
    # Histograms carry no exemplar: the exemplar trace's latency is not kept.
    for name in (SERVER, CLIENT):
        assert all(not p.exemplars for p in metrics[name].histogram.data_points)


def test_no_failure_leaves_failed_metric_out() -> None:
    g = ServiceGraph()
    add_call(g, 1, T0 + 1 * S, 10, 5)
    req = roundtrip(encode_service_graph_windows(g.close(T0 + 15 * S)))
    assert set(graph_scope(req)) == {TOTAL, SERVER, CLIENT}


def test_several_windows_share_one_scope_one_point_per_edge_per_window() -> None:
    g = ServiceGraph()
    add_call(g, 1, T0 + 1 * S, 10, 5)  # window [T0, T0+15s): no failure
    add_call(g, 2, T0 + 16 * S, 10, 5, server_error=True)  # window [T0+15s, T0+30s)
    windows = g.close(T0 + 30 * S)
    assert len(windows) == 2
    req = roundtrip(encode_service_graph_windows(windows))
    assert len(req.resource_metrics) == 1
    metrics = graph_scope(req)
    assert set(metrics) == {TOTAL, FAILED, SERVER, CLIENT}
    starts = [p.start_time_unix_nano for p in metrics[TOTAL].sum.data_points]
    assert starts == [T0, T0 + 15 * S]
    assert [p.as_int for p in metrics[TOTAL].sum.data_points] == [1, 1]
    (failed,) = metrics[FAILED].sum.data_points
    assert (failed.start_time_unix_nano, failed.time_unix_nano) == (T0 + 15 * S, T0 + 30 * S)
    assert [p.start_time_unix_nano for p in metrics[SERVER].histogram.data_points] == starts
    assert [p.start_time_unix_nano for p in metrics[CLIENT].histogram.data_points] == starts


def test_empty_window_encodes_to_nothing() -> None:
    empty = ServiceGraphWindow(T0, T0 + 15 * S)
    req = encode_service_graph_windows([empty])
    assert len(req.resource_metrics) == 0
    assert req.SerializeToString() == b""
    assert len(encode_service_graph_windows([]).resource_metrics) == 0

    # A window with service-map data but no edge also adds nothing.
    g = ServiceGraph()
    g.add_trace(trace(span("lonely", "GET /", "internal", T0, T0 + MS)), tid(1), True)
    (window,) = g.close(T0 + 15 * S)
    assert not window.edges and window.isolated
    assert encode_service_graph_windows([window]).SerializeToString() == b""


def test_shares_a_request_with_red_windows() -> None:
    agg = RedAggregator(RedConfig())
    agg.add_trace(trace(span("api", "GET /", "server", T0, T0 + MS)), tid(1), True)
    g = ServiceGraph()
    add_call(g, 2, T0 + 1 * S, 10, 5)
    req = ExportMetricsServiceRequest()
    for w in agg.close(T0 + 15 * S):
        append_red_window(req, w)
    for w in g.close(T0 + 15 * S):
        append_service_graph_window(req, w)
    req = roundtrip(req)
    scopes = {sm.scope.name for rm in req.resource_metrics for sm in rm.scope_metrics}
    assert scopes == {"spansieve.spanmetrics", "spansieve.servicegraph"}
    assert len(req.resource_metrics) == 2  # RED: one per service; service graph: one
    assert len(graph_scope(req)[TOTAL].sum.data_points) == 1
