from pipeline.policies.trace import TraceView

from .helpers import TRACE_ID, span, traces


def test_flattening_counts_and_times():
    td = traces(({"r": 1}, [span(start_ms=1, end_ms=2), span()]), (None, [span()]), ({}, []))
    v = TraceView(td, TRACE_ID)
    assert v.span_count == 3
    assert len(v.resource_attrs) == 3 and len(v.span_attrs) == 3
    assert v.times[0][1] - v.times[0][0] == 1_000_000
    assert v.trace_id == TRACE_ID
    assert v.raw == td.SerializeToString()
    assert v.size_bytes == td.ByteSize()


def test_keys_restrict_the_index_and_first_duplicate_wins():
    td = traces(({"a": 1, "b": 2}, [span(attrs=[("a", "x"), ("a", "y"), ("c", "z")])]))
    v = TraceView(td, TRACE_ID, keys=frozenset({"a"}))
    assert set(v.span_attrs[0]) == {"a"}
    assert v.span_attrs[0]["a"].string_value == "x"
    assert set(v.resource_attrs[0]) == {"a"}
    assert set(v.with_keys(None).span_attrs[0]) == {"a", "c"}


def test_accepts_resource_spans_sequence_and_given_size():
    td = traces((None, [span()]))
    v = TraceView(list(td.resource_spans), TRACE_ID, size_bytes=42)
    assert v.size_bytes == 42 and v.span_count == 1


def test_services_come_from_the_resources_or_from_the_pieces_header():
    td = traces(
        ({"service.name": "web"}, [span(), span()]),
        ({}, [span()]),
        ({"service.name": ""}, [span()]),
    )
    found = TraceView(td, TRACE_ID)
    assert found.run_services == ["web", "unknown_service", "unknown_service"]
    assert [found.service_of_span(i) for i in range(4)] == ["web", "web", *found.run_services[1:]]
    given = TraceView(td, TRACE_ID, run_services=["a", "b", "c"])  # as the header said
    assert given.run_services == ["a", "b", "c"] and given.service_of_span(2) == "b"
    # services for other runs than these (a piece without them was lost): from the resources
    assert TraceView(td, TRACE_ID, run_services=["a"]).run_services == found.run_services
