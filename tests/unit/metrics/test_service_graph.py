"""Service-graph pairing (pipeline.metrics.service_graph), as the servicegraph connector pairs."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData

from pipeline.metrics.red import RedAggregator
from pipeline.metrics.service_graph import (
    DEFAULT_LATENCY_BUCKETS_SECONDS,
    EdgeKey,
    ServiceGraph,
)
from pipeline.wire.otlp import flat_spans

T0 = 1_700_000_010 * 1_000_000_000  # aligned on a 15 s window
MS = 1_000_000
TID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
K = Span.SpanKind


def _attrs(attrs: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()]


def span(
    sid: int,
    parent: int | None,
    kind: int,
    name: str,
    start_ms: float,
    end_ms: float,
    *,
    error: bool = False,
    attrs: dict[str, str] | None = None,
    base: int = T0,
) -> Span:
    s = Span(
        trace_id=TID,
        span_id=sid.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        kind=kind,
        start_time_unix_nano=base + int(start_ms * MS),
        end_time_unix_nano=base + int(end_ms * MS),
        attributes=_attrs(attrs or {}),
    )
    if error:
        s.status.code = 2
    return s


def trace(*groups: tuple[str | None, list[Span]]) -> TracesData:
    td = TracesData()
    for service, spans in groups:
        res = Resource(attributes=_attrs({"service.name": service} if service else {}))
        td.resource_spans.append(ResourceSpans(resource=res, scope_spans=[ScopeSpans(spans=spans)]))
    return td


def three_tier(base: int = T0, payments_error: bool = True) -> TracesData:
    """11 spans: frontend -> checkout -> payments (HTTP), checkout -> postgres, -> kafka."""
    return trace(
        (
            "frontend",
            [
                span(1, None, K.SPAN_KIND_SERVER, "GET /checkout", 0, 100, base=base),
                span(2, 1, K.SPAN_KIND_CLIENT, "POST /checkout", 5, 95, base=base),
            ],
        ),
        (
            "checkout",
            [
                span(3, 2, K.SPAN_KIND_SERVER, "POST /checkout", 10, 90, base=base),
                span(4, 3, K.SPAN_KIND_INTERNAL, "prepare", 11, 19, base=base),
                span(5, 3, K.SPAN_KIND_CLIENT, "POST /pay", 20, 60, base=base),
                span(6, 3, K.SPAN_KIND_CLIENT, "SELECT orders", 62, 65, base=base,
                     attrs={"db.system": "postgresql", "db.name": "orders"}),
                span(7, 3, K.SPAN_KIND_PRODUCER, "orders publish", 66, 68, base=base,
                     attrs={"messaging.system": "kafka"}),
            ],
        ),
        (
            "payments",
            [
                span(8, 5, K.SPAN_KIND_SERVER, "POST /pay", 22, 58, base=base,
                     error=payments_error),
                span(9, 8, K.SPAN_KIND_INTERNAL, "charge", 23, 40, base=base),
                span(11, 8, K.SPAN_KIND_CLIENT, "GET /rates", 41, 49, base=base,
                     attrs={"peer.service": "fx-rates"}),
            ],
        ),
        (
            "notifier",
            [span(10, 7, K.SPAN_KIND_CONSUMER, "orders process", 70, 80, base=base)],
        ),
    )  # fmt: skip


def bucket(seconds: float) -> list[int]:
    counts = [0] * (len(DEFAULT_LATENCY_BUCKETS_SECONDS) + 1)
    counts[DEFAULT_LATENCY_BUCKETS_SECONDS.index(seconds)] += 1
    return counts


def only_window(g: ServiceGraph):
    (w,) = g.close(T0 + 15 * 1_000_000_000)
    return w


def test_default_buckets_are_the_connectors():
    assert DEFAULT_LATENCY_BUCKETS_SECONDS == (
        0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15,
    )  # fmt: skip


def test_three_tier_edges_counts_and_labels():
    g = ServiceGraph()
    g.add_trace(three_tier(), TID, kept=False)
    w = only_window(g)
    got = {k: (s.requests, s.failed) for k, s in w.edges.items()}
    assert got == {
        EdgeKey("user", "frontend", "virtual_node"): (1, 0),
        EdgeKey("frontend", "checkout", ""): (1, 0),
        EdgeKey("checkout", "payments", ""): (1, 1),
        EdgeKey("checkout", "orders", "database"): (1, 0),
        EdgeKey("checkout", "notifier", "messaging_system"): (1, 0),
        EdgeKey("payments", "fx-rates", "virtual_node"): (1, 0),
    }
    assert w.start_unix_nanos == T0 and w.end_unix_nanos == T0 + 15_000_000_000


def test_histograms_in_seconds_with_le_buckets():
    g = ServiceGraph()
    g.add_trace(three_tier(), TID, kept=False)
    e = only_window(g).edges
    fc = e[EdgeKey("frontend", "checkout", "")]
    assert fc.client_seconds.counts == bucket(0.1)  # 0.09 s
    assert fc.server_seconds.counts == bucket(0.1)  # 0.08 s
    assert fc.client_seconds.sum == pytest.approx(0.09)
    assert fc.server_seconds.sum == pytest.approx(0.08)
    cp = e[EdgeKey("checkout", "payments", "")]
    assert cp.client_seconds.counts == bucket(0.05)  # 0.04 s
    assert cp.server_seconds.counts == bucket(0.05)  # 0.036 s
    db = e[EdgeKey("checkout", "orders", "database")]
    assert db.client_seconds.counts == db.server_seconds.counts == bucket(0.004)  # 3 ms both
    mq = e[EdgeKey("checkout", "notifier", "messaging_system")]
    assert mq.client_seconds.counts == bucket(0.002)  # exactly on the bound: le
    assert mq.server_seconds.counts == bucket(0.01)  # exactly on the bound: le
    vn = e[EdgeKey("payments", "fx-rates", "virtual_node")]
    assert vn.server_seconds.counts == bucket(0.002)  # virtual server: latency 0
    assert vn.server_seconds.sum == 0.0 and vn.client_seconds.sum == pytest.approx(0.008)
    user = e[EdgeKey("user", "frontend", "virtual_node")]
    assert user.client_seconds.sum == 0.0 and user.server_seconds.sum == pytest.approx(0.1)
    assert all(s.client_seconds.count == s.server_seconds.count == 1 for s in e.values())


def test_failed_when_either_side_errors():
    td = trace(
        ("a", [span(1, None, K.SPAN_KIND_INTERNAL, "job", 0, 10),
               span(2, 1, K.SPAN_KIND_CLIENT, "call", 1, 9, error=True)]),
        ("b", [span(3, 2, K.SPAN_KIND_SERVER, "serve", 2, 8)]),
    )  # fmt: skip
    g = ServiceGraph()
    g.add_trace(td, TID, kept=False)
    st = only_window(g).edges[EdgeKey("a", "b", "")]
    assert (st.requests, st.failed) == (1, 1)


def test_virtual_node_attribute_priority_and_unknown():
    td = trace(
        ("svc", [
            span(1, None, K.SPAN_KIND_INTERNAL, "job", 0, 50),
            # peer.service beats db.system
            span(2, 1, K.SPAN_KIND_CLIENT, "a", 1, 2,
                 attrs={"db.system": "redis", "peer.service": "cache"}),
            # db.system only (no db.name): a virtual node, not a database edge
            span(3, 1, K.SPAN_KIND_CLIENT, "b", 3, 4, attrs={"db.system": "postgresql"}),
            # messaging.system is not a default peer attribute of the connector
            span(4, 1, K.SPAN_KIND_PRODUCER, "c", 5, 6, attrs={"messaging.system": "kafka"}),
            span(5, 1, K.SPAN_KIND_CLIENT, "d", 7, 8),
        ]),
    )  # fmt: skip
    g = ServiceGraph()
    g.add_trace(td, TID, kept=False)
    got = {k: s.requests for k, s in only_window(g).edges.items()}
    assert got == {
        EdgeKey("svc", "cache", "virtual_node"): 1,
        EdgeKey("svc", "postgresql", "virtual_node"): 1,
        EdgeKey("svc", "unknown", "virtual_node"): 2,
    }


def test_db_name_wins_over_a_server_child_and_resource_first():
    td = trace(
        ("app", [span(1, None, K.SPAN_KIND_INTERNAL, "job", 0, 50),
                 span(2, 1, K.SPAN_KIND_CLIENT, "q", 1, 9, attrs={"db.name": "orders"})]),
        ("dbproxy", [span(3, 2, K.SPAN_KIND_SERVER, "q", 2, 8)]),
    )  # fmt: skip
    g = ServiceGraph()
    g.add_trace(td, TID, kept=False)
    assert set(only_window(g).edges) == {EdgeKey("app", "orders", "database")}


def test_same_service_pairs_count_and_unpaired_servers_do_not():
    td = trace(
        ("a", [
            span(1, None, K.SPAN_KIND_INTERNAL, "job", 0, 50),
            span(2, 1, K.SPAN_KIND_CLIENT, "self call", 1, 9),
            span(3, 2, K.SPAN_KIND_SERVER, "self serve", 2, 8),
            span(4, 1, K.SPAN_KIND_SERVER, "server under internal", 10, 20),
            span(5, 99, K.SPAN_KIND_SERVER, "server of a missing parent", 21, 30),
        ]),
    )  # fmt: skip
    g = ServiceGraph()
    g.add_trace(td, TID, kept=False)
    assert {k: s.requests for k, s in only_window(g).edges.items()} == {EdgeKey("a", "a", ""): 1}


def test_first_server_child_pairs_once():
    td = trace(
        ("a", [span(1, None, K.SPAN_KIND_INTERNAL, "job", 0, 50),
               span(2, 1, K.SPAN_KIND_CLIENT, "call", 1, 30)]),
        ("b", [span(3, 2, K.SPAN_KIND_SERVER, "try 1", 2, 8),
               span(4, 2, K.SPAN_KIND_SERVER, "try 2", 9, 20)]),
    )  # fmt: skip
    g = ServiceGraph()
    g.add_trace(td, TID, kept=False)
    st = only_window(g).edges[EdgeKey("a", "b", "")]
    assert st.requests == 1 and st.server_seconds.sum == pytest.approx(0.006)


def test_resources_without_service_name_are_skipped():
    td = trace(
        (None, [span(1, None, K.SPAN_KIND_SERVER, "root", 0, 50),
                span(2, 1, K.SPAN_KIND_CLIENT, "call", 1, 30)]),
        ("b", [span(3, 2, K.SPAN_KIND_SERVER, "serve", 2, 8)]),
    )  # fmt: skip
    g = ServiceGraph()
    g.add_trace(td, TID, kept=False)
    assert g.close(T0 + 15 * 1_000_000_000)[0].edges == {}


def test_windows_keyed_by_client_end_and_closed_in_order():
    g = ServiceGraph(window_seconds=15)
    g.add_trace(three_tier(base=T0 + 20 * 1_000_000_000), TID, kept=False)
    g.add_trace(three_tier(base=T0), TID, kept=False)
    # A client span ending in the next window puts its edge there.
    g.add_trace(
        trace(("a", [span(1, None, K.SPAN_KIND_INTERNAL, "job", 14_000, 15_500),
                     span(2, 1, K.SPAN_KIND_CLIENT, "call", 14_500, 15_000)]),
              ("b", [span(3, 2, K.SPAN_KIND_SERVER, "serve", 14_600, 14_900)])),
        TID, kept=False,
    )  # fmt: skip
    assert g.close(T0 + 15 * 1_000_000_000 - 1) == []
    (first,) = g.close(T0 + 15 * 1_000_000_000)
    assert first.start_unix_nanos == T0
    assert EdgeKey("a", "b", "") not in first.edges
    assert sum(s.requests for s in first.edges.values()) == 6
    assert [w.start_unix_nanos for w in g.open_windows] == [T0 + 15_000_000_000]
    (second,) = g.close(T0 + 60 * 1_000_000_000)
    assert second.edges[EdgeKey("a", "b", "")].requests == 1
    assert second.edges[EdgeKey("frontend", "checkout", "")].requests == 1
    assert g.open_windows == [] and g.late_edges == 0


def test_late_edges_go_to_the_earliest_open_window_counted_once():
    g = ServiceGraph()
    g.add_trace(three_tier(), TID, kept=False)
    (closed,) = g.close(T0 + 20 * 1_000_000_000)  # closes [T0, T0+15s) only
    g.add_trace(three_tier(base=T0 + 1_000_000_000), TID, kept=False)  # late: window closed
    assert g.late_edges == 6
    (w,) = g.close(T0 + 30 * 1_000_000_000)
    assert w.start_unix_nanos == T0 + 15_000_000_000
    assert {k: s.requests for k, s in w.edges.items()} == {
        k: s.requests for k, s in closed.edges.items()
    }


def test_exemplar_prefers_kept_traces():
    g = ServiceGraph()
    dropped, kept = b"\x01" * 16, b"\x02" * 16
    g.add_trace(three_tier(), dropped, kept=False)
    g.add_trace(three_tier(), kept, kept=True)
    g.add_trace(three_tier(), b"\x03" * 16, kept=False)
    st = only_window(g).edges[EdgeKey("frontend", "checkout", "")]
    assert st.requests == 3 and st.exemplar_trace_id == kept and st.exemplar_kept


def test_validation():
    with pytest.raises(ValueError):
        ServiceGraph(window_seconds=0)
    with pytest.raises(ValueError):
        ServiceGraph(latency_buckets_seconds=(1.0, 0.5))


def sides_of(td: TracesData) -> tuple:
    """What the sampler hands the graph: flat spans, codes, times and both sides."""
    spans, runs = flat_spans(td.resource_spans)
    clients: list = []
    servers: list = []
    services: set = set()
    RedAggregator().add_spans(spans, runs, TID, False, sides=(clients, servers, services))
    codes = [sp.status.code for sp in spans]
    times = [(sp.start_time_unix_nano, sp.end_time_unix_nano) for sp in spans]
    return spans, codes, times, clients, servers, services


@pytest.mark.parametrize("db_key", ["db.name", "db.namespace"])
def test_the_traces_bytes_only_spare_lookups(db_key):
    """Given the trace's bytes, the graph skips the database-name lookups when no
    ``db.name`` key is in them (``db.namespace`` contains "db.name" but is another key),
    with the same edges as without them; on the resource or on the span alike."""
    on_span = trace(
        ("api", [span(1, None, K.SPAN_KIND_SERVER, "GET /", 0, 10),
                 span(2, 1, K.SPAN_KIND_CLIENT, "SELECT", 1, 4, attrs={db_key: "orders"}),
                 span(3, 1, K.SPAN_KIND_CLIENT, "GET /rates", 5, 9)]),
    )  # fmt: skip
    on_resource = trace(("api", [span(2, None, K.SPAN_KIND_CLIENT, "SELECT", 1, 4)]))
    on_resource.resource_spans[0].resource.attributes.extend(_attrs({db_key: "orders"}))
    for td in (on_span, on_resource):
        edges = []
        for raw in (None, td.SerializeToString()):
            g = ServiceGraph()
            spans, codes, times, clients, servers, services = sides_of(td)
            g.add_sides(spans, codes, times, clients, servers, TID, False, services, raw)
            edges.append(
                {k: (v.requests, v.server_seconds.counts) for k, v in only_window(g).edges.items()}
            )
        assert edges[0] == edges[1]
        database = EdgeKey("api", "orders", "database")
        assert (database in edges[0]) is (db_key == "db.name")
