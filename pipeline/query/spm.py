"""Jaeger's Service Performance Monitoring API (the Jaeger UI's "Monitor" tab) over the
span-metrics store.

``GET /api/metrics/calls``, ``/errors``, ``/latencies`` and ``/minstep``, with the
parameters and answers of Jaeger's query service (``parseMetricsQueryParams`` and its
Prometheus metrics reader): a ``MetricFamily`` in protobuf JSON, one metric per service
(and operation with ``groupByOperation``) whose points lie ``step`` apart from ``endTs -
lookback`` to ``endTs``. As in Jaeger, every point looks back over a trailing window of
``ratePer`` (Prometheus' ``rate(...[ratePer])``), not only over its own step:

* calls: calls in the window / the window's seconds, so calls per **second**;
* errors: errors / calls in the window (a fraction, 0..1), as Jaeger's
  ``rate(errors) / rate(calls)``; no point where the window has no calls (0/0);
* latencies: the ``quantile`` of the window's summed duration histograms, in
  **milliseconds** (the spanmetrics connector's unit), estimated as Prometheus'
  ``histogram_quantile`` does: ``sum by (le)``, then linear interpolation inside the
  bucket holding the rank; no point where the window has no spans.

The store holds one delta document per series, window and partition
(``pipeline.sink.metrics_documents``). One composite aggregation per request, paged,
sums them per (service, [span name,] step bucket): a ``date_histogram`` on ``@timestamp``
(the window start) with ``fixed_interval`` = step, offset so that bucket edges fall on
the answer's points; filters on ``kind: red``, the metric, ``service.name`` and
``span.kind`` (stored as ``SPAN_KIND_SERVER``, which is what Jaeger maps its ``server``
to). A point at ``t`` adds the ``ceil(ratePer / step)`` buckets before it, so the rate
window is ``ratePer`` rounded up to whole steps (as Jaeger's Elasticsearch metrics reader
does). ``bucket_counts`` is stored without doc values, so latencies are summed by one Painless
``scripted_metric`` over the request's documents, reading ``_source`` and keying by
(service, [span name,] step bucket) itself (inline scripts must be allowed, the
OpenSearch default).

Differences from Jaeger, on purpose: windows without spans are not stored, so a call
rate is 0 (not missing) where a series had no calls; error and latency points with
nothing to divide are left out instead of NaN; ``metrics`` is always present (protobuf
JSON leaves an empty list out, which the Jaeger UI's reducer cannot read); a service's
overflow series (no span kind, no span name) is in no answer; ``/minstep`` answers the
span-metrics window (15 000 ms by default), the finest step with meaning here, where
Jaeger's Prometheus reader answers 1 ms.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opensearchpy import AsyncOpenSearch
from starlette.requests import Request
from starlette.responses import Response

from pipeline.config.settings import Settings
from pipeline.query.jaeger import JsonResponse, envelope
from pipeline.query.params import ParamError, go_bool, grouped, int_param
from pipeline.store.metrics_indices import metrics_index_base

JSON = dict[str, Any]

# Jaeger's defaults (cmd/jaeger/.../jaegerquery/internal/default_params.go).
DEFAULT_LOOKBACK_MS = 3_600_000
DEFAULT_STEP_MS = 5_000
DEFAULT_RATE_PER_MS = 600_000
DEFAULT_SPAN_KINDS = ("SPAN_KIND_SERVER",)
#: Points per series at most: Prometheus refuses query ranges with more (11 000).
MAX_POINTS = 11_000
#: Composite buckets per OpenSearch request (search.max_buckets is 65 535).
PAGE_SIZE = 2_000

# Jaeger's span kinds (any case) -> the OTLP names the RED documents store.
SPAN_KINDS = {
    "unspecified": "SPAN_KIND_UNSPECIFIED",
    "internal": "SPAN_KIND_INTERNAL",
    "server": "SPAN_KIND_SERVER",
    "client": "SPAN_KIND_CLIENT",
    "producer": "SPAN_KIND_PRODUCER",
    "consumer": "SPAN_KIND_CONSUMER",
}
# Go's strconv.ParseBool, which Jaeger parses groupByOperation with.
_FLOAT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")

# The metrics store's RED documents (pipeline.sink.metrics_documents).
KIND_RED = "red"
CALLS_METRIC = "traces.span.metrics.calls"
DURATION_METRIC = "traces.span.metrics.duration"

CALLS_NAME = "service_call_rate"
CALLS_HELP = "calls/sec, grouped by service"
ERRORS_NAME = "service_error_rate"
ERRORS_HELP = "error rate, computed as a fraction of errors/sec over calls/sec, grouped by service"
LATENCIES_NAME = "service_latencies"

SEARCH_OPTIONS = {"ignore_unavailable": True, "allow_no_indices": True}

# Sums the duration histograms of a whole request per (service, [span name,] step bucket,
# bounds) in one pass: ``_source`` because ``bucket_counts`` has no doc values. One
# scripted metric for the request, not one per composite bucket: a scripted metric under
# each of hundreds of buckets (a services page over an hour) holds a state per bucket and
# costs about 1 MB of heap each, enough to trip a small node's circuit breaker. Keys are
# length-prefixed so no service or span name can collide with another. Rows come back as
# [{"service", "operation", "index", "bounds", "counts"}]; the text never changes, so
# OpenSearch compiles it once.
HISTOGRAM_SCRIPT: JSON = {
    "init_script": "state.h = new HashMap();",
    "map_script": """
        def src = params['_source'];
        def bounds = src['explicit_bounds'];
        def counts = src['bucket_counts'];
        if (bounds == null || counts == null || counts.size() != bounds.size() + 1) {
            return;
        }
        long millis = doc['@timestamp'].value.toInstant().toEpochMilli();
        long index = (millis - params.first) / params.step;
        String service = doc['service.name'].size() == 0 ? '' : doc['service.name'].value;
        String operation = '';
        if (params.by_operation && doc['span.name'].size() > 0) {
            operation = doc['span.name'].value;
        }
        String shape = bounds.toString();
        String key = service.length() + ':' + service + operation.length() + ':' + operation
            + index + ':' + shape;
        def acc = state.h.get(key);
        if (acc == null) {
            List zeros = new ArrayList();
            for (int i = 0; i < counts.size(); ++i) {
                zeros.add(0L);
            }
            acc = ['key': key, 'service': service, 'operation': operation, 'index': index,
                   'bounds': bounds, 'counts': zeros];
            state.h.put(key, acc);
        }
        List sums = acc.get('counts');
        for (int i = 0; i < counts.size(); ++i) {
            sums.set(i, sums.get(i) + ((Number) counts.get(i)).longValue());
        }
    """,
    "combine_script": "return new ArrayList(state.h.values());",
    "reduce_script": """
        Map merged = new HashMap();
        for (def shard : states) {
            if (shard == null) {
                continue;
            }
            for (def row : shard) {
                def acc = merged.get(row.get('key'));
                if (acc == null) {
                    merged.put(row.get('key'), row);
                    continue;
                }
                List sums = acc.get('counts');
                List more = row.get('counts');
                for (int i = 0; i < more.size(); ++i) {
                    sums.set(i, ((Number) sums.get(i)).longValue()
                        + ((Number) more.get(i)).longValue());
                }
            }
        }
        return new ArrayList(merged.values());
    """,
}


# --- parameters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsQuery:
    """What one ``/api/metrics/...`` request asks for; times and durations in ms.

    Points are at ``start + i * step`` up to ``end`` (``start = end - lookback``), as a
    Prometheus range query places them. Each point covers the ``rate_steps`` buckets of
    ``step`` ms just before it; bucket 0 starts at ``first_bucket``.
    """

    services: tuple[str, ...]
    group_by_operation: bool = False
    span_kinds: tuple[str, ...] = DEFAULT_SPAN_KINDS
    end: int = 0
    lookback: int = DEFAULT_LOOKBACK_MS
    step: int = DEFAULT_STEP_MS
    rate_per: int = DEFAULT_RATE_PER_MS

    @property
    def start(self) -> int:
        return self.end - self.lookback

    @property
    def point_count(self) -> int:
        return self.lookback // self.step + 1

    @property
    def points(self) -> list[int]:
        return [self.start + i * self.step for i in range(self.point_count)]

    @property
    def rate_steps(self) -> int:
        return max(1, math.ceil(self.rate_per / self.step))

    @property
    def window_seconds(self) -> float:
        """The seconds each point's rate is taken over: ``ratePer`` in whole steps."""
        return self.rate_steps * self.step / 1000

    @property
    def first_bucket(self) -> int:
        return self.start - self.rate_steps * self.step

    @property
    def last_point(self) -> int:
        return self.start + (self.point_count - 1) * self.step


