"""Stored span documents -> the JSON that Jaeger's query API answers with.

The Jaeger UI and Grafana's Jaeger data source read this shape: traces of spans with
``references`` (the parent as CHILD_OF, links as FOLLOWS_FROM), ``tags`` typed as
string/bool/int64/float64, ``logs`` from span events, and processes (service name and
resource attributes) shared by the spans that have the same ones. OTLP fields Jaeger has
no slot for travel as the tags its own OTLP translator uses (``span.kind``,
``otel.status_code``, ``otel.scope.name`` ...). The instrumentation scope goes under both
names Jaeger has used, ``otel.scope.*`` and the older ``otel.library.*``, which the Jaeger
UI still looks for.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson
from starlette.responses import Response

from pipeline.store.fields import (
    RESOURCE_ATTRIBUTES,
    SPAN_ATTRIBUTES,
    STATUS_ERROR,
    iso_to_nanos,
    status_of,
)

JSON = dict[str, Any]

KIND_TAGS = {
    "SPAN_KIND_SERVER": "server",
    "SPAN_KIND_CLIENT": "client",
    "SPAN_KIND_PRODUCER": "producer",
    "SPAN_KIND_CONSUMER": "consumer",
    "SPAN_KIND_INTERNAL": "internal",
}
STATUS_NAMES = {1: "OK", 2: "ERROR"}
SERVICE_NAME_KEY = "service.name"
# The member of a document (and of its events and links) naming the attributes that hold
# bytes as base64 text; the sink writes it (pipeline.sink.documents.BINARY_ATTRIBUTES).
BINARY_ATTRIBUTES = "binaryAttributes"


class Base64(str):
    """A stored attribute value that was bytes, as its base64 text: typed apart from strings
    so Jaeger's JSON says ``binary`` and OTLP/JSON ``bytesValue``, as Jaeger's do."""

    __slots__ = ()


def stored_value(value: Any, binary: bool) -> Any:
    """A stored attribute value, as ``Base64`` when its document lists it as bytes."""
    return Base64(value) if binary and isinstance(value, str) else value


class JsonResponse(Response):
    """JSON answers, encoded with orjson (search answers are large)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def envelope(data: Any, *, errors: list[JSON] | None = None, total: int | None = None) -> JSON:
    """Jaeger's response wrapper; ``errors`` null unless something went wrong."""
    if total is None:
        total = len(data) if isinstance(data, list) else 0
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors or None}


def error(code: int, message: str, trace_id: str | None = None) -> JSON:
    """One entry of an envelope's ``errors``."""
    entry: JSON = {"code": code, "msg": message}
    if trace_id is not None:
        entry["traceID"] = trace_id
    return entry


def span_kind_name(kind: str) -> str:
    """Jaeger's lower-case kind for a ``SPAN_KIND_*`` name; "" when unspecified."""
    return KIND_TAGS.get(kind, "")


