"""OTLP spans -> OpenSearch documents in the trace-analytics schema (Data Prepper's shape).

OpenSearch Dashboards' Trace Analytics reads these fields; names and encodings follow that
schema: hex ids, ``parentSpanId`` "" on roots, ``SPAN_KIND_*`` names, nanosecond ISO times,
attributes flattened under ``span.attributes.`` / ``resource.attributes.`` with "." -> "@".

On top of it every span carries ``traceFields``: facts about its whole trace (duration from
the first start to the last end, error flag, services, span count). The sink receives
whole kept traces, so these are known at write time, and "traces where some span has X
and the trace took longer than Y" becomes a single query over span documents.

``span_from_document`` reads a document back into an OTLP span (for the query API, and to
prove in tests that the mapping keeps what it should).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, TracesData

SPAN_ATTRIBUTES = "span.attributes."
RESOURCE_ATTRIBUTES = "resource.attributes."
STATUS_ERROR = 2
# date_nanos and long stop at 2^63 - 1 ns (year 2262); OTLP times are uint64.
MAX_NANOS = 2**63 - 1

_KIND_NAMES = {value: name for name, value in Span.SpanKind.items()}
_KIND_VALUES = dict(Span.SpanKind.items())
_URLSAFE = bytes.maketrans(b"+/", b"-_")


@lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    """ISO date and time of one second; spans of a trace share a handful of seconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def nanos_to_iso(nanos: int) -> str:
    """Unix nanoseconds -> ISO-8601 with nine fractional digits (OpenSearch date_nanos)."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    return f"{_second_prefix(seconds)}.{fraction:09d}Z"


def iso_to_nanos(text: str) -> int:
    """Inverse of nanos_to_iso (nine fractional digits, UTC)."""
    stamp, fraction = text.rstrip("Z").split(".")
    seconds = int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))


def document_id(trace_id: bytes, span_id: bytes) -> str:
    """Idempotent document id: trace id + span id, as URL-safe base64 (32 characters).

    OpenSearch stores an id that is valid base64 as its decoded bytes: 24 bytes here, where
    the 48-character hex form would take 36 in the stored ``_id`` and again in its terms.
    """
    return binascii.b2a_base64(trace_id + span_id, newline=False).translate(_URLSAFE).decode()


def ids_of_document_id(doc_id: str) -> tuple[bytes, bytes]:
    """(trace id, span id) of a document id."""
    raw = base64.urlsafe_b64decode(doc_id)
    return raw[:16], raw[16:]


def any_value(value: AnyValue) -> Any:
    """Plain Python value of an OTLP AnyValue; arrays and maps become JSON text."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
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


_FLAT_KEYS: dict[str, dict[str, str]] = {SPAN_ATTRIBUTES: {}, RESOURCE_ATTRIBUTES: {}}
_FLAT_KEYS_MAX = 100_000  # attribute names are few in practice; forget them if not
_SCALARS = frozenset({"int_value", "double_value", "bool_value"})


def flatten_attributes(prefix: str, attributes: list[KeyValue], into: dict[str, Any]) -> None:
    """Attributes as top-level fields ``<prefix><key with "." -> "@">`` (Data Prepper's form).

    The hot loop of the sink (a dozen attributes per span): field names are cached per
    prefix, and plain scalars skip the generic conversion.
    """
    names = _FLAT_KEYS.setdefault(prefix, {})
    if len(names) > _FLAT_KEYS_MAX:
        names.clear()
    for kv in attributes:
        key = kv.key
        name = names.get(key)
        if name is None:
            name = names[key] = prefix + key.replace(".", "@")
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            into[name] = value.string_value
        elif kind in _SCALARS:
            into[name] = getattr(value, kind)
        else:
            into[name] = any_value(value)


def service_name(resource_attributes: list[KeyValue]) -> str:
    for kv in resource_attributes:
        if kv.key == "service.name":
            return kv.value.string_value
    return "unknown_service"


def _representable(span: Span) -> bool:
    """Times OpenSearch can store; a span outside them must not spoil its siblings' fields."""
    return span.start_time_unix_nano <= span.end_time_unix_nano <= MAX_NANOS


class _TraceSummary:
    """Trace-level facts gathered over the spans of one trace in a TracesData."""

    __slots__ = ("_fields", "end", "error", "root", "services", "spans", "start")

    def __init__(self) -> None:
        self.start: int | None = None
        self.end: int | None = None
        self.error = False
        self.services: set[str] = set()
        self.spans = 0
        self.root: Span | None = None
        self._fields: dict[str, Any] | None = None

    def add(self, span: Span, service: str) -> None:
        self.spans += 1
        self.services.add(service)
        if span.status.code == STATUS_ERROR:
            self.error = True
        if self.root is None and not span.parent_span_id:
            self.root = span
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        if start <= end <= MAX_NANOS:
            if self.start is None or start < self.start:
                self.start = start
            if self.end is None or end > self.end:
                self.end = end

    def fields(self) -> dict[str, Any]:
        """The trace-level part of every span document of this trace (computed once)."""
        if self._fields is not None:
            return self._fields
        trace: dict[str, Any] = {
            "error": self.error,
            "services": sorted(self.services),
            "spanCount": self.spans,
        }
        if self.start is not None and self.end is not None:
            trace["durationInNanos"] = self.end - self.start
        fields: dict[str, Any] = {"traceFields": trace}
        root = self.root
        if root is not None:
            group: dict[str, Any] = {"statusCode": root.status.code}
            if _representable(root):
                group["endTime"] = nanos_to_iso(root.end_time_unix_nano)
                group["durationInNanos"] = root.end_time_unix_nano - root.start_time_unix_nano
            fields["traceGroup"] = root.name
            fields["traceGroupFields"] = group
        self._fields = fields
        return fields


