"""OTLP spans -> OpenSearch documents in the trace-analytics schema (Data Prepper's shape).

OpenSearch Dashboards' Trace Analytics reads these fields; names and encodings follow that
schema: hex ids, ``parentSpanId`` "" on roots, ``SPAN_KIND_*`` names, nanosecond ISO times,
attributes flattened under ``span.attributes.`` / ``resource.attributes.`` with "." -> "@".

On top of it every span carries ``traceFields``: facts about its whole trace (duration from
the first start to the last end, error flag, services, span count). The sink receives
whole kept traces, so these are known at write time, and "traces where some span has X
and the trace took longer than Y" becomes a single query over span documents.

The sink reads kept-trace messages with ``parse_traces`` (span attributes left as their
serialized bytes) and turns them into JSON with ``encoded_documents``, which splices each
document from cached pieces; ``span_documents`` decodes the same output into dicts.
``span_from_document`` reads a document back into an OTLP span (for the query API, and to
prove in tests that the mapping keeps what it should).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.store.fields import (
    MAX_NANOS,
    RESOURCE_ATTRIBUTES,
    SPAN_ATTRIBUTES,
    STATUS_ERROR,
    document_id,
    iso_to_nanos,
    nanos_to_iso,
)
from pipeline.wire.otlp import service_name, set_any_value

_KIND_NAMES = {value: name for name, value in Span.SpanKind.items()}
_KIND_VALUES = dict(Span.SpanKind.items())


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


def _members(fields: dict[str, Any]) -> bytes:
    """``fields`` as JSON object members, each after a comma: ``,"a":1,"b":2``. Pieces
    of this form follow a document's first member in any number and order."""
    return b"," + orjson.dumps(fields)[1:-1]


class _AttributeMembers:
    """Attributes as JSON members ``,"<prefix><key with "." -> "@">":<value>`` (Data
    Prepper's flattened form), cached by each attribute's serialized bytes.

    The hot loop of the sink: most spans repeat most attribute values (method, route,
    status, peer, ...), so a dict lookup by the attribute's bytes replaces reading key,
    value kind and value through protobuf wrappers and encoding them.
    """

    MAX_ENTRIES = 50_000  # high-cardinality values fill it; start over rather than grow

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._cache: dict[bytes, tuple[str, bytes]] = {}
        self._names: dict[str, tuple[str, bytes]] = {}  # key -> (field, ',"field":')

    def _convert(self, kv: KeyValue) -> tuple[str, bytes]:
        key = kv.key
        named = self._names.get(key)
        if named is None:
            if len(self._names) >= self.MAX_ENTRIES:
                self._names.clear()
            field = self.prefix + key.replace(".", "@")
            named = self._names[key] = (field, b"," + orjson.dumps(field) + b":")
        return named[0], named[1] + orjson.dumps(any_value(kv.value))

    def of(self, attributes: Iterable[KeyValue]) -> Iterable[bytes]:
        """The members; a repeated key keeps its last value, as in a dict."""
        return self.of_serialized([kv.SerializeToString() for kv in attributes])

    def of_serialized(self, entries: Iterable[bytes]) -> Iterable[bytes]:
        """``of`` for attributes given as serialized KeyValues (see ``parse_traces``)."""
        cache = self._cache
        if len(cache) > self.MAX_ENTRIES:
            cache.clear()
        members: dict[str, bytes] = {}
        for raw in entries:
            hit = cache.get(raw)
            if hit is None:
                hit = cache[raw] = self._convert(KeyValue.FromString(raw))
            members[hit[0]] = hit[1]
        return members.values()


_SPAN_MEMBERS = _AttributeMembers(SPAN_ATTRIBUTES)
_RESOURCE_MEMBERS = _AttributeMembers(RESOURCE_ATTRIBUTES)


