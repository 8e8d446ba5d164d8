"""Query-string parameters of the Jaeger HTTP API, parsed and checked before any search.

Jaeger clients (its UI, Grafana's data source) send Go duration strings, times in
microseconds (traces) or milliseconds (dependencies), tags as a JSON map or as repeated
``tag=key:value``. Every problem raises ``ParamError`` naming the parameter, which the app
answers with HTTP 400, so a typo never turns into a silently empty or unfiltered search.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from pipeline.config.durations import NANOS_PER_MICRO, NANOS_PER_MILLI, parse_go_duration

if TYPE_CHECKING:
    from pipeline.query.conditions import Condition

TRACE_ID_HEX = 32
DEFAULT_LIMIT = 20
DEFAULT_DEPENDENCIES_LOOKBACK_MS = 24 * 3_600_000  # Jaeger's default: one day

_INTEGER = re.compile(r"[-+]?[0-9]+")
_HEX = frozenset(string.hexdigits)

# Jaeger's lower-case span kinds -> our documents' ``kind``.
SPAN_KINDS = {
    "server": "SPAN_KIND_SERVER",
    "client": "SPAN_KIND_CLIENT",
    "producer": "SPAN_KIND_PRODUCER",
    "consumer": "SPAN_KIND_CONSUMER",
    "internal": "SPAN_KIND_INTERNAL",
}
STATUS_CODES = {"UNSET": 0, "OK": 1, "ERROR": 2}


class ParamError(ValueError):
    """A query parameter is missing, malformed or inconsistent; answered with HTTP 400."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class TraceQuery:
    """What ``GET /api/traces`` asks for, with times and durations in nanoseconds.

    ``service``, ``operation`` and ``tags`` must all hold on one span (as in Jaeger);
    ``min_duration``/``max_duration`` bound that span's own duration when
    ``span_durations`` (Jaeger's rule), else the whole trace's. ``conditions`` come from
    ``where`` (``pipeline.query.conditions``): their span-level comparisons hold on that
    same span too.
    """

    service: str | None = None
    operation: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    start: int | None = None
    end: int | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    span_durations: bool = False
    limit: int = DEFAULT_LIMIT
    trace_ids: tuple[str, ...] = field(default=())
    conditions: tuple[Condition, ...] = ()


def duration_param(name: str, text: str) -> int:
    """Nanoseconds of a Go duration parameter (``pipeline.config.durations``); the query's
    own rule on top of the grammar: a duration bound is never negative."""
    try:
        nanos = parse_go_duration(text)
    except ValueError as exc:
        raise ParamError(
            name, f"{exc}; expected a Go duration such as 1.2s, 100ms or 1m30s"
        ) from None
    if nanos < 0:
        raise ParamError(name, f"duration {text!r} must not be negative")
    return nanos


def int_param(name: str, text: str) -> int:
    """A decimal integer parameter (no "1_000", no "1e6": what Jaeger's Go parser takes)."""
    if not _INTEGER.fullmatch(text.strip()):
        raise ParamError(name, f"{text!r} is not an integer")
    return int(text)


def normalize_trace_id(text: str) -> str:
    """A trace id as stored: 32 lower-case hex digits. Upper case and shorter ids (64-bit
    Jaeger/Zipkin ids, dropped leading zeros) are accepted and left-padded, as Jaeger does."""
    candidate = text.strip().lower()
    if not candidate or not set(candidate) <= _HEX:
        raise ParamError("traceID", f"{text!r} is not a hexadecimal trace id")
    if len(candidate) > TRACE_ID_HEX:
        raise ParamError("traceID", f"{text!r} is longer than {TRACE_ID_HEX} hex digits")
    return candidate.rjust(TRACE_ID_HEX, "0")


def span_kind_param(name: str, text: str | None) -> str | None:
    """``SPAN_KIND_*`` for Jaeger's lower-case span kind; None for empty (all kinds)."""
    if not text:
        return None
    kind = SPAN_KINDS.get(text.strip().lower())
    if kind is None:
        raise ParamError(name, f"unknown span kind {text!r}; use one of {', '.join(SPAN_KINDS)}")
    return kind


def _check_special_tag(name: str, key: str, value: str) -> None:
    """Tags that map to span fields rather than attributes must have a value they can take."""
    if key == "span.kind":
        span_kind_param(name, value)
    elif key == "otel.status_code" and value.upper() not in STATUS_CODES:
        raise ParamError(name, f"otel.status_code must be one of {', '.join(STATUS_CODES)}")


