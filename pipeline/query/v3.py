"""Jaeger's HTTP API v3 over the stored spans: its parameters, OTLP/JSON traces and trace
summaries.

Newer clients read traces as OTLP rather than Jaeger's own JSON: Grafana's Jaeger data
source (``jaegerEnableGrpcEndpoint``) fetches ``/api/v3/traces/{id}``, the Jaeger UI (2.x)
searches through ``/api/v3/trace-summaries``. The shapes follow what Jaeger's HTTP gateway
writes (``cmd/jaeger/internal/extension/jaegerquery/internal/apiv3/``), whose traces go
through the collector's pdata JSON marshaler:

* ``{"result": {"resourceSpans": [...]}}``; trace and span ids as lower-case hex, times as
  decimal strings of Unix nanoseconds, ``kind`` and ``status.code`` as the enum's integer,
  ``intValue`` as a decimal string, fields at their zero value left out (``status`` and a
  scope spans' ``scope`` are always written);
* one resource per service and resource attributes, one scope per instrumentation scope,
  never shared between traces; clock-skew shifts as the ``@jaeger@warnings`` attribute,
  where Jaeger's adjusters put theirs.

Parameters take Jaeger's camelCase names and their older snake_case aliases
(``query.serviceName`` or ``query.service_name``); times are RFC 3339, durations Go's.
Every problem raises ``ParamError`` naming the parameter, answered with HTTP 400.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from pipeline.config.durations import NANOS_PER_MICRO, NANOS_PER_SECOND
from pipeline.query.conditions import V3_WHERE, parse_where
from pipeline.query.jaeger import BINARY_ATTRIBUTES, Base64, iso_micros, jaeger_trace, stored_value
from pipeline.query.params import (
    STATUS_CODES,
    ParamError,
    TraceQuery,
    duration_param,
    go_bool,
    grouped,
    int_param,
    normalize_trace_id,
    span_durations,
    span_kind_param,
)
from pipeline.query.skew import adjust_clock_skew
from pipeline.store.fields import (
    RESOURCE_ATTRIBUTES,
    SPAN_ATTRIBUTES,
    STATUS_ERROR,
    iso_to_nanos,
    status_of,
)

JSON = dict[str, Any]

DEFAULT_SEARCH_DEPTH = 100  # Jaeger's, when a search names none
WARNINGS_KEY = "@jaeger@warnings"  # the span attribute Jaeger's adjusters write
SERVICE_NAME_KEY = "service.name"
# OTLP's Span.SpanKind numbers for our documents' ``kind`` names (UNSPECIFIED is 0).
KIND_NUMBERS = {
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
# Go's strconv.ParseBool, which Jaeger's gateway uses for rawTraces.
# RFC 3339 with up to nine fractional digits (Go's time.RFC3339Nano). A space before the
# offset stands for "+": Grafana appends its times to the URL unencoded, so a local time's
# "+02:00" arrives as " 02:00".
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+\- ])(\d{2}):(\d{2}))"
)
_BASE64_TRACE_ID_MAX = 24  # 16 bytes in base64 with padding; 22 without

# Canonical names first, then the aliases Jaeger still reads.
START_TIME = ("startTime", "start_time")
END_TIME = ("endTime", "end_time")
RAW_TRACES = ("rawTraces", "raw_traces")
SERVICE_NAME = ("query.serviceName", "query.service_name")
OPERATION_NAME = ("query.operationName", "query.operation_name")
ATTRIBUTES = ("query.attributes",)
START_TIME_MIN = ("query.startTimeMin", "query.start_time_min")
START_TIME_MAX = ("query.startTimeMax", "query.start_time_max")
DURATION_MIN = ("query.durationMin", "query.duration_min")
DURATION_MAX = ("query.durationMax", "query.duration_max")
SEARCH_DEPTH = ("query.searchDepth", "query.search_depth", "query.num_traces")
QUERY_RAW_TRACES = ("query.rawTraces", "query.raw_traces")
FILTER = "query.filter"


# --- parameters -------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceRequest:
    """``GET /api/v3/traces/{trace_id}``: the id as stored, the optional window (Unix
    nanoseconds; checked, then not needed: the lookup is routed by trace id) and whether
    the stored times are wanted as they are."""

    trace_id: str
    start: int | None = None
    end: int | None = None
    raw: bool = False


@dataclass(frozen=True)
class SearchRequest:
    """``GET /api/v3/traces`` and ``/api/v3/trace-summaries``: the same search as
    ``/api/traces`` (``TraceQuery``) and whether the stored times are wanted."""

    query: TraceQuery
    raw: bool = False


def _param(params: dict[str, list[str]], names: Sequence[str]) -> tuple[str, str] | None:
    """(name, value) of the first non-empty value under the first of ``names`` that has one:
    the canonical name wins over its aliases, and empty values count as absent, as in
    Jaeger's gateway."""
    for name in names:
        for value in params.get(name, []):
            if value.strip():
                return name, value.strip()
    return None


