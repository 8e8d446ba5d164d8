"""Logs and metrics beside a trace: what the UI shows next to a trace besides its spans.

* **Log links** (``GET /api/ui/config``): the ``query_log_links`` url templates of outside
  log viewers, which the UI fills in per trace or span (``ui/links.js``): every value
  URL-quoted; ``{start}``/``{end}`` ISO-8601 UTC with milliseconds
  and ``{start_ms}``/``{end_ms}`` ms since the epoch, the start rounded down and the end
  up, so the window always covers the trace.
* **Inline logs** (``GET /api/traces/{trace_id}/logs``): the OpenTelemetry log records of
  one trace, read with one search from ``query_logs_index`` (empty: off), where Data
  Prepper's OpenSearch sink puts them (index type ``log-analytics``, alias
  ``logs-otel-v1``). Both of its document shapes are read: the default codec's top-level
  ``traceId``, ``spanId`` (hex, ``""`` without a span), ``time``, ``observedTimestamp``
  (``observedTime`` before Data Prepper 2.x), ``serviceName``, ``severityText``,
  ``severityNumber``, ``body``, and attributes flattened into keys
  ``log.attributes.<key>`` / ``resource.attributes.<key>`` with each "." of the key written
  "@"; and the standard codec's ``attributes`` and ``resource.attributes`` objects and
  ``severity.text`` / ``severity.number``. A missing field is left empty, never an error.
  At most ``query_max_logs`` records, the earliest; a capped answer says so in
  ``warnings`` (not ``errors``, which clients show instead of the data).
* **Exemplars** (``GET /api/metrics/exemplars``): trace ids the span-metrics windows of a
  service kept as exemplars (``exemplar_trace_ids`` of its RED documents, ``spm``'s
  store), newest window first, each with the mean latency of its series in that window
  (the duration histogram's sum / count: the documents keep no exemplar's own value).

Access control hook: when ``app.state.visible_log_record`` exists, ``trace_logs`` keeps
only the records for which ``visible_log_record(request, record)`` is true (a plain,
synchronous predicate over the answered record shape, applied after the cap).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch
from starlette.requests import Request
from starlette.responses import Response

from pipeline.config.settings import Settings
from pipeline.query.jaeger import JsonResponse, envelope
from pipeline.query.params import ParamError, grouped, normalize_trace_id
from pipeline.query.spm import (
    CALLS_METRIC,
    DURATION_METRIC,
    KIND_RED,
    SEARCH_OPTIONS,
    metrics_pattern,
    parse_span_kinds,
    parse_window,
)

JSON = dict[str, Any]

#: Exemplar trace ids answered at most.
MAX_EXEMPLARS = 20
#: RED documents read for them: calls and duration documents repeat the same ids.
EXEMPLAR_DOCUMENTS = 200
EXEMPLAR_SOURCE = ["window_end", "metric", "span.name", "span", "count", "sum"]

# Data Prepper's log document fields (see the module doc).
TRACE_ID = "traceId"
SPAN_ID = "spanId"
TIME_FIELDS = ("time", "observedTimestamp", "observedTime", "@timestamp")
LOG_ATTRIBUTES = "log.attributes."
RESOURCE_ATTRIBUTES = "resource.attributes."
SERVICE_NAME = "service.name"
# OpenTelemetry's severity number ranges (1-4 TRACE ... 21-24 FATAL), for records that
# carry a number but no text.
SEVERITY_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")

_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


# --- log links ------------------------------------------------------------------------------


def log_links_config(settings: Settings) -> JSON:
    """What the UI needs to offer logs: the link templates, and whether inline logs are on."""
    return {
        "logLinks": [{"name": link.name, "url": link.url} for link in settings.query_log_links],
        "logs": bool(settings.query_logs_index),
    }


# --- log records ----------------------------------------------------------------------------


def parse_micros(value: Any) -> int | None:
    """µs since the epoch of a stored time: ISO-8601 (any fraction, a zone or Z) or a
    number of ms (OpenSearch's ``epoch_millis``); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return round(value * 1000)
    if not isinstance(value, str):
        return None
    match = _ISO.fullmatch(value.strip())
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    try:
        moment = datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    offset = 0
    if zone and zone.upper() != "Z":
        digits = zone[1:].replace(":", "")
        offset = (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * (-1 if zone[0] == "-" else 1)
    seconds = int(moment.timestamp()) - offset
    return seconds * 1_000_000 + int((fraction or "0").ljust(6, "0")[:6])


def _nested(source: JSON, *path: str) -> Any:
    """``source[a][b]...``, or None where a step is missing or not an object."""
    value: Any = source
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _prefixed(source: JSON, prefix: str, *path: str) -> dict[str, Any]:
    """Attributes stored flat (``<prefix><key>``, "." in the key written "@") or as an
    object at ``path``, keyed by the attribute's own name."""
    found: dict[str, Any] = {}
    nested = _nested(source, *path)
    if isinstance(nested, dict):
        found.update(nested)
    for key, value in source.items():
        if key.startswith(prefix):
            found[key[len(prefix) :].replace("@", ".")] = value
    return found


def _timestamp(source: JSON) -> int:
    """µs of the record's own time, else of when it was observed; 0 when unknown (an unset
    OTLP time is stored as the epoch, so it counts as unknown too)."""
    for field in TIME_FIELDS:
        micros = parse_micros(source.get(field))
        if micros:
            return micros
    return 0


def _severity_number(source: JSON) -> int | None:
    value = source.get("severityNumber", _nested(source, "severity", "number"))
    if value is None:
        value = source.get("severity.number")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None  # 0 is SEVERITY_NUMBER_UNSPECIFIED
    return value


def _severity_text(source: JSON, number: int | None) -> str:
    text = source.get("severityText") or _nested(source, "severity", "text")
    text = text or source.get("severity.text")
    if isinstance(text, str) and text:
        return text
    if number is not None and 1 <= number <= 24:
        return SEVERITY_NAMES[(number - 1) // 4]
    return ""


def _body(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()  # structured bodies (standard codec) as JSON text


def _hex(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def log_record(source: JSON, trace_id: str = "") -> JSON:
    """One stored log document (either Data Prepper shape) as the UI reads it."""
    number = _severity_number(source)
    resource = _prefixed(source, RESOURCE_ATTRIBUTES, "resource", "attributes")
    attributes = _prefixed(source, LOG_ATTRIBUTES, "log", "attributes")
    standard = source.get("attributes")
    if isinstance(standard, dict):
        attributes.update(standard)
    service = source.get("serviceName") or resource.get(SERVICE_NAME) or ""
    return {
        "timestamp": _timestamp(source),
        "traceID": _hex(source.get(TRACE_ID)) or trace_id,
        "spanID": _hex(source.get(SPAN_ID)),
        "service": service if isinstance(service, str) else str(service),
        "severity": _severity_text(source, number),
        "severityNumber": number,
        "body": _body(source.get("body")),
        "attributes": attributes,
    }


def trace_logs_body(trace_id: str, size: int) -> JSON:
    """The earliest ``size`` log records of one trace; the exact total tells whether more
    were left out (one trace's records: counting them is cheap)."""
    return {
        "size": size,
        "track_total_hits": True,
        "query": {"bool": {"filter": [{"term": {TRACE_ID: trace_id}}]}},
        "sort": [{"time": {"order": "asc", "unmapped_type": "date"}}],
    }


def _total(hits: JSON) -> int:
    total = hits.get("total")
    if isinstance(total, dict):
        return int(total.get("value") or 0)
    return int(total or 0)


class LogReader:
    """Reads the log records of one trace; OpenSearch errors propagate (502/503), a missing
    index is no records."""

    def __init__(self, client: AsyncOpenSearch, index: str, max_logs: int) -> None:
        self.client = client
        self.index = index
        self.max_logs = max_logs

    @classmethod
    def of(cls, client: AsyncOpenSearch, settings: Settings) -> LogReader:
        return cls(client, settings.query_logs_index, settings.query_max_logs)

    async def trace_logs(self, trace_id: str) -> tuple[list[JSON], bool]:
        """(records in time order, whether ``max_logs`` left some out)."""
        if not self.index:
            return [], False
        body = trace_logs_body(trace_id, self.max_logs)
        answer = await self.client.search(index=self.index, body=body, **SEARCH_OPTIONS)
        hits = answer.get("hits") or {}
        found = hits.get("hits") or []
        records = [log_record(hit.get("_source") or {}, trace_id) for hit in found]
        records.sort(key=lambda record: record["timestamp"])  # stable: ties keep their order
        return records, _total(hits) > len(found)


# --- exemplars ------------------------------------------------------------------------------


def exemplars_body(
    service: str,
    operation: str | None,
    start_ms: int,
    end_ms: int,
    span_kinds: Sequence[str] = (),
    size: int = EXEMPLAR_DOCUMENTS,
) -> JSON:
    """RED documents of the service (and span name) with exemplars, whose window ends in
    ``(start_ms, end_ms]``, newest window first."""
    filters: list[JSON] = [
        {"term": {"kind": KIND_RED}},
        {"terms": {"metric": [CALLS_METRIC, DURATION_METRIC]}},
        {"term": {"service.name": service}},
        {"exists": {"field": "exemplar_trace_ids"}},
        {"range": {"window_end": {"gt": start_ms, "lte": end_ms, "format": "epoch_millis"}}},
    ]
    if operation:
        filters.append({"term": {"span.name": operation}})
    if span_kinds:
        filters.append({"terms": {"span.kind": list(span_kinds)}})
    return {
        "size": size,
        "track_total_hits": False,
        "query": {"bool": {"filter": filters}},
        "sort": [{"window_end": "desc"}],
        "_source": [*EXEMPLAR_SOURCE, "exemplar_trace_ids"],
    }


def _mean_ms(source: JSON) -> float | None:
    """The duration histogram's mean (ms) over its series and window; None for others."""
    if source.get("metric") != DURATION_METRIC:
        return None
    count, total = source.get("count"), source.get("sum")
    if not isinstance(count, int | float) or not isinstance(total, int | float) or count <= 0:
        return None
    return total / count


def exemplars(sources: Sequence[JSON], limit: int = MAX_EXEMPLARS) -> list[JSON]:
    """One entry per trace id, from its newest window; newest first, then slowest."""
    found: dict[str, JSON] = {}
    for source in sources:
        micros = parse_micros(source.get("window_end"))
        if micros is None:
            continue
        operation = source.get("span.name", _nested(source, "span", "name"))
        entry_base = {
            "timestamp": micros // 1000,
            "operation": operation if isinstance(operation, str) else None,
        }
        mean = _mean_ms(source)
        for trace_id in source.get("exemplar_trace_ids") or []:
            if not isinstance(trace_id, str) or not trace_id:
                continue
            entry = found.get(trace_id.lower())
            if entry is None:
                found[trace_id.lower()] = {
                    "traceID": trace_id.lower(),
                    **entry_base,
                    "durationMs": mean,
                }
            elif (
                entry["durationMs"] is None
                and mean is not None
                and all(entry[key] == value for key, value in entry_base.items())
            ):
                entry["durationMs"] = mean  # the same series' duration document
    ordered = sorted(
        found.values(),
        key=lambda e: (-e["timestamp"], -(e["durationMs"] or -1.0), e["traceID"]),
    )
    return ordered[:limit]


def parse_exemplars_query(
    pairs: Sequence[tuple[str, str]], now_ms: int
) -> tuple[str, str | None, int, int, tuple[str, ...]]:
    """(service, operation or None, start ms, end ms, span kinds or () for all) of
    ``/api/metrics/exemplars``: ``service`` required, ``operation`` and ``spanKind``
    optional, ``endTs`` and ``lookback`` as the other metrics endpoints take them."""
    params = grouped(pairs)
    service = next((s.strip() for s in params.get("service", []) if s.strip()), "")
    if not service:
        raise ParamError("service", "is required")
    operation = next((o.strip() for o in params.get("operation", []) if o.strip()), None)
    kinds = params.get("spanKind", [])
    span_kinds = parse_span_kinds(kinds) if kinds else ()
    start, end = parse_window(pairs, now_ms)
    return service, operation, start, end, span_kinds


# --- handlers -------------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _log_reader(request: Request) -> LogReader:
    """Made on first use over the span reader's client, then kept on the app."""
    state = request.app.state
    reader = getattr(state, "log_reader", None)
    if reader is None:
        reader = state.log_reader = LogReader.of(state.reader.client, state.settings)
    return reader


async def trace_logs(request: Request) -> Response:
    """``GET /api/traces/{trace_id}/logs``: the trace's log records in time order, in
    Jaeger's envelope; ``warnings`` when logs are off or the list was capped."""
    trace_id = normalize_trace_id(request.path_params["trace_id"])
    settings = _settings(request)
    if not settings.query_logs_index:
        body = envelope([])
        body["warnings"] = ["inline logs are off: query_logs_index is empty"]
        return JsonResponse(body)
    records, capped = await _log_reader(request).trace_logs(trace_id)
    # Access control hook (see the module doc): a predicate the RBAC layer may install.
    if (visible := getattr(request.app.state, "visible_log_record", None)) is not None:
        records = [record for record in records if visible(request, record)]
    body = envelope(records)
    if capped:
        body["warnings"] = [
            f"partial: the first {settings.query_max_logs} log records of the trace, "
            f"capped by query_max_logs={settings.query_max_logs}"
        ]
    return JsonResponse(body)


async def ui_config(request: Request) -> Response:
    """``GET /api/ui/config``: log links and whether inline logs are on, as a plain object
    (the UI's own endpoint: no Jaeger envelope)."""
    return JsonResponse(log_links_config(_settings(request)))


async def metrics_exemplars(request: Request) -> Response:
    """``GET /api/metrics/exemplars``: exemplar traces of a service (and operation)."""
    pairs = request.query_params.multi_items()
    service, operation, start, end, kinds = parse_exemplars_query(pairs, int(time.time() * 1000))
    body = exemplars_body(service, operation, start, end, kinds)
    client: AsyncOpenSearch = request.app.state.reader.client
    index = metrics_pattern(_settings(request))
    answer = await client.search(index=index, body=body, **SEARCH_OPTIONS)
    sources = [hit.get("_source") or {} for hit in (answer.get("hits") or {}).get("hits") or []]
    return JsonResponse(envelope(exemplars(sources)))