def tag(key: str, value: Any) -> JSON:
    """A Jaeger key-value with its type: JSON booleans, integers and floats keep theirs,
    ``Base64`` (bytes) is ``binary`` with the base64 as value, as Jaeger writes it; arrays
    and maps were stored as text and stay strings, as do bytes of documents from before
    schema 6 (hex, not marked)."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, Base64):
        return {"key": key, "type": "binary", "value": str(value)}
    return {"key": key, "type": "string", "value": value if isinstance(value, str) else str(value)}


def _flattened_tags(doc: JSON, prefix: str, skip: str = "") -> list[JSON]:
    """Tags of ``<prefix><key with . written @>`` fields, with their dotted keys back."""
    binary = doc.get(BINARY_ATTRIBUTES) or ()
    tags = []
    for field, value in doc.items():
        if field.startswith(prefix) and value is not None:
            key = field[len(prefix) :].replace("@", ".")
            if key != skip:
                tags.append(tag(key, stored_value(value, field in binary)))
    return tags


@lru_cache(maxsize=4096)
def _epoch_micros(second: str) -> int:
    """Microseconds at a whole ISO second (the spans of a trace share a few of them)."""
    return iso_to_nanos(second + ".0Z") // 1_000


def iso_micros(text: str) -> int:
    """Microseconds since the epoch of a stored nanosecond ISO time."""
    second, _, fraction = text.rstrip("Z").partition(".")
    return _epoch_micros(second) + int(fraction.ljust(9, "0")[:6])


def span_tags(doc: JSON) -> list[JSON]:
    """Span attributes plus the OTLP fields Jaeger keeps as tags."""
    tags = _flattened_tags(doc, SPAN_ATTRIBUTES)
    kind = span_kind_name(doc.get("kind", ""))
    if kind:
        tags.append(tag("span.kind", kind))
    code, message = status_of(doc)
    if code in STATUS_NAMES:
        tags.append(tag("otel.status_code", STATUS_NAMES[code]))
    if message:
        tags.append(tag("otel.status_description", message))
    if code == STATUS_ERROR:
        tags.append(tag("error", True))
    scope = doc.get("instrumentationScope") or {}
    for field in ("name", "version"):
        if scope.get(field):
            tags.append(tag(f"otel.scope.{field}", scope[field]))
            tags.append(tag(f"otel.library.{field}", scope[field]))
    if doc.get("traceState"):
        tags.append(tag("w3c.tracestate", doc["traceState"]))
    return tags


def span_logs(doc: JSON) -> list[JSON]:
    """Span events as Jaeger logs: the event's name is the field ``event``."""
    logs = []
    for event in doc.get("events") or []:
        fields = [tag("event", event["name"])]
        binary = event.get(BINARY_ATTRIBUTES) or ()
        fields.extend(
            tag(key, stored_value(value, key in binary))
            for key, value in (event.get("attributes") or {}).items()
            if value is not None
        )
        logs.append({"timestamp": iso_micros(event["time"]), "fields": fields})
    return logs


def span_references(doc: JSON) -> list[JSON]:
    """The parent as CHILD_OF, then every link as FOLLOWS_FROM."""
    references = []
    if doc.get("parentSpanId"):
        references.append(
            {"refType": "CHILD_OF", "traceID": doc["traceId"], "spanID": doc["parentSpanId"]}
        )
    references.extend(
        {"refType": "FOLLOWS_FROM", "traceID": link["traceId"], "spanID": link["spanId"]}
        for link in doc.get("links") or []
    )
    return references


def jaeger_span(doc: JSON, process_id: str) -> JSON:
    return {
        "traceID": doc["traceId"],
        "spanID": doc["spanId"],
        "operationName": doc["name"],
        "references": span_references(doc),
        "startTime": iso_micros(doc["startTime"]),
        "duration": doc["durationInNanos"] // 1_000,
        "tags": span_tags(doc),
        "logs": span_logs(doc),
        "processID": process_id,
        "warnings": None,
    }


def _process_key(service: str, tags: list[JSON]) -> tuple:
    # The type is part of the key: True and 1 are equal (and hash alike) in Python.
    return service, tuple(sorted((t["key"], t["type"], t["value"]) for t in tags))


def jaeger_trace(trace_id: str, docs: Iterable[JSON]) -> JSON:
    """One trace from the documents of its spans (any order, possibly repeated).

    A span stored twice (a redelivery that straddled a rollover lands in two indices)
    is shown once. Spans are ordered by start time; processes are numbered p1, p2, ...
    in the order their first span starts.
    """
    unique: dict[str, JSON] = {}
    for doc in docs:
        unique.setdefault(doc["spanId"], doc)
    # Stored times are fixed-width ISO strings, so they sort as the times do.
    ordered = sorted(unique.values(), key=lambda doc: doc["startTime"])
    process_ids: dict[tuple, str] = {}
    processes: dict[str, JSON] = {}
    spans = []
    for doc in ordered:
        service = doc.get("serviceName", "")
        resource_tags = _flattened_tags(doc, RESOURCE_ATTRIBUTES, skip=SERVICE_NAME_KEY)
        key = _process_key(service, resource_tags)
        process_id = process_ids.get(key)
        if process_id is None:
            process_id = process_ids[key] = f"p{len(process_ids) + 1}"
            processes[process_id] = {"serviceName": service, "tags": resource_tags}
        spans.append(jaeger_span(doc, process_id))
    return {"traceID": trace_id, "spans": spans, "processes": processes, "warnings": None}
