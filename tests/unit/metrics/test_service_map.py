"""Service-map documents (pipeline.metrics.service_map) in Data Prepper's format."""

from __future__ import annotations

import base64
import hashlib

from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.metrics.service_graph import EdgeKey, ServiceGraph
from pipeline.metrics.service_map import (
    IsolatedService,
    ServiceMapRelationship,
    documents,
    hash_id,
    service_map_documents,
    span_kind_name,
)
from tests.unit.metrics.test_service_graph import (
    MS,
    T0,
    TID,
    only_window,
    sides_of,
    span,
    three_tier,
    trace,
)

K = Span.SpanKind
WINDOW_END = T0 + 15 * 1_000_000_000


def dp_hash(text: str) -> str:
    return base64.b64encode(hashlib.md5(text.encode()).digest()).decode()


def docs_of(*traces) -> dict[str, dict]:
    g = ServiceGraph()
    for td in traces:
        g.add_trace(td, TID, kept=False)
    return dict(service_map_documents(g.close(WINDOW_END)))


def test_three_tier_documents_exactly():
    docs = docs_of(three_tier())
    tg = "GET /checkout"

    def dest(svc, kind, domain, resource):
        d = {"resource": resource, "domain": domain}
        h = dp_hash(f"{svc},{kind},{tg},,{resource},{domain}")
        return h, {
            "serviceName": svc,
            "kind": kind,
            "destination": d,
            "target": None,
            "traceGroupName": tg,
            "hashId": h,
        }

    def targ(svc, kind, resource):
        t = {"resource": resource, "domain": svc}
        h = dp_hash(f"{svc},{kind},{tg},{resource},{svc},")
        return h, {
            "serviceName": svc,
            "kind": kind,
            "destination": None,
            "target": t,
            "traceGroupName": tg,
            "hashId": h,
        }

    expected = dict([
        dest("frontend", "SPAN_KIND_CLIENT", "checkout", "POST /checkout"),
        targ("checkout", "SPAN_KIND_SERVER", "POST /checkout"),
        dest("checkout", "SPAN_KIND_CLIENT", "payments", "POST /pay"),
        targ("payments", "SPAN_KIND_SERVER", "POST /pay"),
        dest("checkout", "SPAN_KIND_PRODUCER", "notifier", "orders process"),
        targ("notifier", "SPAN_KIND_CONSUMER", "orders process"),
    ])  # fmt: skip
    assert docs == expected
    # The database and the peer.service virtual nodes are not services to Data Prepper.
    assert not any(d["serviceName"] in ("orders", "fx-rates") for d in docs.values())


def test_ids_are_idempotent_across_windows_and_reruns():
    a = docs_of(three_tier())
    b = docs_of(three_tier(), three_tier(base=T0 + 5 * 1_000_000_000))
    assert a == b
    g = ServiceGraph()
    g.add_trace(three_tier(), TID, kept=False)
    (w,) = g.close(WINDOW_END)
    assert list(service_map_documents(w)) == list(service_map_documents([w, w]))


def test_isolated_services_and_missing_root():
    single = trace(("solo", [span(1, None, K.SPAN_KIND_SERVER, "GET /solo", 0, 10)]))
    docs = docs_of(single)
    h = dp_hash("solo,null,GET /solo,,")
    assert docs == {
        h: {
            "serviceName": "solo",
            "kind": None,
            "destination": None,
            "target": None,
            "traceGroupName": "GET /solo",
            "hashId": h,
        }
    }
    # No root span in the trace: no relationship (Data Prepper skips it), services isolated.
    rootless = trace(
        ("a", [span(2, 1, K.SPAN_KIND_CLIENT, "call", 1, 9)]),
        ("b", [span(3, 2, K.SPAN_KIND_SERVER, "serve", 2, 8)]),
    )
    docs = docs_of(rootless)
    assert sorted((d["serviceName"], d["traceGroupName"]) for d in docs.values()) == [
        ("a", None),
        ("b", None),
    ]
    assert dp_hash("a,null,null,,") in docs


