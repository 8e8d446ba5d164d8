import orjson
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.sink.documents import encoded_documents, parse_traces, span_documents
from pipeline.store.fields import document_id, nanos_to_iso


def make_trace() -> TracesData:
    data = TracesData()
    resource_spans = data.resource_spans.add()
    service = resource_spans.resource.attributes.add(key="service.name")
    service.value.string_value = "frontend"
    scope_spans = resource_spans.scope_spans.add()
    root = scope_spans.spans.add(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="GET /",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_001,
        end_time_unix_nano=1_700_000_001_000_000_000,
    )
    root.attributes.add(key="http.status_code").value.int_value = 500
    root.status.code = 2
    child = scope_spans.spans.add(
        trace_id=b"\x01" * 16,
        span_id=b"\x03" * 8,
        parent_span_id=b"\x02" * 8,
        name="db",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_100_000_000,
        end_time_unix_nano=1_700_000_000_200_000_000,
    )
    tags = child.attributes.add(key="db.tags").value.array_value.values
    tags.add().string_value = "a"
    tags.add().int_value = 1
    child.events.add(name="retry", time_unix_nano=1_700_000_000_150_000_000)
    return data


def test_nanos_keep_nine_digits():
    assert nanos_to_iso(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_trace_analytics_fields():
    docs = dict(span_documents(make_trace()))
    root = docs[document_id(b"\x01" * 16, b"\x02" * 8)]
    child = docs[document_id(b"\x01" * 16, b"\x03" * 8)]
    assert root["parentSpanId"] == ""
    assert child["parentSpanId"] == "02" * 8
    assert root["kind"] == "SPAN_KIND_SERVER"
    assert root["serviceName"] == "frontend"
    assert root["durationInNanos"] == 999_999_999
    assert root["status"] == {"code": 2, "message": ""}
    assert root["span.attributes.http@status_code"] == 500
    assert root["resource.attributes.service@name"] == "frontend"
    assert child["span.attributes.db@tags"] == '["a",1]'
    for doc in (root, child):
        assert doc["traceGroup"] == "GET /"
        assert doc["traceGroupFields"]["statusCode"] == 2
        assert doc["traceGroupFields"]["durationInNanos"] == 999_999_999
    assert child["events"][0]["name"] == "retry"
    assert child["events"][0]["time"] == "2023-11-14T22:13:20.150000000Z"


def _encoded(data) -> list[tuple[str, str, dict]]:
    return [(doc_id, routing, orjson.loads(source)) for doc_id, routing, source in data]


def test_the_sinks_parse_gives_the_same_documents():
    data = make_trace()
    root = data.resource_spans[0].scope_spans[0].spans[0]
    # A repeated key keeps its last value, and "a.b" / "a@b" land in one field, as in a dict.
    root.attributes.add(key="http.status_code").value.int_value = 503
    root.attributes.add(key="x.y").value.double_value = 1.5
    root.attributes.add(key="x@y").value.bool_value = True
    root.attributes.add(key="blob").value.bytes_value = b"\x00\xff"
    root.attributes.add(key="empty")
    expected = _encoded(encoded_documents(data))
    assert _encoded(encoded_documents(parse_traces(data.SerializeToString()))) == expected
    doc = expected[0][2]
    assert doc["span.attributes.http@status_code"] == 503
    assert doc["span.attributes.x@y"] is True
    assert doc["span.attributes.blob"] == "00ff"
    assert doc["span.attributes.empty"] is None
    # Encoded again (a cache hit now), the same documents.
    assert _encoded(encoded_documents(parse_traces(data.SerializeToString()))) == expected
    assert parse_traces(data.SerializeToString()).SerializeToString() == data.SerializeToString()


def test_a_malformed_attribute_fails_its_trace_when_encoded():
    data = make_trace()
    span = data.resource_spans[0].scope_spans[0].spans[1]
    span.attributes.add(key="bad").value.string_value = "ok"
    raw = data.SerializeToString()
    # Corrupt the string inside the attribute: invalid UTF-8 passes the sink's parse,
    # which leaves attributes as bytes, and fails when the document is built.
    broken = raw.replace(b"\x03bad\x12\x04\n\x02ok", b"\x03bad\x12\x04\n\x02\xff\xfe")
    assert broken != raw
    traces = parse_traces(broken)
    with pytest.raises(DecodeError):
        list(encoded_documents(traces))