def _raw_attributes_view() -> type[Message]:
    """A message type with TracesData's wire format in which ``Span.attributes`` are raw
    bytes, one serialized KeyValue each, instead of parsed messages.

    Built from copies of the OTLP descriptors with that one field retyped (a message
    field and a bytes field are both length-delimited on the wire). Parsing into it is
    ~30 % cheaper than into TracesData, and the attributes arrive as the very bytes the
    member cache is keyed by: no protobuf wrapper or serialization per attribute.
    Everything else (resource, scope, span fields, events, links) reads as in TracesData.
    """
    package = "spansieve.sink"
    file = descriptor_pb2.FileDescriptorProto(
        name="spansieve/sink_traces.proto", package=package, syntax="proto3"
    )
    file.dependency.extend(d.name for d in trace_pb2.DESCRIPTOR.dependencies)
    file.dependency.append(trace_pb2.DESCRIPTOR.name)
    retyped = {
        # message: (field, new type name or "" for bytes)
        "Span": ("attributes", ""),
        "ScopeSpans": ("spans", f".{package}.Span"),
        "ResourceSpans": ("scope_spans", f".{package}.ScopeSpans"),
        "TracesData": ("resource_spans", f".{package}.ResourceSpans"),
    }
    for name, (field_name, type_name) in retyped.items():
        message = file.message_type.add()
        trace_pb2.DESCRIPTOR.message_types_by_name[name].CopyToProto(message)
        # Nested types stay the originals' (fields name them fully qualified).
        del message.nested_type[:]
        del message.enum_type[:]
        field = next(f for f in message.field if f.name == field_name)
        if type_name:
            field.type_name = type_name
        else:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            field.ClearField("type_name")
    pool = descriptor_pool.Default()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.TracesData"))


_SinkTraces = _raw_attributes_view()


def parse_traces(value: bytes) -> Message:
    """A kept-trace message (serialized TracesData) as the sink reads it: a TracesData
    whose ``Span.attributes`` are serialized KeyValues; ``encoded_documents`` takes it.

    Raises DecodeError on malformed bytes; a malformed attribute is only found when its
    document is built (and then dead-letters its trace there).
    """
    return _SinkTraces.FromString(value)


class _Trace:
    """Trace-level facts gathered over the spans of one trace in a TracesData."""

    __slots__ = ("_members", "end", "error", "hex", "root", "services", "spans", "start")

    def __init__(self, trace_id: bytes) -> None:
        self.hex = trace_id.hex()
        self.start: int | None = None
        self.end: int | None = None
        self.error = False
        self.services: set[str] = set()
        self.spans = 0
        self.root: tuple[str, int, int, int] | None = None  # name, status, start, end
        self._members: bytes | None = None

    def add(self, service: str, code: int, root: bool, name: str, start: int, end: int) -> None:
        self.spans += 1
        self.services.add(service)
        if code == STATUS_ERROR:
            self.error = True
        if root and self.root is None:
            self.root = (name, code, start, end)
        if start <= end <= MAX_NANOS:  # a time OpenSearch refuses must not spoil the rest
            if self.start is None or start < self.start:
                self.start = start
            if self.end is None or end > self.end:
                self.end = end

    def members(self) -> bytes:
        """The trace-level fields of every span document of this trace, as JSON members
        (computed once, after the last ``add``)."""
        if self._members is not None:
            return self._members
        trace: dict[str, Any] = {
            "error": self.error,
            "services": sorted(self.services),
            "spanCount": self.spans,
        }
        if self.start is not None and self.end is not None:
            trace["durationInNanos"] = self.end - self.start
        fields: dict[str, Any] = {"traceId": self.hex, "traceFields": trace}
        if self.root is not None:
            name, code, start, end = self.root
            group: dict[str, Any] = {"statusCode": code}
            if start <= end <= MAX_NANOS:
                group["endTime"] = nanos_to_iso(end)
                group["durationInNanos"] = end - start
            fields["traceGroup"] = name
            fields["traceGroupFields"] = group
        self._members = _members(fields)
        return self._members


