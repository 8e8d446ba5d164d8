"""The spans topic's per-trace pieces: same content as a protobuf regroup, header exact."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.policies.trace import service_of
from pipeline.wire.otlp import TracesData, count_spans, regroup_spans
from pipeline.wire.partitioner import partition_for_trace
from pipeline.wire.pieces import (
    PIECES_HEADER,
    PiecesError,
    gateway_messages,
    header_of,
    iter_pieces,
    split_by_partition,
    split_header,
)
from tests.unit.test_otlp import build_request, span_specs

PARTITIONS = 3


def with_roots_and_schema(request, root_every: int = 3):
    """Make every third span a root and give resources and scopes schema URLs and names."""
    for number, resource_spans in enumerate(request.resource_spans):
        resource_spans.schema_url = f"https://schema/{number}"
        for scope_spans in resource_spans.scope_spans:
            scope_spans.scope.name = "lib"
            scope_spans.schema_url = "https://scope"
            for index, span in enumerate(scope_spans.spans):
                if index % root_every:
                    span.parent_span_id = b"\x01" * 8
    return request


def has_root_span(data: TracesData) -> bool:
    return any(
        not span.parent_span_id
        for rs in data.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    )


@given(span_specs)
@settings(max_examples=200)
def test_pieces_equal_a_protobuf_regroup_by_trace(specs):
    request = with_roots_and_schema(build_request(specs))
    expected = regroup_spans(request.resource_spans, lambda span: span.trace_id)
    seen = set()
    for partition, message in split_by_partition(
        request.resource_spans, PARTITIONS, lambda span: True
    ).items():
        value = message.value()
        TracesData.FromString(value)  # the whole value is an ordinary TracesData
        for trace_id, piece, spans, has_root, services in iter_pieces(value, message.header()):
            data = TracesData.FromString(piece)
            assert data == expected[trace_id]
            assert partition == partition_for_trace(trace_id, PARTITIONS)
            assert spans == count_spans(data)
            assert has_root == has_root_span(data)
            assert services == tuple(service_of(rs.resource) for rs in data.resource_spans)
            seen.add(trace_id)
    assert seen == set(expected)


@given(span_specs)
def test_rejected_spans_are_left_out_and_counted_by_the_caller(specs):
    request = build_request(specs)
    rejected = []

    def accept(span) -> bool:
        if span.status.code == 2:
            rejected.append(span.span_id)
            return False
        return True

    messages = split_by_partition(request.resource_spans, PARTITIONS, accept)
    kept = sum(message.spans for message in messages.values())
    assert kept + len(rejected) == len(specs)
    for message in messages.values():
        data = TracesData.FromString(message.value())
        assert all(
            span.status.code != 2
            for rs in data.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        )


def test_large_spans_get_multi_byte_lengths():
    request = build_request([(0, 0, False)])
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.name = "x" * 70_000  # a three-byte varint length
    [(_, value, headers)] = gateway_messages(request.resource_spans, PARTITIONS)
    [(_, piece, spans, _, _)] = iter_pieces(value, header_of(headers))
    assert TracesData.FromString(piece).resource_spans[0].scope_spans[0].spans[0] == span
    assert spans == 1


def test_header_that_does_not_cover_the_value_is_refused():
    request = build_request([(0, 0, False), (1, 1, False)])
    [(_, value, headers)] = gateway_messages(request.resource_spans, 1)
    header = header_of(headers)
    with pytest.raises(PiecesError):
        list(iter_pieces(value + b"x", header))
    entries, _ = split_header(header)
    with pytest.raises(PiecesError):
        list(iter_pieces(value, entries[:-1]))

    def with_services(text: bytes) -> bytes:
        return entries + text + len(text).to_bytes(4, "big") + b"SVC1"

    list(iter_pieces(value, with_services(b'[["a"],[[0],[0]]]')))  # well formed
    for wrong in (b'[["a"],[[0]]]', b'[["a"],[[0],[1]]]', b"[]", b"{"):
        with pytest.raises(PiecesError):  # another number of pieces, a missing name, ...
            list(iter_pieces(value, with_services(wrong)))


def test_a_header_without_services_still_reads():
    """An older gateway's header: the list of pieces alone; the pieces have no services."""
    request = build_request([(0, 0, False), (1, 1, False)])
    [(_, value, headers)] = gateway_messages(request.resource_spans, 1)
    entries, services = split_header(header_of(headers))
    assert services is not None and len(services) == 2
    pieces = list(iter_pieces(value, entries))
    assert [piece[:4] for piece in pieces] == [
        p[:4] for p in iter_pieces(value, header_of(headers))
    ]
    assert [piece[4] for piece in pieces] == [None, None]


def test_header_found_in_pairs_and_mappings():
    assert header_of([("other", b"1"), (PIECES_HEADER, b"h")]) == b"h"
    assert header_of({PIECES_HEADER: b"h"}) == b"h"
    assert header_of(None) is None
    assert header_of([("other", b"1")]) is None


@given(span_specs, st.integers(1, 3000))
def test_chunks_hold_whole_pieces_within_the_size(specs, max_bytes):
    request = with_roots_and_schema(build_request(specs))
    for message in split_by_partition(request.resource_spans, PARTITIONS, lambda s: True).values():
        chunks = message.chunks(max_bytes)
        pieces = {}
        for chunk in chunks:
            value = chunk.value()
            assert chunk.size == len(value)
            assert chunk.size <= max_bytes or len(chunk.pieces) == 1  # a big piece alone
            assert chunk.spans == sum(piece[2] for piece in iter_pieces(value, chunk.header()))
            for trace_id, *piece in iter_pieces(value, chunk.header()):
                assert trace_id not in pieces  # a piece is never cut
                pieces[trace_id] = piece
        whole = message.value()
        assert pieces == {t: p for t, *p in iter_pieces(whole, message.header())}
        assert message.largest_piece() == max(len(p[0]) for p in pieces.values())