def _first(params: dict[str, list[str]], name: str) -> str:
    """The first value of a parameter, "" when absent (Go's ``url.Values.Get``)."""
    return params.get(name, [""])[0].strip()


def _millis(params: dict[str, list[str]], name: str, default: int, minimum: int) -> int:
    """A whole number of milliseconds; an empty or absent parameter takes ``default``."""
    text = _first(params, name)
    if not text:
        return default
    value = int_param(name, text)
    if value < minimum:
        raise ParamError(name, f"{value} must be at least {minimum} (milliseconds)")
    return value


def parse_span_kinds(values: Sequence[str]) -> tuple[str, ...]:
    """``SPAN_KIND_*`` for each Jaeger span kind; Jaeger's default (server) when absent."""
    if not values:
        return DEFAULT_SPAN_KINDS
    kinds = []
    for text in values:
        kind = SPAN_KINDS.get(text.strip().lower())
        if kind is None:
            choices = ", ".join(SPAN_KINDS)
            raise ParamError("spanKind", f"unsupported span kind {text!r}; use one of {choices}")
        kinds.append(kind)
    return tuple(dict.fromkeys(kinds))


def parse_metrics_query(pairs: Sequence[tuple[str, str]], now_ms: int) -> MetricsQuery:
    """The common parameters of ``/api/metrics/{calls,errors,latencies}``.

    ``service`` (repeatable) is required; ``endTs`` (ms since the epoch, default now),
    ``lookback``, ``step`` and ``ratePer`` (ms; 1 h, 5 s and 10 min by default) and
    ``groupByOperation`` take their first value, as Jaeger's parser does. Beyond Jaeger:
    ``step`` and ``ratePer`` must be positive and the answer at most ``MAX_POINTS``
    points long (Prometheus' own limits), so a typo cannot ask for millions of buckets.
    """
    params = grouped(pairs)
    services = tuple(dict.fromkeys(s for s in params.get("service", []) if s.strip()))
    if not services:
        raise ParamError("service", "please provide at least one service name")
    query = MetricsQuery(
        services=services,
        group_by_operation=go_bool("groupByOperation", _first(params, "groupByOperation")),
        span_kinds=parse_span_kinds(params.get("spanKind", [])),
        end=_millis(params, "endTs", now_ms, 0),
        lookback=_millis(params, "lookback", DEFAULT_LOOKBACK_MS, 0),
        step=_millis(params, "step", DEFAULT_STEP_MS, 1),
        rate_per=_millis(params, "ratePer", DEFAULT_RATE_PER_MS, 1),
    )
    if query.point_count > MAX_POINTS:
        raise ParamError(
            "step",
            f"lookback {query.lookback} ms / step {query.step} ms gives {query.point_count} "
            f"points; at most {MAX_POINTS}: increase step",
        )
    return query


