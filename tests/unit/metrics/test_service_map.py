"""Service-map documents (pipeline.metrics.service_map) in Data Prepper's format."""

from __future__ import annotations

import base64
import hashlib

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.metrics.service_graph import ServiceGraph
from pipeline.metrics.service_map import (
    IsolatedService,
    ServiceMapRelationship,
    documents,
    hash_id,
    service_map_documents,
    span_kind_name,
)
from tests.unit.metrics.test_service_graph import T0, TID, span, three_tier, trace

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
