"""Stored documents -> Jaeger JSON: references, typed tags, logs, processes, dotted keys.

Documents are made by the sink's own encoder from OTLP spans, so these tests read exactly
what OpenSearch holds.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.query.jaeger import (
    Base64,
    envelope,
    error,
    iso_micros,
    jaeger_trace,
    span_kind_name,
    tag,
)
from pipeline.sink.documents import span_documents
from tests.unit.otlp_builders import add_attributes, resource_spans

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
OTHER_TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT, CHILD, DB, LINKED = (bytes([n]) * 8 for n in (1, 2, 3, 4))
T0 = 1_700_000_000_123_456_789


def sample_trace() -> TracesData:
    """frontend root -> cart child (error, event, link) -> cart db client; the db span's
    resource repeats the cart one (same process), the frontend's differs."""
    data = TracesData()
    root = resource_spans(data, {"service.name": "frontend", "host.name": "a"}, "otel.http", "1.2")
    cart = resource_spans(data, {"service.name": "cart", "host.name": "b", "cpu.count": 4})
    db = resource_spans(data, {"service.name": "cart", "host.name": "b", "cpu.count": 4})
    span = root.add(
        trace_id=TRACE,
        span_id=ROOT,
        name="GET /cart",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 250_000_999,
        trace_state="vendor=1",
    )
    span.status.code = 1
    add_attributes(
        span.attributes,
        {"http.request.method": "GET", "http.response.status_code": 200, "ratio": 0.25},
    )
    span = cart.add(
        trace_id=TRACE,
        span_id=CHILD,
        parent_span_id=ROOT,
        name="cart.get",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=T0 + 1_000,
        end_time_unix_nano=T0 + 200_000_000,
    )
    span.status.code, span.status.message = 2, "boom"
    add_attributes(span.attributes, {"retry": True, "tags.list": ["a", "b"]})
    event = span.events.add(name="exception", time_unix_nano=T0 + 5_000)
    add_attributes(event.attributes, {"exception.type": "KeyError", "attempt": 3})
    span.links.add(trace_id=OTHER_TRACE, span_id=LINKED, trace_state="k=v")
    db.add(
        trace_id=TRACE,
        span_id=DB,
        parent_span_id=CHILD,
        name="SELECT cart",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + 2_000,
        end_time_unix_nano=T0 + 3_000,
    )
    return data


def documents() -> list[dict[str, Any]]:
    return [doc for _id, doc in span_documents(sample_trace())]


def spans_by_name(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["operationName"]: span for span in trace["spans"]}