def test_cross_service_parent_child_of_any_kind_same_service_not():
    td = trace(
        ("a", [span(1, None, K.SPAN_KIND_SERVER, "root", 0, 50),
               span(2, 1, K.SPAN_KIND_INTERNAL, "work", 1, 30),
               span(4, 2, K.SPAN_KIND_CLIENT, "self", 31, 40)]),
        ("b", [span(3, 2, K.SPAN_KIND_INTERNAL, "job", 2, 8)]),
        ("a2", []),
    )  # fmt: skip
    docs = docs_of(td)
    kinds = sorted((d["serviceName"], d["kind"]) for d in docs.values())
    assert kinds == [("a", "SPAN_KIND_INTERNAL"), ("b", "SPAN_KIND_INTERNAL")]


def test_hash_id_formula_and_helpers():
    assert hash_id("s", None, None, None, None) == dp_hash("s,null,null,,")
    assert span_kind_name(3) == "SPAN_KIND_CLIENT" and span_kind_name(42) == (
        "SPAN_KIND_UNSPECIFIED"
    )
    rel = ServiceMapRelationship("a", "SPAN_KIND_CLIENT", "b", "SPAN_KIND_SERVER", "GET /", "t")
    ids = [i for i, _ in documents([rel, rel], [IsolatedService("c", "t")])]
    assert len(ids) == len(set(ids)) == 3


# --- the sampler's path: ServiceGraph.add_sides with the RED pass's sides ---------------


def sampler_graph(*traces) -> ServiceGraph:
    g = ServiceGraph()
    for td in traces:
        spans, codes, times, clients, servers, services = sides_of(td)
        raw = td.SerializeToString()
        g.add_sides(spans, codes, times, clients, servers, TID, False, services, raw)
    return g


def sampler_docs(*traces) -> dict[str, dict]:
    return dict(service_map_documents(sampler_graph(*traces).close(WINDOW_END)))


def relationships_of(docs: dict[str, dict]) -> set[tuple]:
    """(service, kind, destination, target, trace group) of every document."""

    def endpoint(e: dict | None) -> tuple[str, str] | None:
        return None if e is None else (e["domain"], e["resource"])

    return {
        (
            d["serviceName"],
            d["kind"],
            endpoint(d["destination"]),
            endpoint(d["target"]),
            d["traceGroupName"],
        )
        for d in docs.values()
    }


def batch_job(base: int = T0) -> TracesData:
    return trace(
        ("batch", [span(1, None, K.SPAN_KIND_INTERNAL, "nightly report", 0, 1_000, base=base),
                   span(2, 1, K.SPAN_KIND_INTERNAL, "step", 1, 500, base=base)]),
    )  # fmt: skip


def test_sampler_path_a_trace_of_internal_spans_only_is_an_isolated_service():
    """No client- or server-side span: the service is still on the map, in the window
    of the trace's latest span end, as Data Prepper records it."""
    assert sampler_docs(batch_job()) == docs_of(batch_job())
    assert relationships_of(sampler_docs(batch_job())) == {
        ("batch", None, None, None, "nightly report")
    }
    g = sampler_graph(batch_job(base=T0 + 14_500 * MS))  # ends after T0 + 15 s
    assert g.close(WINDOW_END) == []
    (w,) = g.close(WINDOW_END + 15 * 1_000_000_000)
    assert w.start_unix_nanos == WINDOW_END and w.isolated == {("batch", "nightly report")}
    # Late internal spans of a decided trace (no root among them) add nothing.
    late = trace(("batch", [span(3, 1, K.SPAN_KIND_INTERNAL, "late step", 2, 900)]))
    assert sampler_docs(late) == {}


def stock() -> TracesData:
    """A call whose caller made no client span: the server span's parent is the
    caller's server span."""
    return trace(
        ("frontend", [span(1, None, K.SPAN_KIND_SERVER, "GET /stock", 0, 60)]),
        ("inventory", [span(2, 1, K.SPAN_KIND_SERVER, "CheckStock", 5, 45)]),
    )


def test_sampler_path_a_call_without_a_client_span_links_the_services():
    docs = sampler_docs(stock())
    assert relationships_of(docs) == {
        ("frontend", "SPAN_KIND_SERVER", ("inventory", "CheckStock"), None, "GET /stock"),
        ("inventory", "SPAN_KIND_SERVER", None, ("inventory", "CheckStock"), "GET /stock"),
    }
    assert docs == docs_of(stock())
    # The service graph is the connector's: no client span, no edge but the root's.
    assert set(only_window(sampler_graph(stock())).edges) == {
        EdgeKey("user", "frontend", "virtual_node")
    }