def parse_quantile(pairs: Sequence[tuple[str, str]]) -> float:
    """``quantile`` of ``/api/metrics/latencies``: required, in (0, 1] (Jaeger's range)."""
    text = _first(grouped(pairs), "quantile")
    if not text:
        raise ParamError("quantile", "is required: a number in (0, 1] such as 0.95")
    if not _FLOAT.fullmatch(text):
        raise ParamError("quantile", f"{text!r} is not a number")
    value = float(text)
    if not 0 < value <= 1:
        raise ParamError("quantile", f"{text} is not in (0, 1]")
    return value


def parse_window(pairs: Sequence[tuple[str, str]], now_ms: int) -> tuple[int, int]:
    """(start, end) in ms from ``endTs`` and ``lookback`` as the metrics endpoints read them
    (now and one hour by default), for answers over a window without steps (exemplars)."""
    params = grouped(pairs)
    end = _millis(params, "endTs", now_ms, 0)
    return end - _millis(params, "lookback", DEFAULT_LOOKBACK_MS, 0), end


# --- OpenSearch request bodies ------------------------------------------------------------


def metrics_filters(query: MetricsQuery, metric: str) -> list[JSON]:
    """RED documents of ``metric`` for the asked services and span kinds, whose window
    starts in the buckets the answer reads."""
    return [
        {"term": {"kind": KIND_RED}},
        {"term": {"metric": metric}},
        {"terms": {"service.name": list(query.services)}},
        {"terms": {"span.kind": list(query.span_kinds)}},
        {
            "range": {
                "@timestamp": {
                    "gte": query.first_bucket,
                    "lt": query.last_point,
                    "format": "epoch_millis",
                }
            }
        },
    ]


