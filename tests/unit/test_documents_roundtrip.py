"""The span document keeps what it should: OTLP span -> document (as JSON) -> the same span.

Attribute values include bytes, in spans, resources, events and links alike.

Also the trace-level fields every span carries (duration, error flag, services, group).
"""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.sink.documents import (
    encoded_documents,
    parse_traces,
    span_documents,
    span_from_document,
)
from pipeline.store.fields import MAX_NANOS, document_id, ids_of_document_id
from pipeline.wire.otlp import set_any_value

ids16 = st.binary(min_size=16, max_size=16).filter(any)
ids8 = st.binary(min_size=8, max_size=8).filter(any)
keys = st.text(min_size=1, max_size=12).filter(lambda key: "@" not in key)
scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.binary(max_size=12),  # bytes: base64 in the document, named by binaryAttributes
)
attributes = st.dictionaries(keys, scalars, max_size=5)
nanos = st.integers(min_value=0, max_value=MAX_NANOS // 2)


def _fill(target, values: dict) -> None:
    for key, value in values.items():
        set_any_value(target.add(key=key).value, value)


@st.composite
def spans(draw) -> Span:
    start = draw(nanos)
    span = Span(
        trace_id=draw(ids16),
        span_id=draw(ids8),
        parent_span_id=draw(st.one_of(st.just(b""), ids8)),
        trace_state=draw(st.text(max_size=10)),
        name=draw(st.text(max_size=20)),
        kind=draw(st.sampled_from(list(Span.SpanKind.values()))),
        start_time_unix_nano=start,
        end_time_unix_nano=start + draw(st.integers(min_value=0, max_value=10**12)),
        dropped_attributes_count=draw(st.integers(0, 5)),
        dropped_events_count=draw(st.integers(0, 5)),
        dropped_links_count=draw(st.integers(0, 5)),
    )
    span.status.code = draw(st.integers(0, 2))
    span.status.message = draw(st.text(max_size=10))
    _fill(span.attributes, draw(attributes))
    for _ in range(draw(st.integers(0, 2))):
        event = span.events.add(name=draw(st.text(max_size=8)), time_unix_nano=draw(nanos))
        _fill(event.attributes, draw(attributes))
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(
            trace_id=draw(ids16), span_id=draw(ids8), trace_state=draw(st.text(max_size=8))
        )
        _fill(link.attributes, draw(attributes))
    return span


@settings(max_examples=200, deadline=None)
@given(spans(), attributes)
def test_span_survives_document_and_json(span: Span, resource: dict):
    data = TracesData()
    resource_spans = data.resource_spans.add()
    _fill(resource_spans.resource.attributes, {"service.name": "svc", **resource})
    resource_spans.scope_spans.add().spans.append(span)

    [(doc_id, doc)] = list(span_documents(data))
    stored = orjson.loads(orjson.dumps(doc))  # what OpenSearch keeps in _source
    resource_back, span_back = span_from_document(stored)

    assert doc_id == document_id(span.trace_id, span.span_id)
    assert ids_of_document_id(doc_id) == (span.trace_id, span.span_id)
    assert span_back == span
    assert dict(resource_back) == {"service.name": "svc", **resource}
    # The sink parses with attributes left serialized (parse_traces): the same document.
    sink = encoded_documents(parse_traces(data.SerializeToString()))
    assert [(i, r, orjson.loads(source)) for i, r, source in sink] == [
        (doc_id, span.trace_id.hex(), stored)
    ]


def _trace(spans_by_service: dict[str, list[Span]]) -> TracesData:
    data = TracesData()
    for service, service_spans in spans_by_service.items():
        resource_spans = data.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name").value.string_value = service
        resource_spans.scope_spans.add().spans.extend(service_spans)
    return data


TRACE = b"\x07" * 16
T0 = 1_700_000_000_000_000_000


def _span(span_id: int, parent: int | None, start_ms: int, end_ms: int, error=False) -> Span:
    span = Span(
        trace_id=TRACE,
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        name=f"op-{span_id}",
        start_time_unix_nano=T0 + start_ms * 1_000_000,
        end_time_unix_nano=T0 + end_ms * 1_000_000,
    )
    if error:
        span.status.code = 2
    return span


def test_every_span_carries_the_whole_traces_facts():
    data = _trace(
        {
            "frontend": [_span(1, None, 0, 100)],
            "cart": [_span(2, 1, 10, 40), _span(3, 1, 50, 180, error=True)],
            "db": [_span(4, 3, 60, 70)],
        }
    )
    docs = [doc for _id, doc in span_documents(data)]
    assert len(docs) == 4
    for doc in docs:
        assert doc["traceGroup"] == "op-1"
        assert doc["traceGroupFields"] == {
            "statusCode": 0,
            "endTime": "2023-11-14T22:13:20.100000000Z",
            "durationInNanos": 100_000_000,
        }
        # The child ends after the root: the trace lasts from first start to last end.
        assert doc["traceFields"] == {
            "error": True,
            "services": ["cart", "db", "frontend"],
            "spanCount": 4,
            "durationInNanos": 180_000_000,
        }
    one, three = (1).to_bytes(8, "big").hex(), (3).to_bytes(8, "big").hex()
    assert [doc["parentSpanId"] for doc in docs] == ["", one, one, three]


def test_late_spans_without_their_root_have_no_trace_group():
    [(_id, doc)] = span_documents(_trace({"cart": [_span(5, 1, 0, 5)]}))
    assert "traceGroup" not in doc and "traceGroupFields" not in doc
    assert doc["traceFields"]["spanCount"] == 1


def test_an_unstorable_span_does_not_spoil_its_siblings():
    broken = _span(9, 1, 0, 1)
    broken.end_time_unix_nano = 2**64 - 1  # OpenSearch refuses it: this one document only
    docs = dict(span_documents(_trace({"a": [_span(1, None, 0, 10), broken]})))
    for doc in docs.values():
        assert doc["traceFields"]["durationInNanos"] == 10_000_000
