"""OTLP spans -> OpenSearch documents in the trace-analytics schema (Data Prepper's shape).

OpenSearch Dashboards' Trace Analytics reads these fields; names and encodings follow that
schema: hex ids, ``parentSpanId`` "" on roots, ``SPAN_KIND_*`` names, nanosecond ISO times,
attributes flattened under ``span.attributes.`` / ``resource.attributes.`` with "." -> "@".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData


def nanos_to_iso(nanos: int) -> str:
    """Unix nanoseconds -> ISO-8601 with nine fractional digits (OpenSearch date_nanos)."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def any_value(value: AnyValue) -> Any:
    """Plain Python value of an OTLP AnyValue; arrays and maps become JSON text."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return orjson.dumps([any_value(v) for v in value.array_value.values]).decode()
    if kind == "kvlist_value":
        return orjson.dumps(attributes_dict(value.kvlist_value.values)).decode()
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes_dict(attributes: list[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def flatten_attributes(prefix: str, attributes: list[KeyValue], into: dict[str, Any]) -> None:
    for kv in attributes:
        into[f"{prefix}{kv.key.replace('.', '@')}"] = any_value(kv.value)


def service_name(resource_attributes: list[KeyValue]) -> str:
    for kv in resource_attributes:
        if kv.key == "service.name":
            return kv.value.string_value
    return "unknown_service"


def _trace_group(data: TracesData) -> tuple[str | None, dict[str, Any] | None]:
    """Name and fields of the root span, when the root is among these spans."""
    for _resource, _scope, span in iter_spans(data):
        if not span.parent_span_id:
            fields = {
                "endTime": nanos_to_iso(span.end_time_unix_nano),
                "durationInNanos": span.end_time_unix_nano - span.start_time_unix_nano,
                "statusCode": span.status.code,
            }
            return span.name, fields
    return None, None


def iter_spans(data: TracesData) -> Iterator[tuple[Any, Any, Span]]:
    for resource_spans in data.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield resource_spans, scope_spans, span


def span_documents(data: TracesData) -> Iterator[tuple[str, dict[str, Any]]]:
    """(document id, document) for every span of one trace's TracesData."""
    trace_group, trace_group_fields = _trace_group(data)
    for resource_spans, scope_spans, span in iter_spans(data):
        resource_attributes = resource_spans.resource.attributes
        trace_id = span.trace_id.hex()
        span_id = span.span_id.hex()
        doc: dict[str, Any] = {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": span.parent_span_id.hex(),
            "traceState": span.trace_state,
            "name": span.name,
            "kind": Span.SpanKind.Name(span.kind),
            "serviceName": service_name(resource_attributes),
            "startTime": nanos_to_iso(span.start_time_unix_nano),
            "endTime": nanos_to_iso(span.end_time_unix_nano),
            "durationInNanos": span.end_time_unix_nano - span.start_time_unix_nano,
            "status": {"code": span.status.code, "message": span.status.message},
            "traceGroup": trace_group,
            "traceGroupFields": trace_group_fields,
            "instrumentationScope": {
                "name": scope_spans.scope.name,
                "version": scope_spans.scope.version,
            },
            "events": [
                {
                    "name": event.name,
                    "time": nanos_to_iso(event.time_unix_nano),
                    "attributes": attributes_dict(event.attributes),
                }
                for event in span.events
            ],
            "links": [
                {
                    "traceId": link.trace_id.hex(),
                    "spanId": link.span_id.hex(),
                    "traceState": link.trace_state,
                    "attributes": attributes_dict(link.attributes),
                }
                for link in span.links
            ],
        }
        flatten_attributes("span.attributes.", span.attributes, doc)
        flatten_attributes("resource.attributes.", resource_attributes, doc)
        yield f"{trace_id}{span_id}", doc
