"""Small builders of test traces for the span-metrics tests (RED and service graph).

    trace(span("api", "GET /", "server", 0, 5_000_000, status="error",
               attributes={"http.route": "/"}, span_id=b"\\x01" * 8),
          span("db", "SELECT", "client", 1_000_000, 2_000_000, parent=b"\\x01" * 8))

``span`` returns a ``ResourceSpans`` holding one span (its resource has ``service.name``
plus ``resource`` attributes); ``trace`` joins them into a ``TracesData``. Kinds and status
codes are given as the proto enum value or its short name ("server", "error").
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Span,
    Status,
    TracesData,
)

TRACE_ID = bytes(range(1, 17))
Attr = str | bool | int | float | bytes


def any_value(v: Attr) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    return AnyValue(string_value=v)


def attrs(m: Mapping[str, Attr] | None) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in (m or {}).items()]


def kind_value(kind: int | str) -> int:
    if isinstance(kind, int):
        return kind
    return Span.SpanKind.Value("SPAN_KIND_" + kind.upper())


def status_value(status: int | str) -> int:
    if isinstance(status, int):
        return status
    return Status.StatusCode.Value("STATUS_CODE_" + status.upper())


def span(
    service: str | None,
    name: str,
    kind: int | str = "server",
    start_ns: int = 0,
    end_ns: int = 1_000_000,
    *,
    status: int | str = "unset",
    attributes: Mapping[str, Attr] | None = None,
    resource: Mapping[str, Attr] | None = None,
    span_id: bytes = b"\x00" * 7 + b"\x01",
    parent: bytes = b"",
    trace_id: bytes = TRACE_ID,
) -> ResourceSpans:
    """One span in its own ``ResourceSpans`` (``service=None``: no service.name)."""
    res = dict(resource or {})
    if service is not None:
        res = {"service.name": service, **res}
    sp = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind_value(kind),
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
        attributes=attrs(attributes),
        status=Status(code=status_value(status)),
    )
    return ResourceSpans(
        resource=Resource(attributes=attrs(res)), scope_spans=[ScopeSpans(spans=[sp])]
    )


def trace(*resource_spans: ResourceSpans) -> TracesData:
    return TracesData(resource_spans=list(resource_spans))


def tid(i: int) -> bytes:
    """A 16-byte trace id from a small number."""
    return i.to_bytes(16, "big")


def attrs_of(point) -> dict:
    """A decoded OTLP data point's attributes as a plain dict."""
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in point.attributes}