def tags_of(span: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {t["key"]: (t["type"], t["value"]) for t in span["tags"]}


def test_trace_shape_and_times():
    trace = jaeger_trace(TRACE.hex(), reversed(documents()))
    assert set(trace) == {"traceID", "spans", "processes", "warnings"}
    assert trace["traceID"] == TRACE.hex() and trace["warnings"] is None
    assert [s["operationName"] for s in trace["spans"]] == ["GET /cart", "cart.get", "SELECT cart"]
    root = trace["spans"][0]
    assert root["traceID"] == TRACE.hex() and root["spanID"] == ROOT.hex()
    assert root["startTime"] == T0 // 1000  # microseconds, an int
    assert root["duration"] == 250_000  # 250 000 999 ns -> 250 000 µs
    assert root["warnings"] is None and root["references"] == [] and root["logs"] == []


def test_references_parent_and_links():
    spans = spans_by_name(jaeger_trace(TRACE.hex(), documents()))
    assert spans["cart.get"]["references"] == [
        {"refType": "CHILD_OF", "traceID": TRACE.hex(), "spanID": ROOT.hex()},
        {"refType": "FOLLOWS_FROM", "traceID": OTHER_TRACE.hex(), "spanID": LINKED.hex()},
    ]
    assert spans["SELECT cart"]["references"] == [
        {"refType": "CHILD_OF", "traceID": TRACE.hex(), "spanID": CHILD.hex()}
    ]


def test_tags_keep_types_and_dotted_keys():
    spans = spans_by_name(jaeger_trace(TRACE.hex(), documents()))
    root = tags_of(spans["GET /cart"])
    assert root == {
        "http.request.method": ("string", "GET"),  # stored as span.attributes.http@request@method
        "http.response.status_code": ("int64", 200),
        "ratio": ("float64", 0.25),
        "span.kind": ("string", "server"),
        "otel.status_code": ("string", "OK"),
        "otel.scope.name": ("string", "otel.http"),
        "otel.scope.version": ("string", "1.2"),
        "otel.library.name": ("string", "otel.http"),
        "otel.library.version": ("string", "1.2"),
        "w3c.tracestate": ("string", "vendor=1"),
    }
    cart = tags_of(spans["cart.get"])
    assert cart["retry"] == ("bool", True)
    assert cart["tags.list"] == ("string", '["a","b"]')  # arrays are stored as JSON text
    assert cart["span.kind"] == ("string", "internal")
    assert cart["otel.status_code"] == ("string", "ERROR")
    assert cart["otel.status_description"] == ("string", "boom")
    assert cart["error"] == ("bool", True)
    db = tags_of(spans["SELECT cart"])
    assert "error" not in db and "otel.status_code" not in db  # unset status: no tags
    assert db["span.kind"] == ("string", "client")


def test_events_become_logs():
    spans = spans_by_name(jaeger_trace(TRACE.hex(), documents()))
    assert spans["cart.get"]["logs"] == [
        {
            "timestamp": (T0 + 5_000) // 1000,
            "fields": [
                {"key": "event", "type": "string", "value": "exception"},
                {"key": "exception.type", "type": "string", "value": "KeyError"},
                {"key": "attempt", "type": "int64", "value": 3},
            ],
        }
    ]


def test_processes_are_deduplicated_in_first_seen_order():
    trace = jaeger_trace(TRACE.hex(), documents())
    assert trace["processes"] == {
        "p1": {
            "serviceName": "frontend",
            "tags": [{"key": "host.name", "type": "string", "value": "a"}],
        },
        "p2": {
            "serviceName": "cart",
            "tags": [
                {"key": "host.name", "type": "string", "value": "b"},
                {"key": "cpu.count", "type": "int64", "value": 4},
            ],
        },
    }
    spans = spans_by_name(trace)
    assert [spans[name]["processID"] for name in ("GET /cart", "cart.get", "SELECT cart")] == [
        "p1",
        "p2",
        "p2",
    ]


def test_processes_differ_by_tag_type_and_value():
    docs = documents()
    other = dict(docs[2], **{"resource.attributes.cpu@count": True, "spanId": "09" * 8})
    trace = jaeger_trace(TRACE.hex(), [*docs, other])
    assert len(trace["processes"]) == 3  # cpu.count true is not cpu.count 1 or 4


def test_repeated_documents_show_once():
    docs = documents()
    trace = jaeger_trace(TRACE.hex(), docs + docs)
    assert len(trace["spans"]) == 3


def test_tag_types():
    assert tag("a", True)["type"] == "bool"
    assert tag("a", 0)["type"] == "int64"
    assert tag("a", 2**62)["value"] == 2**62
    assert tag("a", 1.0)["type"] == "float64"
    assert tag("a", "x")["type"] == "string"
    assert tag("a", Base64("AP8=")) == {"key": "a", "type": "binary", "value": "AP8="}
    assert type(tag("a", Base64("AP8="))["value"]) is str


def bytes_trace() -> TracesData:
    """One span with bytes in its attributes, its resource's and an event's, next to a
    string whose text is the same base64."""
    data = TracesData()
    spans = resource_spans(data, {"service.name": "vault", "host.id": b"\x01\x02\x03"})
    span = spans.add(
        trace_id=TRACE,
        span_id=ROOT,
        name="sign",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 1_000_000,
    )
    add_attributes(span.attributes, {"digest": b"\xfb\xff", "digest.text": "+/8="})
    event = span.events.add(name="signed", time_unix_nano=T0 + 1_000)
    add_attributes(event.attributes, {"signature": b"\x00", "length": 1})
    span.links.add(trace_id=OTHER_TRACE, span_id=LINKED)
    add_attributes(span.links[0].attributes, {"token": b"\x07"})
    return data


def test_bytes_are_binary_tags_in_base64():
    """As Jaeger answers for an OTLP bytes attribute: type ``binary``, value base64."""
    docs = [doc for _id, doc in span_documents(bytes_trace())]
    trace = jaeger_trace(TRACE.hex(), docs)
    [span] = trace["spans"]
    tags = tags_of(span)
    assert tags["digest"] == ("binary", "+/8=")
    assert tags["digest.text"] == ("string", "+/8=")
    assert trace["processes"]["p1"]["tags"] == [
        {"key": "host.id", "type": "binary", "value": "AQID"}
    ]
    assert span["logs"][0]["fields"] == [
        {"key": "event", "type": "string", "value": "signed"},
        {"key": "signature", "type": "binary", "value": "AA=="},
        {"key": "length", "type": "int64", "value": 1},
    ]
    # A process with the same text as a string is another process.
    other = dict(docs[0], spanId="09" * 8, binaryAttributes=["span.attributes.digest"])
    assert len(jaeger_trace(TRACE.hex(), [docs[0], other])["processes"]) == 2


def test_documents_from_before_schema_6_keep_bytes_as_strings():
    """Hex text and no ``binaryAttributes``: what older documents hold, shown as before."""
    [doc] = [doc for _id, doc in span_documents(bytes_trace())]
    del doc["binaryAttributes"]
    doc["span.attributes.digest"] = "fbff"
    del doc["events"][0]["binaryAttributes"]
    [span] = jaeger_trace(TRACE.hex(), [doc])["spans"]
    assert tags_of(span)["digest"] == ("string", "fbff")
    assert span["logs"][0]["fields"][1] == {"key": "signature", "type": "string", "value": "AA=="}


def test_helpers():
    assert iso_micros("2023-11-14T22:13:20.123456789Z") == 1_700_000_000_123_456
    assert iso_micros("2023-11-14T22:13:20.5Z") == 1_700_000_000_500_000
    assert span_kind_name("SPAN_KIND_PRODUCER") == "producer"
    assert span_kind_name("SPAN_KIND_UNSPECIFIED") == ""
    assert envelope(["a", "b"]) == {
        "data": ["a", "b"],
        "total": 2,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    missing = envelope(None, errors=[error(404, "trace not found", "ab")])
    assert missing["total"] == 0
    assert missing["errors"] == [{"code": 404, "msg": "trace not found", "traceID": "ab"}]