def _summaries(data: TracesData) -> dict[bytes, _TraceSummary]:
    summaries: dict[bytes, _TraceSummary] = {}
    for resource_spans in data.resource_spans:
        service = service_name(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                summary = summaries.get(span.trace_id)
                if summary is None:
                    summary = summaries[span.trace_id] = _TraceSummary()
                summary.add(span, service)
    return summaries


def _resource_fields(resource_spans: ResourceSpans) -> tuple[str, dict[str, Any]]:
    """(service name, flattened resource attributes): shared by all spans of a resource."""
    attributes = resource_spans.resource.attributes
    flat: dict[str, Any] = {}
    flatten_attributes(RESOURCE_ATTRIBUTES, attributes, flat)
    return service_name(attributes), flat


def span_document(
    span: Span,
    service: str,
    scope: dict[str, str],
    resource: dict[str, Any],
    trace: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One span's document from its span, its resource's and scope's parts, and its trace's."""
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    doc: dict[str, Any] = {
        "traceId": span.trace_id.hex(),
        "spanId": span.span_id.hex(),
        "parentSpanId": span.parent_span_id.hex(),
        "name": span.name,
        "kind": _KIND_NAMES.get(span.kind, "SPAN_KIND_UNSPECIFIED"),
        "serviceName": service,
        "startTime": nanos_to_iso(start),
        "endTime": nanos_to_iso(end),
        "durationInNanos": end - start,
        "status": {"code": span.status.code, "message": span.status.message},
        "instrumentationScope": scope,
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
    if span.trace_state:
        doc["traceState"] = span.trace_state
    if span.dropped_attributes_count:
        doc["droppedAttributesCount"] = span.dropped_attributes_count
    if span.dropped_events_count:
        doc["droppedEventsCount"] = span.dropped_events_count
    if span.dropped_links_count:
        doc["droppedLinksCount"] = span.dropped_links_count
    if trace is not None:
        doc.update(trace)
    flatten_attributes(SPAN_ATTRIBUTES, span.attributes, doc)
    doc.update(resource)
    return doc


def span_documents(data: TracesData) -> Iterator[tuple[str, dict[str, Any]]]:
    """(document id, document) for every span of the traces in one TracesData.

    Trace-level fields (``traceGroup``, ``traceGroupFields``, ``traceFields``) are computed
    over the spans present, which is the whole trace for what the sampler keeps (late spans
    arrive on their own and describe only themselves).
    """
    summaries = _summaries(data)
    for resource_spans in data.resource_spans:
        service, resource = _resource_fields(resource_spans)
        for scope_spans in resource_spans.scope_spans:
            scope = {"name": scope_spans.scope.name, "version": scope_spans.scope.version}
            for span in scope_spans.spans:
                trace = summaries[span.trace_id].fields()
                doc = span_document(span, service, scope, resource, trace)
                yield document_id(span.trace_id, span.span_id), doc


def encoded_documents(data: TracesData) -> Iterator[tuple[str, str, bytes]]:
    """(document id, routing = trace id hex, JSON bytes) for every span: what a bulk needs."""
    dumps = orjson.dumps
    for doc_id, doc in span_documents(data):
        yield doc_id, doc["traceId"], dumps(doc)


# --- reading documents back -------------------------------------------------------------


def _set_value(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif value is not None:
        target.string_value = str(value)


def _unflatten(prefix: str, doc: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (key[len(prefix) :].replace("@", "."), value)
        for key, value in doc.items()
        if key.startswith(prefix)
    ]


def span_from_document(doc: dict[str, Any]) -> tuple[list[tuple[str, Any]], Span]:
    """(resource attributes, OTLP span) of a stored document.

    Lossy only where the document is: arrays and maps come back as their JSON text, bytes
    as hex, and "@" in an attribute key reads back as ".".
    """
    span = Span(
        trace_id=bytes.fromhex(doc["traceId"]),
        span_id=bytes.fromhex(doc["spanId"]),
        parent_span_id=bytes.fromhex(doc["parentSpanId"]),
        trace_state=doc.get("traceState", ""),
        name=doc["name"],
        kind=_KIND_VALUES.get(doc["kind"], 0),
        start_time_unix_nano=iso_to_nanos(doc["startTime"]),
        end_time_unix_nano=iso_to_nanos(doc["endTime"]),
        dropped_attributes_count=doc.get("droppedAttributesCount", 0),
        dropped_events_count=doc.get("droppedEventsCount", 0),
        dropped_links_count=doc.get("droppedLinksCount", 0),
    )
    span.status.code = doc["status"]["code"]
    span.status.message = doc["status"]["message"]
    for key, value in _unflatten(SPAN_ATTRIBUTES, doc):
        _set_value(span.attributes.add(key=key).value, value)
    for event in doc.get("events", []):
        added = span.events.add(name=event["name"], time_unix_nano=iso_to_nanos(event["time"]))
        for key, value in event["attributes"].items():
            _set_value(added.attributes.add(key=key).value, value)
    for link in doc.get("links", []):
        added = span.links.add(
            trace_id=bytes.fromhex(link["traceId"]),
            span_id=bytes.fromhex(link["spanId"]),
            trace_state=link["traceState"],
        )
        for key, value in link["attributes"].items():
            _set_value(added.attributes.add(key=key).value, value)
    return _unflatten(RESOURCE_ATTRIBUTES, doc), span