class _JsonCache:
    """JSON encodings of recurring values (span names, statuses), bounded."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._cache: dict[Any, str] = {}

    def get(self, key: Any, value: Any) -> str:
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
            found = self._cache[key] = orjson.dumps(value).decode()
        return found


_NAMES = _JsonCache()
_STATUSES = _JsonCache()
_NO_EVENTS_OR_LINKS = b',"events":[],"links":[]'


def _span_head(span: Span, start: int, end: int, code: int) -> bytes:
    """The document's first, span-specific members: ``{"spanId":…`` up to ``"links":[…]``,
    without the closing brace.

    Written as text rather than through a dict: apart from the name and the status
    message (JSON-encoded, cached), the values need no escaping (hex ids, ISO times,
    integers, kind names), and this is most of the per-span work left besides attributes.
    """
    name = span.name
    status = span.status
    message = status.message
    head = (
        f'{{"spanId":"{span.span_id.hex()}","parentSpanId":"{span.parent_span_id.hex()}"'
        f',"name":{_NAMES.get(name, name)}'
        f',"kind":"{_KIND_NAMES.get(span.kind, "SPAN_KIND_UNSPECIFIED")}"'
        f',"startTime":"{nanos_to_iso(start)}","endTime":"{nanos_to_iso(end)}"'
        f',"durationInNanos":{end - start}'
        f',"status":{_STATUSES.get((code, message), {"code": code, "message": message})}'
    ).encode()
    rare: dict[str, Any] = {}
    if span.trace_state:
        rare["traceState"] = span.trace_state
    if span.dropped_attributes_count:
        rare["droppedAttributesCount"] = span.dropped_attributes_count
    if span.dropped_events_count:
        rare["droppedEventsCount"] = span.dropped_events_count
    if span.dropped_links_count:
        rare["droppedLinksCount"] = span.dropped_links_count
    if not span.events and not span.links:
        return head + _NO_EVENTS_OR_LINKS + (_members(rare) if rare else b"")
    rare["events"] = [
        {
            "name": event.name,
            "time": nanos_to_iso(event.time_unix_nano),
            "attributes": attributes_dict(event.attributes),
        }
        for event in span.events
    ]
    rare["links"] = [
        {
            "traceId": link.trace_id.hex(),
            "spanId": link.span_id.hex(),
            "traceState": link.trace_state,
            "attributes": attributes_dict(link.attributes),
        }
        for link in span.links
    ]
    return head + _members(rare)


def encoded_documents(data: TracesData | Message) -> Iterator[tuple[str, str, bytes]]:
    """(document id, routing = trace id hex, JSON) for every span of one TracesData (or
    of what ``parse_traces`` made of one).

    Each document is spliced together from JSON pieces (the sink's CPU per span is what
    limits it next to OpenSearch on shared cores): the span's own fields, its attributes
    (cached members), and parts shared with its siblings, encoded once: the scope's and
    service's, the resource attributes, and the trace's (``traceId``, ``traceGroup``,
    ``traceGroupFields``, ``traceFields``). The trace-level fields are computed over the
    spans present, which is the whole trace for what the sampler keeps (late spans arrive
    on their own and describe only themselves).

    The JSON is a fresh, exactly sized ``bytes``: holding on to orjson's own outputs
    (over-allocated buffers) for a whole batch cost ~4 µs per document in page faults.
    """
    traces: dict[bytes, _Trace] = {}
    pending: list[tuple[str, _Trace, list[bytes]]] = []
    # Attributes as serialized KeyValues (``parse_traces``) or as KeyValue messages.
    raw_attributes = isinstance(data, _SinkTraces)
    span_members = _SPAN_MEMBERS.of_serialized if raw_attributes else _SPAN_MEMBERS.of
    for resource_spans in data.resource_spans:
        attributes = resource_spans.resource.attributes
        service = service_name(attributes)
        resource = b"".join([*_RESOURCE_MEMBERS.of(attributes), b"}"])
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_and_service = _members(
                {
                    "serviceName": service,
                    "instrumentationScope": {"name": scope.name, "version": scope.version},
                }
            )
            for span in scope_spans.spans:
                trace_id = span.trace_id
                trace = traces.get(trace_id)
                if trace is None:
                    trace = traces[trace_id] = _Trace(trace_id)
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                code = span.status.code
                trace.add(service, code, not span.parent_span_id, span.name, start, end)
                # '{"spanId":…', trace-level fields (filled in below), span attributes,
                # resource attributes + '}': the field order of the first version; the
                # orders tried instead compressed ~0.5 B/span worse on disk.
                parts = [_span_head(span, start, end, code), scope_and_service, b""]
                parts.extend(span_members(span.attributes))
                parts.append(resource)
                pending.append((document_id(trace_id, span.span_id), trace, parts))
    for doc_id, trace, parts in pending:
        parts[2] = trace.members()
        yield doc_id, trace.hex, b"".join(parts)


def span_documents(data: TracesData) -> Iterator[tuple[str, dict[str, Any]]]:
    """(document id, document) for every span of one TracesData: ``encoded_documents``
    decoded, so tests and readers see exactly what is indexed."""
    for doc_id, _routing, source in encoded_documents(data):
        yield doc_id, orjson.loads(source)


# --- reading documents back -------------------------------------------------------------


def _set_value(target: AnyValue, value: Any) -> None:
    """A document's attribute value (a JSON scalar; arrays and maps are JSON text) back
    into an AnyValue; null stays unset."""
    if value is not None:
        set_any_value(target, value)


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
