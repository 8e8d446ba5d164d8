from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.wire.otlp import (
    ExportTraceServiceRequest,
    TracesData,
    regroup_spans,
)

span_specs = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2), st.booleans()), min_size=0, max_size=40
)


def build_request(specs) -> ExportTraceServiceRequest:
    """One resource per service index; spans carry (trace number, error flag)."""
    request = ExportTraceServiceRequest()
    by_service = {}
    for number, (trace_no, service_no, error) in enumerate(specs):
        if service_no not in by_service:
            resource_spans = request.resource_spans.add()
            attribute = resource_spans.resource.attributes.add(key="service.name")
            attribute.value.string_value = f"svc{service_no}"
            by_service[service_no] = resource_spans.scope_spans.add()
        span = by_service[service_no].spans.add()
        span.trace_id = bytes([trace_no + 1]) * 16
        span.span_id = number.to_bytes(8, "big")
        span.start_time_unix_nano = 1000 + number
        span.end_time_unix_nano = 2000 + number
        span.status.code = 2 if error else 0
    return request


@given(span_specs)
@settings(max_examples=200)
def test_regroup_keeps_every_span_once_with_its_resource(specs):
    request = build_request(specs)
    groups = regroup_spans(request.resource_spans, lambda span: span.trace_id)
    seen = []
    for trace_id, data in groups.items():
        for resource_spans in data.resource_spans:
            service = resource_spans.resource.attributes[0].value.string_value
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    assert span.trace_id == trace_id
                    _, service_no, _ = specs[int.from_bytes(span.span_id, "big")]
                    assert service == f"svc{service_no}"
                    seen.append(span.span_id)
    assert sorted(seen) == sorted(number.to_bytes(8, "big") for number in range(len(specs)))


@given(span_specs)
def test_concatenated_pieces_parse_as_one_trace(specs):
    request = build_request(specs)
    whole = TracesData()
    whole.resource_spans.extend(request.resource_spans)
    pieces = [TracesData(resource_spans=[rs]).SerializeToString() for rs in whole.resource_spans]
    joined = TracesData.FromString(b"".join(pieces))
    assert span_ids(joined) == span_ids(whole)


def span_ids(data: TracesData) -> list[bytes]:
    return [span.span_id for r in data.resource_spans for s in r.scope_spans for span in s.spans]
