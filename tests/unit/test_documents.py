import orjson
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.sink import documents
from pipeline.sink.documents import (
    encoded_documents,
    parse_traces,
    span_documents,
    span_from_document,
)
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
    assert root["status.code"] == 2 and "status.message" not in root  # as Data Prepper
    assert "status" not in root
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
    assert doc["span.attributes.blob"] == "AP8="  # base64, as Jaeger and OTLP/JSON write it
    assert doc["binaryAttributes"] == ["span.attributes.blob"]
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


def _both_parses(data: TracesData) -> list[dict]:
    """The documents of ``data``, checked to be the same through the sink's own parse."""
    expected = _encoded(encoded_documents(data))
    for _ in range(2):  # the second time from the caches
        assert _encoded(encoded_documents(parse_traces(data.SerializeToString()))) == expected
    return [doc for _id, _routing, doc in expected]


def test_bytes_are_base64_and_listed_where_they_are():
    """Span, resource, event and link attributes holding bytes: base64 text in their usual
    place, named by ``binaryAttributes`` (stored fields on the document, keys on events
    and links); spans and resources without bytes carry no list."""
    data = make_trace()
    resource = data.resource_spans[0].resource
    resource.attributes.add(key="host.id").value.bytes_value = b"\x01\x02\x03"
    root, child = data.resource_spans[0].scope_spans[0].spans
    root.attributes.add(key="trace.blob").value.bytes_value = b"\xfb\xff"
    event = child.events[0]
    event.attributes.add(key="payload").value.bytes_value = b"hi"
    event.attributes.add(key="note").value.string_value = "aGk="
    link = child.links.add(trace_id=b"\x05" * 16, span_id=b"\x06" * 8)
    link.attributes.add(key="token").value.bytes_value = b""
    other = data.resource_spans.add()
    other.resource.attributes.add(key="service.name").value.string_value = "cart"
    plain = other.scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x09" * 8, parent_span_id=b"\x02" * 8, name="plain"
    )
    plain.attributes.add(key="a").value.string_value = "x"

    docs = {doc["name"]: doc for doc in _both_parses(data)}
    root_doc, child_doc, plain_doc = docs["GET /"], docs["db"], docs["plain"]
    assert root_doc["span.attributes.trace@blob"] == "+/8="  # the standard alphabet
    assert root_doc["resource.attributes.host@id"] == "AQID"
    assert root_doc["binaryAttributes"] == [
        "resource.attributes.host@id",
        "span.attributes.trace@blob",
    ]
    # The resource's bytes are named on every span of it, also those without their own.
    assert child_doc["binaryAttributes"] == ["resource.attributes.host@id"]
    assert child_doc["events"][0] == {
        "name": "retry",
        "time": "2023-11-14T22:13:20.150000000Z",
        "attributes": {"payload": "aGk=", "note": "aGk="},
        "binaryAttributes": ["payload"],
    }
    assert child_doc["links"][0]["attributes"] == {"token": ""}
    assert child_doc["links"][0]["binaryAttributes"] == ["token"]
    assert "binaryAttributes" not in plain_doc

    # Read back, bytes are bytes again and the string that looks like base64 is a string.
    resource_back, span_back = span_from_document(root_doc)
    assert ("host.id", b"\x01\x02\x03") in resource_back
    assert {kv.key: kv.value.bytes_value for kv in span_back.attributes}["trace.blob"] == (
        b"\xfb\xff"
    )
    _, child_back = span_from_document(child_doc)
    payload, note = child_back.events[0].attributes
    assert payload.value.WhichOneof("value") == "bytes_value" and payload.value.bytes_value == b"hi"
    assert note.value.WhichOneof("value") == "string_value"
    token = child_back.links[0].attributes[0].value
    assert token.WhichOneof("value") == "bytes_value" and token.bytes_value == b""


def test_the_last_value_of_a_repeated_key_decides_whether_it_is_bytes():
    data = make_trace()
    root = data.resource_spans[0].scope_spans[0].spans[0]
    root.attributes.add(key="k").value.bytes_value = b"\x00"
    root.attributes.add(key="k").value.string_value = "AA=="  # same text, now a string
    root.attributes.add(key="m.n").value.string_value = "s"
    root.attributes.add(key="m@n").value.bytes_value = b"\x01"  # the same field, now bytes
    [doc, _child] = _both_parses(data)
    assert doc["span.attributes.k"] == "AA==" and doc["span.attributes.m@n"] == "AQ=="
    assert doc["binaryAttributes"] == ["span.attributes.m@n"]


def test_bytes_inside_arrays_and_maps_are_base64_text():
    data = make_trace()
    root = data.resource_spans[0].scope_spans[0].spans[0]
    values = root.attributes.add(key="list").value.array_value.values
    values.add().bytes_value = b"\xff"
    values.add().string_value = "s"
    [doc, _child] = _both_parses(data)
    assert doc["span.attributes.list"] == '["/w==","s"]'
    assert "binaryAttributes" not in doc  # JSON text: a string, as arrays and maps are


def test_spans_without_bytes_take_the_cached_path_only(monkeypatch: pytest.MonkeyPatch):
    """Once cached, a span without bytes never reaches the slower path that names them,
    whatever its neighbours hold."""
    data = make_trace()
    root = data.resource_spans[0].scope_spans[0].spans[0]
    root.attributes.add(key="blob").value.bytes_value = b"\x01"
    raw = data.SerializeToString()
    list(encoded_documents(parse_traces(raw)))  # fills the caches
    calls: list[bool] = []
    original = documents._AttributeMembers.with_binary

    def counting(self, entries, extra=()):
        calls.append(True)
        return original(self, entries, extra)

    monkeypatch.setattr(documents._AttributeMembers, "with_binary", counting)
    list(encoded_documents(parse_traces(raw)))
    assert len(calls) == 1  # the root (bytes); the child (no bytes) did not come this way


def test_documents_from_before_schema_6_read_bytes_as_text():
    """Old documents hold bytes as hex and no list: they read back as strings."""
    [doc, _child] = _both_parses(make_trace())
    doc["span.attributes.blob"] = "00ff"
    _, span = span_from_document(doc)
    blob = {kv.key: kv.value for kv in span.attributes}["blob"]
    assert blob.WhichOneof("value") == "string_value" and blob.string_value == "00ff"