def rfc3339_nanos(name: str, text: str) -> int:
    """Unix nanoseconds of an RFC 3339 time with up to nine fractional digits
    (``2026-08-20T10:00:00.123456789Z``, ``...+02:00``), exact."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ParamError(
            name, f"{text!r} is not an RFC 3339 time such as 2026-08-20T10:00:00.123456789Z"
        )
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ParamError(name, f"{text!r} is not a valid time ({exc})") from None
    seconds = calendar.timegm((year, month, day, hour, minute, second))
    if match.group(9) is not None:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise ParamError(name, f"{text!r} has an invalid UTC offset")
        offset = offset_hours * 3_600 + offset_minutes * 60
        seconds -= -offset if match.group(9) == "-" else offset
    fraction = int((match.group(7) or "").ljust(9, "0"))
    return seconds * NANOS_PER_SECOND + fraction


def v3_trace_id(text: str) -> str:
    """The stored form (32 lower-case hex digits) of a trace id given as hex, as Jaeger
    accepts it (upper case, 64-bit, leading zeros dropped), or as base64 of its 8 or 16
    bytes (standard or URL-safe alphabet, padded or not), which OTLP's protobuf JSON uses."""
    try:
        return normalize_trace_id(text)
    except ParamError:
        pass
    candidate = text.strip()
    if candidate and len(candidate) <= _BASE64_TRACE_ID_MAX:
        padded = candidate + "=" * (-len(candidate) % 4)
        for altchars in (b"+/", b"-_"):
            try:
                raw = base64.b64decode(padded, altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) in (8, 16):
                return raw.hex().rjust(32, "0")
    raise ParamError(
        "trace_id", f"{text!r} is not a trace id: 1 to 32 hex digits, or base64 of 8 or 16 bytes"
    )


def parse_trace_request(trace_id: str, pairs: Sequence[tuple[str, str]]) -> TraceRequest:
    """``GET /api/v3/traces/{trace_id}?startTime=&endTime=&rawTraces=`` (or the snake_case
    names ``start_time``, ``end_time``, ``raw_traces``)."""
    params = grouped(pairs)
    start = end = None
    if (found := _param(params, START_TIME)) is not None:
        start = rfc3339_nanos(*found)
    if (found := _param(params, END_TIME)) is not None:
        end = rfc3339_nanos(*found)
    raw = False
    if (found := _param(params, RAW_TRACES)) is not None:
        raw = go_bool(*found)
    return TraceRequest(v3_trace_id(trace_id), start, end, raw)


def _attribute_value(name: str, key: str, value: object) -> str:
    """An attribute's value as the stored keyword: strings as they are, numbers and
    booleans as their JSON text (Jaeger's clients send only strings)."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, dict | list):
        raise ParamError(name, f"the value of {key!r} must be a string")
    return orjson.dumps(value).decode()


def parse_attributes(name: str, text: str) -> tuple[tuple[str, str], ...]:
    """(key, value) pairs of ``query.attributes``, a JSON object such as
    ``{"http.status_code":"200","error":"true"}``. Keys that Jaeger derives from OTLP
    fields (``span.kind``, ``otel.status_code``) must have a value those fields take."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ParamError(name, f"not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise ParamError(name, 'must be a JSON object such as {"http.status_code":"200"}')
    found = []
    for key, value in parsed.items():
        if not key:
            raise ParamError(name, "an attribute name must not be empty")
        text_value = _attribute_value(name, key, value)
        if key == "span.kind":
            span_kind_param(name, text_value)
        elif key == "otel.status_code" and text_value.upper() not in STATUS_CODES:
            raise ParamError(name, f"otel.status_code must be one of {', '.join(STATUS_CODES)}")
        found.append((key, text_value))
    return tuple(found)


