"""OTLP protobuf codecs: parse export requests and regroup their spans by a key.

Spans travel through Kafka as serialized ``TracesData`` messages. Because protobuf merges
concatenated messages by appending repeated fields, the bytes of several ``TracesData``
joined end to end parse as one ``TracesData`` holding all their spans: a trace's buffer can
grow by appending bytes, never by re-encoding what is already there.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Hashable
from typing import TypeVar

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

__all__ = [
    "DecodeError",
    "ExportTraceServiceRequest",
    "ExportTraceServiceResponse",
    "TracesData",
    "count_spans",
    "parse_export_request",
    "regroup_spans",
    "set_any_value",
]

K = TypeVar("K", bound=Hashable)


def parse_export_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/protobuf export request; raises DecodeError on malformed bytes."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def regroup_spans(resource_spans_list, key_of: Callable[[Span], K | None]) -> dict[K, TracesData]:
    """Split spans into one TracesData per key, keeping each span's resource and scope.

    ``resource_spans_list`` is the ``resource_spans`` field of an export request or of a
    TracesData; ``key_of`` maps a span to its group (a partition, a trace id, ...) or to
    None to leave the span out.
    """
    groups: dict[K, TracesData] = {}
    for resource_spans in resource_spans_list:
        for scope_spans in resource_spans.scope_spans:
            # Bucket in plain lists first: one C-level extend per group is much cheaper
            # than a protobuf append per span.
            buckets: dict[K, list[Span]] = {}
            for span in scope_spans.spans:
                key = key_of(span)
                if key is None:
                    continue
                bucket = buckets.get(key)
                if bucket is None:
                    buckets[key] = [span]
                else:
                    bucket.append(span)
            for key, spans in buckets.items():
                data = groups.get(key)
                if data is None:
                    data = groups[key] = TracesData()
                out_resource = data.resource_spans.add()
                out_resource.resource.CopyFrom(resource_spans.resource)
                out_resource.schema_url = resource_spans.schema_url
                target = out_resource.scope_spans.add()
                target.scope.CopyFrom(scope_spans.scope)
                target.schema_url = scope_spans.schema_url
                target.spans.extend(spans)
    return groups


# A run of spans sharing one resource: (the Resource, first index, end index) into the
# flat span list of :func:`flat_spans`.
ResourceRun = tuple[Resource, int, int]


def flat_spans(resource_spans) -> tuple[list[Span], list[ResourceRun]]:
    """Every span of ``resource_spans`` in order, and the run of each resource.

    Walking the nested ResourceSpans / ScopeSpans structure costs about a microsecond per
    ResourceSpans with upb, and a trace assembled from per-request pieces has one per
    piece and service; the sampler walks it once here and shares the result between the
    policies (``pipeline.policies.trace.TraceView``) and the span metrics.
    """
    spans: list[Span] = []
    runs: list[ResourceRun] = []
    extend = spans.extend
    for rs in resource_spans[:]:
        start = len(spans)
        for ss in rs.scope_spans[:]:
            extend(ss.spans[:])
        runs.append((rs.resource, start, len(spans)))
    return spans, runs


def count_spans(message: ExportTraceServiceRequest | TracesData) -> int:
    """Spans in an export request or a TracesData (both hold ``resource_spans``)."""
    count = 0
    for resource_spans in message.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            count += len(scope_spans.spans)
    return count


def set_any_value(any_value, value) -> None:
    """Store a Python value (str, bool, int, float, bytes, list, dict) in an OTLP AnyValue."""
    if isinstance(value, bool):
        any_value.bool_value = value
    elif isinstance(value, int):
        any_value.int_value = value
    elif isinstance(value, float):
        any_value.double_value = value
    elif isinstance(value, bytes):
        any_value.bytes_value = value
    elif isinstance(value, list):
        any_value.array_value.SetInParent()
        for item in value:
            set_any_value(any_value.array_value.values.add(), item)
    elif isinstance(value, dict):
        any_value.kvlist_value.SetInParent()
        for key, item in value.items():
            set_any_value(any_value.kvlist_value.values.add(key=key).value, item)
    else:
        any_value.string_value = value


#: the SDKs' name for a resource without service.name
UNKNOWN_SERVICE = "unknown_service"


def service_name(resource_attributes) -> str:
    """The resource's ``service.name``, or the SDKs' fallback name."""
    for kv in resource_attributes:
        if kv.key == "service.name":
            return kv.value.string_value
    return UNKNOWN_SERVICE


def any_value_text(value) -> str:
    """An AnyValue as text, as the collector's pdata ``AsString`` writes it: strings as they
    are, booleans ``true``/``false``, numbers in decimal, bytes in base64, arrays and maps
    as compact JSON, an empty value as ""."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return json.dumps(_plain_value(value), separators=(",", ":"))


def _plain_value(value):
    """An array or map AnyValue as plain Python values (scalars kept, bytes as base64)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain_value(kv.value) for kv in value.kvlist_value.values}
    if kind in ("bool_value", "int_value", "double_value", "string_value"):
        return getattr(value, kind)
    return any_value_text(value)