def series_body(
    query: MetricsQuery, metric: str, sums: JSON, after: JSON | None = None, size: int = PAGE_SIZE
) -> JSON:
    """One page of (service, [span name,] step bucket) buckets with the ``sums`` in each.

    The offset puts a bucket edge on every point, so each bucket lies wholly inside the
    windows of the points it counts for.
    """
    sources: list[JSON] = [{"service": {"terms": {"field": "service.name"}}}]
    if query.group_by_operation:
        sources.append({"operation": {"terms": {"field": "span.name"}}})
    sources.append(
        {
            "time": {
                "date_histogram": {
                    "field": "@timestamp",
                    "fixed_interval": f"{query.step}ms",
                    "offset": query.first_bucket % query.step,
                }
            }
        }
    )
    composite: JSON = {"size": size, "sources": sources}
    if after is not None:
        composite["after"] = after
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": metrics_filters(query, metric)}},
        "aggs": {"series": {"composite": composite, "aggs": sums}},
    }


CALL_SUMS: JSON = {"calls": {"sum": {"field": "calls"}}, "errors": {"sum": {"field": "errors"}}}


def histograms_body(query: MetricsQuery) -> JSON:
    """The duration histograms of the asked series, summed per step bucket by one
    scripted metric over the request's documents (``HISTOGRAM_SCRIPT``)."""
    params = {
        "first": query.first_bucket,
        "step": query.step,
        "by_operation": query.group_by_operation,
    }
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": metrics_filters(query, DURATION_METRIC)}},
        "aggs": {"histograms": {"scripted_metric": {**HISTOGRAM_SCRIPT, "params": params}}},
    }


# --- aggregation results -> values per point ----------------------------------------------

SeriesKey = tuple[str, str | None]  # (service, span name when grouped by operation)
Counts = dict[Any, int]  # what one bucket (or one point's window) adds up


def collect(
    buckets: Iterable[JSON], query: MetricsQuery, read: Callable[[JSON], Counts]
) -> dict[SeriesKey, dict[int, Counts]]:
    """Composite buckets -> per series, bucket index -> the bucket's counts."""
    series: dict[SeriesKey, dict[int, Counts]] = {}
    for bucket in buckets:
        key = bucket["key"]
        index = (int(key["time"]) - query.first_bucket) // query.step
        name = (key["service"], key.get("operation") if query.group_by_operation else None)
        series.setdefault(name, {})[index] = read(bucket)
    return series


def window_sums(buckets: dict[int, Counts], points: int, width: int) -> Iterator[Counts]:
    """For each point p, the sum of buckets p .. p + width - 1, kept as a running window
    (one bucket in, one out per point), so a long ``ratePer`` costs no more."""
    window: Counts = {}

    def add(counts: Counts | None, sign: int) -> None:
        for key, value in (counts or {}).items():
            window[key] = window.get(key, 0) + sign * value

    for index, counts in buckets.items():
        if 0 <= index < width:
            add(counts, 1)
    for p in range(points):
        if p:
            add(buckets.get(p - 1), -1)
            add(buckets.get(p + width - 1), 1)
        yield window


def read_calls(bucket: JSON) -> Counts:
    return {
        "calls": round(bucket["calls"]["value"] or 0),
        "errors": round(bucket["errors"]["value"] or 0),
    }


def collect_histograms(
    rows: Iterable[JSON], query: MetricsQuery
) -> dict[SeriesKey, dict[int, Counts]]:
    """``HISTOGRAM_SCRIPT``'s rows -> per series, bucket index -> counts keyed (bounds,
    bucket position)."""
    series: dict[SeriesKey, dict[int, Counts]] = {}
    for row in rows:
        name = (row["service"], row["operation"] if query.group_by_operation else None)
        counts = series.setdefault(name, {}).setdefault(int(row["index"]), {})
        bounds = tuple(float(b) for b in row["bounds"])
        for i, count in enumerate(row["counts"]):
            counts[bounds, i] = counts.get((bounds, i), 0) + int(count)
    return series


