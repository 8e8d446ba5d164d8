from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.documents import document_id, nanos_to_iso, span_documents


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
