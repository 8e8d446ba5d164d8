"""OTLP spans -> OpenSearch documents in the trace-analytics schema (Data Prepper's shape).

OpenSearch Dashboards' Trace Analytics reads these fields; names and encodings follow that
schema: hex ids, ``parentSpanId`` "" on roots, ``SPAN_KIND_*`` names, nanosecond ISO times,
attributes flattened under ``span.attributes.`` / ``resource.attributes.`` with "." -> "@".

Bytes attribute values are stored as standard base64 text (so a term query for the
base64 finds them) and the document's ``binaryAttributes`` lists the stored fields that
hold bytes (``span.attributes.…``, ``resource.attributes.…``); an event or link lists the
keys of its own bytes attributes the same way. Readers turn exactly those back into bytes;
documents from before schema 6 (bytes as hex, no list) read as strings. The list is only
written when a span has bytes, and spans without any pay nothing for it (see
``_AttributeMembers``).

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

import binascii
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    status_of,
)
from pipeline.wire.otlp import service_name, set_any_value

_KIND_NAMES = {value: name for name, value in Span.SpanKind.items()}
_KIND_VALUES = dict(Span.SpanKind.items())


# The document member that names the fields holding bytes (base64 text). The query server
# reads it under the same name (pipeline.query.jaeger.BINARY_ATTRIBUTES).
BINARY_ATTRIBUTES = "binaryAttributes"
_BINARY_MEMBER = b',"' + BINARY_ATTRIBUTES.encode() + b'":'


def base64_text(value: bytes) -> str:
    """Standard base64 with padding: how Jaeger and OTLP/JSON write bytes."""
    return binascii.b2a_base64(value, newline=False).decode("ascii")


def any_value(value: AnyValue) -> Any:
    """Plain Python value of an OTLP AnyValue; arrays and maps become JSON text, bytes
    base64 text (inside arrays and maps too, as the collector's ``AsString`` writes them)."""
    return _plain_value(value, value.WhichOneof("value"))


def _plain_value(value: AnyValue, kind: str | None) -> Any:
    """``any_value`` for a value whose oneof case is already known."""
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return orjson.dumps([any_value(v) for v in value.array_value.values]).decode()
    if kind == "kvlist_value":
        return orjson.dumps(attributes_dict(value.kvlist_value.values)).decode()
    if kind == "bytes_value":
        return base64_text(value.bytes_value)
    return getattr(value, kind)


def attributes_dict(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def _attributes_and_binary(attributes: Iterable[KeyValue]) -> tuple[dict[str, Any], list[str]]:
    """An event's or link's attributes as a dict, and the keys whose (last) value is bytes:
    what its ``binaryAttributes`` lists."""
    values: dict[str, Any] = {}
    binary: dict[str, bool] = {}
    for kv in attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        values[kv.key] = _plain_value(value, kind)
        binary[kv.key] = kind == "bytes_value"
    return values, [key for key, is_bytes in binary.items() if is_bytes]


def _binary_marker(fields: list[str]) -> bytes:
    """The ``,"binaryAttributes":[…]`` member of a document."""
    return _BINARY_MEMBER + orjson.dumps(fields)


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

    Members of bytes values are cached apart (``_binary``), so the loop over cached
    members never meets one: only a miss finds out that a span has bytes, and then the
    span's attributes are collected again, naming its bytes fields (``with_binary``).
    Spans without bytes attributes pay nothing for the marker.
    """

    MAX_ENTRIES = 50_000  # high-cardinality values fill it; start over rather than grow

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._cache: dict[bytes, tuple[str, bytes]] = {}
        self._binary: dict[bytes, tuple[str, bytes]] = {}  # bytes values, never in _cache
        self._names: dict[str, tuple[str, bytes]] = {}  # key -> (field, ',"field":')

    def _member(self, key: str, value: Any) -> tuple[str, bytes]:
        named = self._names.get(key)
        if named is None:
            if len(self._names) >= self.MAX_ENTRIES:
                self._names.clear()
            field = self.prefix + key.replace(".", "@")
            named = self._names[key] = (field, b"," + orjson.dumps(field) + b":")
        return named[0], named[1] + orjson.dumps(value)

    def _miss(self, raw: bytes) -> tuple[str, bytes] | None:
        """(field, member) of an attribute not in the cache, now cached; None when its value
        is bytes (its member is then in ``_binary``)."""
        binary = self._binary
        if raw in binary:
            return None
        kv = KeyValue.FromString(raw)
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "bytes_value":
            if len(binary) >= self.MAX_ENTRIES:
                binary.clear()
            binary[raw] = self._member(kv.key, base64_text(value.bytes_value))
            return None
        hit = self._cache[raw] = self._member(kv.key, _plain_value(value, kind))
        return hit

    def of(self, attributes: Iterable[KeyValue]) -> Iterable[bytes]:
        """The members; a repeated key keeps its last value, as in a dict."""
        return self.of_serialized([kv.SerializeToString() for kv in attributes])

    def of_serialized(self, entries: Sequence[bytes]) -> Iterable[bytes]:
        """``of`` for attributes given as serialized KeyValues (see ``parse_traces``); with
        the ``binaryAttributes`` member when some value is bytes."""
        cache = self._cache
        if len(cache) > self.MAX_ENTRIES:
            cache.clear()
        members: dict[str, bytes] = {}
        for raw in entries:
            hit = cache.get(raw)
            if hit is None:
                hit = self._miss(raw)
                if hit is None:  # bytes: start over on the slower path that names them
                    return self.with_binary(entries)
            members[hit[0]] = hit[1]
        return members.values()

    def collect(self, entries: Iterable[bytes]) -> tuple[dict[str, bytes], list[str]]:
        """(field -> member, the fields whose last value is bytes) of serialized KeyValues."""
        cache, binary_cache = self._cache, self._binary
        if len(cache) > self.MAX_ENTRIES:
            cache.clear()
        members: dict[str, bytes] = {}
        binary: dict[str, bytes] = {}
        for raw in entries:
            hit = cache.get(raw)
            if hit is None:
                hit = self._miss(raw)
                if hit is None:
                    hit = binary_cache[raw]
                    binary[hit[0]] = hit[1]
            members[hit[0]] = hit[1]
        # A field counts when its last value is a bytes member (identity, not equality: a
        # string may have the same text).
        return members, [field for field, member in binary.items() if members[field] is member]

    def with_binary(self, entries: Iterable[bytes], extra: Sequence[str] = ()) -> list[bytes]:
        """The members plus, when ``extra`` (the resource's bytes fields) or these
        attributes name any, the ``binaryAttributes`` member listing them."""
        members, binary = self.collect(entries)
        values = list(members.values())
        if extra or binary:
            values.append(_binary_marker([*extra, *binary]))
        return values


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
_MESSAGES = _JsonCache()


def _status_members(code: int, message: str) -> str:
    """``"status.code":N`` and, for a non-empty message, ``"status.message":"…"``: the
    dotted keys Data Prepper writes, which Dashboards' span flyout and table read."""
    if not message:
        return f'"status.code":{code}'
    return f'"status.code":{code},"status.message":{_MESSAGES.get(message, message)}'


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
        f",{_status_members(code, message)}"
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
        _with_attributes(
            {"name": event.name, "time": nanos_to_iso(event.time_unix_nano)}, event.attributes
        )
        for event in span.events
    ]
    rare["links"] = [
        _with_attributes(
            {
                "traceId": link.trace_id.hex(),
                "spanId": link.span_id.hex(),
                "traceState": link.trace_state,
            },
            link.attributes,
        )
        for link in span.links
    ]
    return head + _members(rare)


def _with_attributes(item: dict[str, Any], attributes: Iterable[KeyValue]) -> dict[str, Any]:
    """An event or link object with its ``attributes`` and, if any is bytes, the
    ``binaryAttributes`` naming their keys."""
    item["attributes"], binary = _attributes_and_binary(attributes)
    if binary:
        item[BINARY_ATTRIBUTES] = binary
    return item


def _resource_binary_members(
    raw_attributes: bool, resource_binary: list[str]
) -> Callable[[Any], Iterable[bytes]]:
    """Span members for the spans of a resource with bytes attributes: every document's
    ``binaryAttributes`` then lists the resource's fields with the span's own."""

    def members(attributes: Any) -> Iterable[bytes]:
        entries = attributes if raw_attributes else [kv.SerializeToString() for kv in attributes]
        return _SPAN_MEMBERS.with_binary(entries, resource_binary)

    return members


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
    plain_members = _SPAN_MEMBERS.of_serialized if raw_attributes else _SPAN_MEMBERS.of
    for resource_spans in data.resource_spans:
        attributes = resource_spans.resource.attributes
        service = service_name(attributes)
        members, binary = _RESOURCE_MEMBERS.collect([kv.SerializeToString() for kv in attributes])
        resource = b"".join([*members.values(), b"}"])
        # Chosen once per resource: the spans of one without bytes take the plain path.
        span_members = _resource_binary_members(raw_attributes, binary) if binary else plain_members
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


def _stored_value(value: Any, binary: bool) -> Any:
    """A stored attribute value, its bytes back when the document says it holds bytes."""
    return binascii.a2b_base64(value) if binary and value is not None else value


def _unflatten(prefix: str, doc: dict[str, Any]) -> list[tuple[str, Any]]:
    binary = doc.get(BINARY_ATTRIBUTES) or ()
    return [
        (key[len(prefix) :].replace("@", "."), _stored_value(value, key in binary))
        for key, value in doc.items()
        if key.startswith(prefix)
    ]


def _nested_attributes(item: dict[str, Any]) -> list[tuple[str, Any]]:
    """An event's or link's attributes, bytes back for the keys it lists as bytes."""
    binary = item.get(BINARY_ATTRIBUTES) or ()
    return [(key, _stored_value(value, key in binary)) for key, value in item["attributes"].items()]


def span_from_document(doc: dict[str, Any]) -> tuple[list[tuple[str, Any]], Span]:
    """(resource attributes, OTLP span) of a stored document.

    Lossy only where the document is: arrays and maps come back as their JSON text (bytes
    inside them as base64), and "@" in an attribute key reads back as ".". Bytes come back
    as bytes where ``binaryAttributes`` names them; documents from before schema 6 hold
    them as hex text, which reads back as a string.
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
    span.status.code, span.status.message = status_of(doc)
    for key, value in _unflatten(SPAN_ATTRIBUTES, doc):
        _set_value(span.attributes.add(key=key).value, value)
    for event in doc.get("events", []):
        added = span.events.add(name=event["name"], time_unix_nano=iso_to_nanos(event["time"]))
        for key, value in _nested_attributes(event):
            _set_value(added.attributes.add(key=key).value, value)
    for link in doc.get("links", []):
        added = span.links.add(
            trace_id=bytes.fromhex(link["traceId"]),
            span_id=bytes.fromhex(link["spanId"]),
            trace_state=link["traceState"],
        )
        for key, value in _nested_attributes(link):
            _set_value(added.attributes.add(key=key).value, value)
    return _unflatten(RESOURCE_ATTRIBUTES, doc), span
