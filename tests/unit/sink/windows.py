"""Span-metrics messages as the sampler sends them, built with the real aggregators and
encoder (also used by tests/integration/test_metrics_store.py).

``red_window`` / ``graph_window`` close one 15 s window starting at ``start`` over a few
fixed traces; ``message`` encodes one closed window into (key, value) exactly as
``pipeline.sampler.span_metrics.SpanMetrics.close`` does.
"""

from __future__ import annotations

from pipeline.metrics.otlp import encode_red_windows, encode_service_graph_windows
from pipeline.metrics.red import Dimension, RedAggregator, RedConfig, RedWindow
from pipeline.metrics.service_graph import ServiceGraph, ServiceGraphWindow
from pipeline.sampler.span_metrics import window_key
from tests.unit.metrics.spans import span, tid, trace

S = 1_000_000_000
MS = 1_000_000
WINDOW = 15 * S
T0 = 1_700_000_010 * S  # 2023-11-14T22:13:30Z, on a 15 s boundary


def sid(i: int) -> bytes:
    return i.to_bytes(8, "big")


def red_window(start: int = T0, *, max_series: int = 1000) -> RedWindow:
    """api "GET /" SERVER: 2 ok calls (3 ms, 7 ms, http.method GET) and 1 error (120 ms);
    db "SELECT" CLIENT: 1 call (1 ms, status OK)."""
    agg = RedAggregator(
        RedConfig(dimensions=(Dimension("http.method"),), max_series_per_service=max_series)
    )
    at = start + S
    agg.add_trace(
        trace(
            span("api", "GET /", "server", at, at + 3 * MS, span_id=sid(1),
                 attributes={"http.method": "GET"}),
            span("api", "GET /", "server", at, at + 7 * MS, span_id=sid(2),
                 attributes={"http.method": "GET"}),
            span("api", "GET /", "server", at, at + 120 * MS, span_id=sid(3), status="error"),
            span("db", "SELECT", "client", at, at + 1 * MS, span_id=sid(4), status="ok"),
        ),
        tid(1),
        True,
    )  # fmt: skip
    (window,) = agg.close(start + WINDOW)
    assert window.start_unix_nanos == start
    return window


def graph_window(start: int = T0) -> ServiceGraphWindow:
    """frontend -> backend: 2 requests (1 failed); backend -> orders (database): 1."""
    graph = ServiceGraph(service_map=False)

    def call(n: int, at: int, client_ms: int, server_ms: int, error: bool) -> None:
        graph.add_trace(
            trace(
                span("frontend", "GET /api", "client", at - client_ms * MS, at,
                     span_id=sid(1), trace_id=tid(n)),
                span("backend", "GET /api", "server", at - client_ms * MS,
                     at - client_ms * MS + server_ms * MS, span_id=sid(2), parent=sid(1),
                     trace_id=tid(n), status="error" if error else "unset"),
            ),
            tid(n),
            True,
        )  # fmt: skip

    call(10, start + 1 * S, 30, 20, False)
    call(11, start + 2 * S, 3000, 1, True)
    graph.add_trace(
        trace(
            span("backend", "SELECT", "client", start + 3 * S - 5 * MS, start + 3 * S,
                 span_id=sid(3), attributes={"db.name": "orders"}, trace_id=tid(12)),
        ),
        tid(12),
        False,
    )  # fmt: skip
    (window,) = graph.close(start + WINDOW)
    assert window.start_unix_nanos == start
    return window


def message(window: RedWindow | ServiceGraphWindow, partition: int = 3) -> tuple[bytes, bytes]:
    """(key, value) of one closed window, as the sampler sends it."""
    if isinstance(window, RedWindow):
        request = encode_red_windows([window])
    else:
        request = encode_service_graph_windows([window])
    return window_key(partition, window.start_unix_nanos), request.SerializeToString()
