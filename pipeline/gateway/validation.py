"""Span-level checks that make a span unusable downstream (rejected via partial_success)."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)


def span_problem(span: Span) -> str | None:
    """The reason a span cannot be accepted, or None when it is fine.

    The reasons double as metric labels: keep them short and stable.
    """
    trace_id = span.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        return "invalid_trace_id"
    span_id = span.span_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        return "invalid_span_id"
    if len(span.parent_span_id) not in (0, 8):
        return "invalid_parent_span_id"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "end_before_start"
    return None


REASON_TEXT = {
    "invalid_trace_id": "trace_id must be 16 bytes, not all zero",
    "invalid_span_id": "span_id must be 8 bytes, not all zero",
    "invalid_parent_span_id": "parent_span_id must be empty or 8 bytes",
    "end_before_start": "end_time_unix_nano is before start_time_unix_nano",
    "service_not_allowed": "service.name not allowed for this API key",
}


def rejection_message(counts: dict[str, int]) -> str:
    """Human-readable partial_success message, e.g. '2 spans: trace_id must be ...'."""
    return "; ".join(
        f"{count} span{'s' if count != 1 else ''}: {REASON_TEXT.get(reason, reason)}"
        for reason, count in sorted(counts.items())
    )