def parse_search(pairs: Sequence[tuple[str, str]], max_traces: int) -> SearchRequest:
    """The search of ``GET /api/v3/traces`` or ``/api/v3/trace-summaries``.

    ``query.startTimeMin`` is inclusive and ``query.startTimeMax`` exclusive, as Jaeger
    documents them; both are optional here (Jaeger requires them). ``query.searchDepth``
    (or ``query.search_depth``, ``query.num_traces``) is the number of traces: 100 when
    absent or 0, as in Jaeger, and at most ``max_traces``. ``query.where`` (ours,
    repeatable) adds conditions in ``pipeline.query.conditions``' grammar.
    """
    params = grouped(pairs)
    if _param(params, (FILTER,)) is not None:
        raise ParamError(
            FILTER, "structured filters are not supported; use query.attributes instead"
        )
    start = end = min_duration = max_duration = None
    if (found := _param(params, START_TIME_MIN)) is not None:
        start = rfc3339_nanos(*found)
    if (found := _param(params, START_TIME_MAX)) is not None:
        end = rfc3339_nanos(*found)
    if start is not None and end is not None and start >= end:
        raise ParamError(START_TIME_MIN[0], f"must be before {START_TIME_MAX[0]}")
    if (found := _param(params, DURATION_MIN)) is not None:
        min_duration = duration_param(*found)
    if (found := _param(params, DURATION_MAX)) is not None:
        max_duration = duration_param(*found)
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ParamError(DURATION_MIN[0], f"is greater than {DURATION_MAX[0]}")
    limit = DEFAULT_SEARCH_DEPTH
    if (found := _param(params, SEARCH_DEPTH)) is not None:
        depth = int_param(*found)
        if depth < 0:
            raise ParamError(found[0], f"{depth} must not be negative")
        limit = depth or DEFAULT_SEARCH_DEPTH
    tags: tuple[tuple[str, str], ...] = ()
    if (found := _param(params, ATTRIBUTES)) is not None:
        tags = parse_attributes(*found)
    raw = False
    if (found := _param(params, QUERY_RAW_TRACES)) is not None:
        raw = go_bool(*found)
    service = _param(params, SERVICE_NAME)
    operation = _param(params, OPERATION_NAME)
    query = TraceQuery(
        service=service[1] if service else None,
        operation=operation[1] if operation else None,
        tags=tags,
        start=start,
        end=None if end is None else end - 1,  # the maximum is exclusive
        min_duration=min_duration,
        max_duration=max_duration,
        span_durations=span_durations(None, operation[1] if operation else None),
        limit=min(limit, max_traces),
        conditions=parse_where(params.get(V3_WHERE, []), V3_WHERE),
    )
    return SearchRequest(query, raw)


# --- documents -> OTLP/JSON ---------------------------------------------------------------