def fan_out() -> TracesData:
    """Every server-side child of a client-side span, a database client's too, and a
    chain of server spans under a non-root server span, among same-service children."""
    return trace(
        ("a", [span(1, None, K.SPAN_KIND_SERVER, "root", 0, 100),
               span(2, 1, K.SPAN_KIND_CLIENT, "call", 1, 30),
               span(3, 1, K.SPAN_KIND_PRODUCER, "publish", 31, 32),
               span(4, 1, K.SPAN_KIND_CLIENT, "query", 33, 40, attrs={"db.name": "orders"}),
               span(5, 1, K.SPAN_KIND_INTERNAL, "work", 41, 90)]),
        ("b", [span(10, 2, K.SPAN_KIND_SERVER, "try 1", 2, 8),
               span(11, 2, K.SPAN_KIND_SERVER, "try 2", 9, 20),
               span(12, 10, K.SPAN_KIND_SERVER, "b inner", 3, 7)]),
        ("c", [span(13, 3, K.SPAN_KIND_CONSUMER, "consume", 33, 50),
               span(14, 12, K.SPAN_KIND_SERVER, "c under b", 4, 6)]),
        ("d", [span(15, 3, K.SPAN_KIND_CONSUMER, "consume", 34, 60),
               span(16, 4, K.SPAN_KIND_SERVER, "sql", 34, 39)]),
    )  # fmt: skip


def test_sampler_path_relates_every_server_side_child_as_data_prepper():
    docs = sampler_docs(fan_out())
    destinations = {
        (d["serviceName"], d["kind"], d["destination"]["domain"], d["destination"]["resource"])
        for d in docs.values()
        if d["destination"]
    }
    assert destinations == {
        ("a", "SPAN_KIND_CLIENT", "b", "try 1"),
        ("a", "SPAN_KIND_CLIENT", "b", "try 2"),
        ("b", "SPAN_KIND_SERVER", "c", "c under b"),
        ("a", "SPAN_KIND_PRODUCER", "c", "consume"),
        ("a", "SPAN_KIND_PRODUCER", "d", "consume"),
        ("a", "SPAN_KIND_CLIENT", "d", "sql"),
    }
    # The same documents as Data Prepper's every-pair rule (add_trace) where no internal
    # span takes part in a cross-service pair.
    assert docs == docs_of(fan_out())
    assert docs_of(three_tier()) == sampler_docs(three_tier())
    # The service graph still pairs a client-side span with its first server child only.
    edges = only_window(sampler_graph(fan_out())).edges
    assert edges[EdgeKey("a", "b", "")].requests == 1
    assert edges[EdgeKey("a", "c", "messaging_system")].requests == 1
    assert EdgeKey("a", "d", "messaging_system") not in edges
    assert edges[EdgeKey("a", "orders", "database")].requests == 1


def test_sampler_path_relationships_are_kept_once_per_window():
    g = sampler_graph(stock(), stock(), fan_out(), fan_out())
    (w,) = g.close(WINDOW_END)
    assert len(w.relationships) == len(w.pair_keys) == 7


def test_sampler_path_leaves_out_pairs_with_an_internal_span():
    """The RED pass hands over client- and server-side spans only: a pair with an
    internal span of another service (Data Prepper relates it) is left out, and its
    services are isolated unless another pair links them."""
    td = trace(
        ("a", [span(1, None, K.SPAN_KIND_SERVER, "root", 0, 50),
               span(2, 1, K.SPAN_KIND_INTERNAL, "handler", 1, 40)]),
        ("b", [span(3, 2, K.SPAN_KIND_SERVER, "serve", 2, 30)]),
    )  # fmt: skip
    assert relationships_of(sampler_docs(td)) == {
        ("a", None, None, None, "root"),
        ("b", None, None, None, "root"),
    }
    assert ("a", "SPAN_KIND_INTERNAL", ("b", "serve"), None, "root") in relationships_of(
        docs_of(td)
    )