def _tag_value(value: object) -> str:
    """A tag value as the stored keyword: JSON scalars as their JSON text (true, 200, 1.5)."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def parse_tags(tags_json: Sequence[str], tag_pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(key, value) pairs from ``tags=<JSON object>`` and repeated ``tag=key:value``."""
    found: list[tuple[str, str]] = []
    for text in tags_json:
        if not text.strip():
            continue
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ParamError("tags", f"not valid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise ParamError("tags", 'must be a JSON object such as {"http.method":"GET"}')
        for key, value in parsed.items():
            if value is None or isinstance(value, dict | list):
                raise ParamError("tags", f"the value of {key!r} must be a string, number or bool")
            found.append((key, _tag_value(value)))
    for text in tag_pairs:
        key, colon, value = text.partition(":")
        if not colon or not key:
            raise ParamError("tag", f"{text!r} is not of the form key:value")
        found.append((key, value))
    for key, value in found:
        _check_special_tag("tags", key, value)
    return tuple(found)


def _single(params: dict[str, list[str]], name: str) -> str | None:
    """The last non-empty value of a parameter (Jaeger's clients send empty ones)."""
    values = [value for value in params.get(name, []) if value.strip()]
    return values[-1] if values else None


GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_bool(name: str, text: str) -> bool:
    """A boolean as Go's ``strconv.ParseBool`` reads it (true, 1, t, TRUE, ...); empty
    is false."""
    value = text.strip()
    if not value or value in GO_FALSE:
        return False
    if value in GO_TRUE:
        return True
    raise ParamError(name, f"{text!r} is not a boolean; use true or false")


def grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Query parameters by name, each with its values in order."""
    by_name: dict[str, list[str]] = {}
    for key, value in pairs:
        by_name.setdefault(key, []).append(value)
    return by_name


DURATION_SCOPES = ("span", "trace")


def span_durations(scope: str | None, operation: str | None) -> bool:
    """Whether durations bound the matching span (``durationScope=span``) or the whole
    trace (``trace``); by default the span when an operation is given, as Jaeger users
    who pick one expect, else the trace."""
    if scope is None:
        return operation is not None
    if scope not in DURATION_SCOPES:
        raise ParamError("durationScope", f"{scope!r} is not one of span, trace")
    return scope == "span"


def parse_trace_query(
    pairs: Sequence[tuple[str, str]], max_traces: int, default_limit: int = DEFAULT_LIMIT
) -> TraceQuery:
    """The search of ``GET /api/traces`` from its query-string pairs.

    ``limit`` above ``max_traces`` is lowered to it; 0 or absent means ``default_limit``.
    ``traceID`` (repeatable) asks for those traces and, as in Jaeger, overrides the rest.
    ``where`` (repeatable, ours) adds conditions.
    """
    # conditions build on this module (ParamError) and on search's tag clauses, so it is
    # imported here, not at the top, where it would be a circular import.
    from pipeline.query.conditions import WHERE, parse_where

    params = grouped(pairs)
    trace_ids = tuple(dict.fromkeys(normalize_trace_id(t) for t in params.get("traceID", [])))
    limit = default_limit
    if (text := _single(params, "limit")) is not None:
        limit = int_param("limit", text)
        if limit < 0:
            raise ParamError("limit", f"{limit} must not be negative")
        limit = min(limit or default_limit, max_traces)
    start = end = min_duration = max_duration = None
    if (text := _single(params, "start")) is not None:
        start = int_param("start", text) * NANOS_PER_MICRO
    if (text := _single(params, "end")) is not None:
        end = int_param("end", text) * NANOS_PER_MICRO
    if start is not None and end is not None and start > end:
        raise ParamError("start", "start is after end (both are microseconds since the epoch)")
    if (text := _single(params, "minDuration")) is not None:
        min_duration = duration_param("minDuration", text)
    if (text := _single(params, "maxDuration")) is not None:
        max_duration = duration_param("maxDuration", text)
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ParamError("minDuration", "minDuration is greater than maxDuration")
    operation = _single(params, "operation")
    return TraceQuery(
        service=_single(params, "service"),
        operation=operation,
        tags=parse_tags(params.get("tags", []), params.get("tag", [])),
        start=start,
        end=end,
        min_duration=min_duration,
        max_duration=max_duration,
        span_durations=span_durations(_single(params, "durationScope"), operation),
        limit=limit,
        trace_ids=trace_ids,
        conditions=parse_where(params.get(WHERE, [])),
    )


def raw_param(pairs: Sequence[tuple[str, str]]) -> bool:
    """``raw=true`` asks for the stored timestamps, without clock-skew adjustment."""
    text = _single(grouped(pairs), "raw")
    if text is None or text.lower() in ("false", "0"):
        return False
    if text.lower() in ("true", "1"):
        return True
    raise ParamError("raw", f"{text!r} is not true or false")


def parse_dependencies_window(pairs: Sequence[tuple[str, str]], now_ms: int) -> tuple[int, int]:
    """(start, end) in nanoseconds from ``endTs`` and ``lookback`` (milliseconds; by
    default now and one day, as in Jaeger)."""
    params = grouped(pairs)
    end_ms = now_ms
    lookback_ms = DEFAULT_DEPENDENCIES_LOOKBACK_MS
    if (text := _single(params, "endTs")) is not None:
        end_ms = int_param("endTs", text)
    if (text := _single(params, "lookback")) is not None:
        lookback_ms = int_param("lookback", text)
        if lookback_ms < 0:
            raise ParamError("lookback", f"{lookback_ms} must not be negative")
    if end_ms < 0:
        raise ParamError("endTs", f"{end_ms} must not be negative")
    start_ms = max(end_ms - lookback_ms, 0)
    return start_ms * NANOS_PER_MILLI, end_ms * NANOS_PER_MILLI


def sampling_service(pairs: Sequence[tuple[str, str]]) -> str:
    """The ``service`` of a remote-sampling request, exactly as the SDK sent its
    ``service.name``. Required once, as by Jaeger's collector: an SDK without it would
    sample every operation at the default probability and nobody would notice."""
    values = [value for key, value in pairs if key == "service"]
    if len(values) > 1:
        raise ParamError("service", f"given {len(values)} times; expected once")
    if not values or not values[0].strip():
        raise ParamError("service", "is required: the SDK's service name, ?service=NAME")
    return values[0]