def bucket_quantile(q: float, cumulative: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(le, count)`` buckets, which
    must end with +Inf; None where Prometheus gives NaN (no observations).

    Counts are first made monotonic; the rank ``q * total`` is found in the first bucket
    whose count reaches it and interpolated linearly between that bucket's lower and upper
    bound (the first bucket starts at 0, unless its bound is <= 0, which is returned); a
    rank in the +Inf bucket gives the highest finite bound.
    """
    buckets = sorted(cumulative)
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return None
    fixed: list[tuple[float, float]] = []
    highest = 0.0
    for le, count in buckets:
        highest = max(highest, count)
        fixed.append((le, highest))
    total = fixed[-1][1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, (_le, count) in enumerate(fixed) if count >= rank or i == len(fixed) - 1)
    if b == len(fixed) - 1:
        return fixed[-2][0]
    upper, count = fixed[b]
    if b == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if b == 0 else fixed[b - 1]
    return lower + (upper - lower) * (rank - below) / (count - below)


def histogram_quantile(q: float, counts: Counts) -> float | None:
    """The q-quantile of summed histograms keyed (bounds, position), as Prometheus'
    ``histogram_quantile(q, sum by (le) (...))``: each bounds' cumulative counts added up
    per upper bound. Histograms without observations take no part."""
    per_bounds: dict[tuple[float, ...], dict[int, int]] = {}
    for (bounds, i), count in counts.items():
        per_bounds.setdefault(bounds, {})[i] = count
    by_le: dict[float, float] = {}
    for bounds, positions in per_bounds.items():
        if not any(positions.values()):
            continue
        running = 0
        for i, le in enumerate((*bounds, math.inf)):
            running += positions.get(i, 0)
            by_le[le] = by_le.get(le, 0) + running
    return bucket_quantile(q, list(by_le.items()))


# --- Jaeger's MetricFamily JSON -----------------------------------------------------------


def rfc3339(millis: int) -> str:
    """A time as protobuf JSON writes a Timestamp: UTC, "Z", fraction only when non-zero."""
    seconds, fraction = divmod(millis, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:03d}Z" if fraction else f"{stamp}Z"


def metric_point(millis: int, value: float) -> JSON:
    return {"gaugeValue": {"doubleValue": value}, "timestamp": rfc3339(millis)}


def labels(key: SeriesKey) -> list[JSON]:
    """``service_name`` first (the Jaeger UI reads ``labels[0]`` as the service), then
    ``operation`` when grouped by it."""
    service, operation = key
    found = [{"name": "service_name", "value": service}]
    if operation is not None:
        found.append({"name": "operation", "value": operation})
    return found


def metric_family(name: str, help_text: str, query: MetricsQuery, metrics: list[JSON]) -> JSON:
    """Jaeger's ``MetricFamily``; names and help say "& operation" when grouped by it."""
    if query.group_by_operation:
        name = name.replace("service", "service_operation", 1)
        help_text += " & operation"
    return {"name": name, "type": "GAUGE", "help": help_text, "metrics": metrics}


def _metrics(
    query: MetricsQuery,
    series: dict[SeriesKey, dict[int, Counts]],
    value: Callable[[Counts], float | None],
) -> list[JSON]:
    """One metric per series, sorted by labels; points where ``value`` is None left out."""
    metrics = []
    for key in sorted(series, key=lambda k: (k[0], k[1] or "")):
        sums = window_sums(series[key], query.point_count, query.rate_steps)
        points = [
            metric_point(at, found)
            for at, window in zip(query.points, sums, strict=True)
            if (found := value(window)) is not None
        ]
        if points:
            metrics.append({"labels": labels(key), "metricPoints": points})
    return metrics


def call_rate_family(query: MetricsQuery, buckets: Iterable[JSON]) -> JSON:
    series = collect(buckets, query, read_calls)
    seconds = query.window_seconds
    metrics = _metrics(query, series, lambda window: window.get("calls", 0) / seconds)
    return metric_family(CALLS_NAME, CALLS_HELP, query, metrics)


def _error_rate(window: Counts) -> float | None:
    calls = window.get("calls", 0)
    return window.get("errors", 0) / calls if calls > 0 else None


def error_rate_family(query: MetricsQuery, buckets: Iterable[JSON]) -> JSON:
    metrics = _metrics(query, collect(buckets, query, read_calls), _error_rate)
    return metric_family(ERRORS_NAME, ERRORS_HELP, query, metrics)


def latencies_help(quantile: float) -> str:
    return f"{quantile:.2f}th quantile latency, grouped by service"


def latency_family(query: MetricsQuery, quantile: float, rows: Iterable[JSON]) -> JSON:
    series = collect_histograms(rows, query)
    metrics = _metrics(query, series, lambda window: histogram_quantile(quantile, window))
    return metric_family(LATENCIES_NAME, latencies_help(quantile), query, metrics)


# --- calls --------------------------------------------------------------------------------


def metrics_pattern(settings: Settings) -> str:
    """Every monthly metrics index of these settings (their ``store_index_prefix`` too)."""
    return f"{metrics_index_base(settings)}-*"


class SpmReader:
    """Reads the RED documents of every monthly metrics index; OpenSearch errors propagate
    (the app answers them with 502/503)."""

    def __init__(self, client: AsyncOpenSearch, index: str, page_size: int = PAGE_SIZE) -> None:
        self.client = client
        self.index = index
        self.page_size = page_size

    @classmethod
    def of(cls, client: AsyncOpenSearch, settings: Settings) -> SpmReader:
        return cls(client, metrics_pattern(settings))

    async def buckets(self, query: MetricsQuery, metric: str, sums: JSON) -> list[JSON]:
        """Every composite bucket of ``series_body``, page after page."""
        found: list[JSON] = []
        after = None
        while True:
            body = series_body(query, metric, sums, after, self.page_size)
            answer = await self.client.search(index=self.index, body=body, **SEARCH_OPTIONS)
            series = (answer.get("aggregations") or {}).get("series") or {}
            page = series.get("buckets", [])
            found.extend(page)
            after = series.get("after_key")
            if len(page) < self.page_size or after is None:
                return found

    async def call_rates(self, query: MetricsQuery) -> JSON:
        return call_rate_family(query, await self.buckets(query, CALLS_METRIC, CALL_SUMS))

    async def error_rates(self, query: MetricsQuery) -> JSON:
        return error_rate_family(query, await self.buckets(query, CALLS_METRIC, CALL_SUMS))

    async def latencies(self, query: MetricsQuery, quantile: float) -> JSON:
        answer = await self.client.search(
            index=self.index, body=histograms_body(query), **SEARCH_OPTIONS
        )
        found = (answer.get("aggregations") or {}).get("histograms") or {}
        return latency_family(query, quantile, found.get("value") or [])


# --- handlers -----------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _reader(request: Request) -> SpmReader:
    """Over the span reader's OpenSearch client and the settings' metrics indices."""
    return SpmReader.of(request.app.state.reader.client, _settings(request))


def _query(request: Request) -> MetricsQuery:
    pairs = request.query_params.multi_items()
    return parse_metrics_query(pairs, int(time.time() * 1000))


# A bad parameter raises ParamError, which the app answers as Jaeger does: 400 in its
# envelope, naming the parameter (``app.bad_parameter``).


async def metrics_calls(request: Request) -> Response:
    """``GET /api/metrics/calls``: calls per second per service (and operation)."""
    return JsonResponse(await _reader(request).call_rates(_query(request)))


async def metrics_errors(request: Request) -> Response:
    """``GET /api/metrics/errors``: errors / calls per service (and operation)."""
    return JsonResponse(await _reader(request).error_rates(_query(request)))


async def metrics_latencies(request: Request) -> Response:
    """``GET /api/metrics/latencies?quantile=``: that latency quantile, in ms."""
    quantile = parse_quantile(request.query_params.multi_items())
    return JsonResponse(await _reader(request).latencies(_query(request), quantile))


async def metrics_minstep(request: Request) -> Response:
    """``GET /api/metrics/minstep``: the finest step in ms with meaning here, the
    span-metrics window (points closer together mostly fall between windows)."""
    return JsonResponse(envelope(round(_settings(request).span_metrics_window * 1000)))