def any_value(value: Any) -> JSON:
    """An OTLP AnyValue of a stored attribute value: strings, booleans, integers (as
    decimal strings, int64 in protobuf JSON) and doubles keep their type, bytes
    (``Base64``) are ``bytesValue`` in base64 as protobuf JSON writes them; arrays and maps
    were stored as text and stay strings, as do bytes of documents from before schema 6."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, Base64):
        return {"bytesValue": str(value)}
    return {"stringValue": value if isinstance(value, str) else str(value)}


def key_values(items: Iterable[tuple[str, Any]]) -> list[JSON]:
    """OTLP KeyValues; null values (nothing stored) are left out."""
    return [{"key": key, "value": any_value(value)} for key, value in items if value is not None]


def _flattened(doc: JSON, prefix: str) -> list[tuple[str, Any]]:
    """Attributes stored as ``<prefix><key with . written @>`` fields, keys dotted again,
    bytes as ``Base64``."""
    binary = doc.get(BINARY_ATTRIBUTES) or ()
    return [
        (field[len(prefix) :].replace("@", "."), stored_value(value, field in binary))
        for field, value in doc.items()
        if field.startswith(prefix)
    ]


def _nested(item: JSON) -> list[tuple[str, Any]]:
    """An event's or link's attributes, bytes (the keys it lists) as ``Base64``."""
    binary = item.get(BINARY_ATTRIBUTES) or ()
    return [
        (key, stored_value(value, key in binary))
        for key, value in (item.get("attributes") or {}).items()
    ]


def _warnings_attribute(warnings: Sequence[str]) -> JSON:
    values = [{"stringValue": warning} for warning in warnings]
    return {"key": WARNINGS_KEY, "value": {"arrayValue": {"values": values}}}


def otlp_span(doc: JSON, shift: int = 0, warnings: Sequence[str] = ()) -> JSON:
    """One stored span as an OTLP/JSON span, its times moved by ``shift`` nanoseconds
    (clock skew), with ``warnings`` as the ``@jaeger@warnings`` attribute."""
    span: JSON = {"traceId": doc["traceId"], "spanId": doc["spanId"]}
    if doc.get("traceState"):
        span["traceState"] = doc["traceState"]
    if doc.get("parentSpanId"):
        span["parentSpanId"] = doc["parentSpanId"]
    if doc.get("name"):
        span["name"] = doc["name"]
    if kind := KIND_NUMBERS.get(doc.get("kind", "")):
        span["kind"] = kind
    span["startTimeUnixNano"] = str(iso_to_nanos(doc["startTime"]) + shift)
    span["endTimeUnixNano"] = str(iso_to_nanos(doc["endTime"]) + shift)
    attributes = key_values(_flattened(doc, SPAN_ATTRIBUTES))
    if warnings:
        attributes.append(_warnings_attribute(warnings))
    if attributes:
        span["attributes"] = attributes
    if doc.get("droppedAttributesCount"):
        span["droppedAttributesCount"] = doc["droppedAttributesCount"]
    events = [_event(event, shift) for event in doc.get("events") or []]
    if events:
        span["events"] = events
    if doc.get("droppedEventsCount"):
        span["droppedEventsCount"] = doc["droppedEventsCount"]
    links = [_link(link) for link in doc.get("links") or []]
    if links:
        span["links"] = links
    if doc.get("droppedLinksCount"):
        span["droppedLinksCount"] = doc["droppedLinksCount"]
    span["status"] = _status(*status_of(doc))
    return span


def _event(event: JSON, shift: int) -> JSON:
    found: JSON = {"timeUnixNano": str(iso_to_nanos(event["time"]) + shift)}
    if event.get("name"):
        found["name"] = event["name"]
    if attributes := key_values(_nested(event)):
        found["attributes"] = attributes
    return found


def _link(link: JSON) -> JSON:
    found: JSON = {"traceId": link["traceId"], "spanId": link["spanId"]}
    if link.get("traceState"):
        found["traceState"] = link["traceState"]
    if attributes := key_values(_nested(link)):
        found["attributes"] = attributes
    return found


def _status(code: int, message: str) -> JSON:
    found: JSON = {}
    if message:
        found["message"] = message
    if code:
        found["code"] = code
    return found


def unique_spans(docs: Iterable[JSON]) -> list[JSON]:
    """A trace's documents, each span once (a redelivery that straddled a rollover stored
    it twice), by start time (stored times are fixed-width ISO strings)."""
    unique: dict[str, JSON] = {}
    for doc in docs:
        unique.setdefault(doc["spanId"], doc)
    return sorted(unique.values(), key=lambda doc: doc["startTime"])


def clock_adjustments(
    trace_id: str, spans: Sequence[JSON], max_skew_us: int
) -> dict[str, tuple[int, list[str]]]:
    """Span id -> (shift in nanoseconds, warnings) from the clock-skew correction of the
    Jaeger view (``skew.adjust_clock_skew``), so both APIs show the same times; spans
    without either are left out. Nothing when ``max_skew_us`` <= 0 (raw)."""
    if max_skew_us <= 0:
        return {}
    adjusted = adjust_clock_skew(jaeger_trace(trace_id, spans), max_skew_us)
    stored = {doc["spanId"]: iso_micros(doc["startTime"]) for doc in spans}
    found = {}
    for span in adjusted["spans"]:
        shift = (span["startTime"] - stored[span["spanID"]]) * NANOS_PER_MICRO
        if shift or span["warnings"]:
            found[span["spanID"]] = (shift, list(span["warnings"] or []))
    return found


def _resource_attributes(doc: JSON) -> list[tuple[str, Any]]:
    attributes = _flattened(doc, RESOURCE_ATTRIBUTES)
    if doc.get("serviceName") and all(key != SERVICE_NAME_KEY for key, _ in attributes):
        attributes.insert(0, (SERVICE_NAME_KEY, doc["serviceName"]))
    return attributes


def _resource_key(attributes: list[tuple[str, Any]]) -> tuple:
    # The type is part of the key: True and 1 are equal (and hash alike) in Python.
    return tuple(sorted((key, type(value).__name__, str(value)) for key, value in attributes))


def trace_resource_spans(trace_id: str, docs: Iterable[JSON], max_skew_us: int) -> list[JSON]:
    """One trace as OTLP ResourceSpans: spans with the same resource attributes share a
    resource, and within it those with the same instrumentation scope share a scope;
    resources and scopes come in the order of their first span, spans by start time."""
    spans = unique_spans(docs)
    adjustments = clock_adjustments(trace_id, spans, max_skew_us)
    resources: dict[tuple, JSON] = {}
    scopes: dict[tuple, list[JSON]] = {}
    for doc in spans:
        attributes = _resource_attributes(doc)
        resource_key = _resource_key(attributes)
        resource = resources.get(resource_key)
        if resource is None:
            body: JSON = {"attributes": key_values(attributes)} if attributes else {}
            resource = resources[resource_key] = {"resource": body, "scopeSpans": []}
        scope = doc.get("instrumentationScope") or {}
        name, version = scope.get("name") or "", scope.get("version") or ""
        scope_key = (resource_key, name, version)
        scope_spans = scopes.get(scope_key)
        if scope_spans is None:
            described: JSON = {}
            if name:
                described["name"] = name
            if version:
                described["version"] = version
            scope_spans = scopes[scope_key] = []
            resource["scopeSpans"].append({"scope": described, "spans": scope_spans})
        shift, warnings = adjustments.get(doc["spanId"], (0, []))
        scope_spans.append(otlp_span(doc, shift, warnings))
    return list(resources.values())


def traces_data(traces: Iterable[tuple[str, Iterable[JSON]]], max_skew_us: int) -> JSON:
    """OTLP/JSON TracesData of whole traces, given as (trace id, documents), in order;
    ``{}`` when there are none (pdata leaves an empty ``resourceSpans`` out)."""
    resource_spans = [
        resource
        for trace_id, docs in traces
        for resource in trace_resource_spans(trace_id, docs, max_skew_us)
    ]
    return {"resourceSpans": resource_spans} if resource_spans else {}


# --- trace summaries ----------------------------------------------------------------------


def trace_summary(trace_id: str, docs: Iterable[JSON], max_skew_us: int) -> JSON:
    """A search-result row as Jaeger's ``api_v3.TraceSummary``, computed as its query
    service does from whole traces, clock skew corrected: the root is the earliest span
    without a parent (none: empty names), orphans are spans whose parent is not in the
    trace, errors are spans with status ERROR; services sorted by name."""
    spans = unique_spans(docs)
    adjustments = clock_adjustments(trace_id, spans, max_skew_us)
    span_ids = {doc["spanId"] for doc in spans}
    services: dict[str, list[int]] = {}  # name -> [spans, error spans]
    root: JSON | None = None
    first = last = None
    errors = orphans = 0
    for doc in spans:
        shift = adjustments.get(doc["spanId"], (0, []))[0]
        start, end = iso_to_nanos(doc["startTime"]) + shift, iso_to_nanos(doc["endTime"]) + shift
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
        counts = services.setdefault(doc.get("serviceName", ""), [0, 0])
        counts[0] += 1
        if status_of(doc)[0] == STATUS_ERROR:
            counts[1] += 1
            errors += 1
        parent = doc.get("parentSpanId")
        if not parent:
            if root is None:  # spans come by start time: the first root is the earliest
                root = doc
        elif parent not in span_ids:
            orphans += 1
    return {
        "traceId": trace_id,
        "rootServiceName": root.get("serviceName", "") if root else "",
        "rootOperationName": root.get("name", "") if root else "",
        "minStartTimeUnixNano": str(first or 0),
        "maxEndTimeUnixNano": str(last or 0),
        "spanCount": len(spans),
        "errorSpanCount": errors,
        "orphanSpanCount": orphans,
        "services": [
            {"name": name, "spanCount": counts[0], "errorSpanCount": counts[1]}
            for name, counts in sorted(services.items())
        ],
    }
