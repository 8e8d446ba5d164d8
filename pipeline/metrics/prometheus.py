"""Closed span-metric windows -> cumulative Prometheus series (a prometheus_client collector).

What: :class:`SpanMetricsCollector` is a custom collector for ``prometheus_client``. Its
user feeds it every CLOSED window (:meth:`~SpanMetricsCollector.add_red_window` for a
:class:`~pipeline.metrics.red.RedWindow`, :meth:`~SpanMetricsCollector.add_graph_window`
for a :class:`~pipeline.metrics.service_graph.ServiceGraphWindow`); it adds each window's
counts to running totals and, on every scrape, exposes them with the names and labels the
OpenTelemetry Collector's ``spanmetrics`` and ``servicegraph`` connectors get once their
output goes through the Collector's ``prometheus`` exporter, so dashboards and alerts
written for those connectors work unchanged.

Use (wiring belongs to the sampler agent; nothing registers at import)::

    collector = SpanMetricsCollector()                  # expiration_seconds=900.0
    prometheus_client.REGISTRY.register(collector)      # or any CollectorRegistry
    for w in red.close(watermark):
        collector.add_red_window(w)                     # also goes to Kafka as OTLP
    for w in graph.close(watermark):
        collector.add_graph_window(w)

Feeding and scraping may happen on different threads (a lock guards the state). A window
must be fed once: feeding the same window twice counts it twice.

Why cumulative here and delta on Kafka: a Kafka record (``pipeline.metrics.otlp``) is one
window's delta, so a consumer can sum, re-window or replay windows from many samplers
without double counting and no producer has to remember anything. A Prometheus scrape
has no such contract: it samples a value whenever it likes, may miss scrapes, and
``rate()`` / ``increase()`` expect counters that only grow (resetting on restart). So
this process keeps the running sums, as the Collector's prometheus exporter does when it
accumulates delta points into cumulative ones. Several samplers each expose their own
series; ``sum by (...)`` in PromQL adds them up (Prometheus' ``instance`` label keeps
them apart).

Exposed (the exporter's naming: dots -> underscores, unit and ``_total`` suffixes):

* ``traces_span_metrics_calls_total`` (counter) and
  ``traces_span_metrics_duration_milliseconds`` (histogram: ``_bucket`` with ``le``,
  ``_sum``, ``_count``; the window's bucket bounds, in ms), labels ``service_name``,
  ``span_name``, ``span_kind`` (``SPAN_KIND_SERVER`` ...), ``status_code``
  (``STATUS_CODE_UNSET`` / ``_OK`` / ``_ERROR``), then each configured dimension present on
  the series, its name normalized (every character outside ``[a-zA-Z0-9_]`` -> ``_``, a
  leading digit prefixed with ``key_``; two dimensions normalizing to one label get their
  values joined with ``;``, as the exporter does). Error rate = calls with
  ``status_code="STATUS_CODE_ERROR"`` / all calls. The overflow series of a service (its
  spans beyond ``max_series_per_service``) has the labels ``service_name`` and
  ``otel_metric_overflow="true"`` only.
* ``traces_service_graph_request_total`` and ``traces_service_graph_request_failed_total``
  (counters; a failed series appears once the edge has failed), and the histograms
  ``traces_service_graph_request_server_seconds`` / ``..._client_seconds`` (seconds), all
  with labels ``client``, ``server``, ``connection_type`` (``""`` for a plain request).

Exemplars (OpenMetrics only; the classic text format has none, so a scraper must ask for
``application/openmetrics-text`` and have exemplar storage on): on every bucket of the
duration histogram, labels ``trace_id`` and ``span_id`` (lowercase hex), value = the
span's duration in ms, timestamp = the span's end; on ``calls_total`` the series' chosen
exemplar; on ``traces_service_graph_request_total`` the edge's trace (``trace_id`` only,
value 1, timestamp = the window's end: the service graph keeps no span id or latency per
exemplar, so its histograms carry none). Per bucket the latest exemplar is kept, but, as
``red.py`` does within a window, one from a kept trace is not replaced by one from a
dropped trace (a dashboard link then opens a trace that is actually stored) unless it was
chosen more than ``expiration_seconds`` ago (its trace may have aged out of storage).

Memory bound: a series (RED series, overflow series or edge) that no window has touched
for ``expiration_seconds`` (wall clock, default 15 min; ``None`` keeps series forever) is
dropped; the check runs while feeding and scraping, at most every ``expiration / 15``
seconds, so a series may live up to about 7 % longer. The Collector's prometheus exporter
expires after 5 min (``metric_expiration``) and the connectors keep series forever by
default; 15 min is chosen so that a series called a few times an hour is not restarted
each time (a restarted counter loses its first increase to ``rate()``), while series that
are gone (a renamed endpoint, a redeployed pod's dimension value) stop costing memory
and scrape time. Should a dropped series come back it starts again from zero, which
Prometheus treats as a counter reset.

Pure: ``prometheus_client`` and this package only; no Kafka, Faust, OpenSearch or HTTP.
"""

from __future__ import annotations

import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from pipeline.metrics.otlp import span_kind_str, status_code_str
from pipeline.metrics.red import RedWindow, SeriesStats
from pipeline.metrics.service_graph import (
    METRIC_REQUEST_CLIENT_SECONDS,
    METRIC_REQUEST_FAILED_TOTAL,
    METRIC_REQUEST_SERVER_SECONDS,
    METRIC_REQUEST_TOTAL,
    EdgeKey,
    EdgeStats,
    ServiceGraphWindow,
)

DEFAULT_EXPIRATION_SECONDS = 900.0

#: Exposed names: a counter's family name is without ``_total`` (its sample adds it).
CALLS_TOTAL = "traces_span_metrics_calls_total"
DURATION_MILLISECONDS = "traces_span_metrics_duration_milliseconds"
REQUEST_TOTAL = METRIC_REQUEST_TOTAL
REQUEST_FAILED_TOTAL = METRIC_REQUEST_FAILED_TOTAL
REQUEST_SERVER_SECONDS = METRIC_REQUEST_SERVER_SECONDS
REQUEST_CLIENT_SECONDS = METRIC_REQUEST_CLIENT_SECONDS

SPAN_LABELS = ("service_name", "span_name", "span_kind", "status_code")
OVERFLOW_LABEL = "otel_metric_overflow"
EDGE_LABELS = ("client", "server", "connection_type")

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[tuple[str, str], ...]


def prometheus_label(name: str) -> str:
    """An attribute name as the exporter labels it: ``http.method`` -> ``http_method``."""
    label = _INVALID_LABEL_CHARS.sub("_", name)
    if label[:1].isdigit():
        label = "key_" + label
    return label


class _Exemplar:
    """An exposed exemplar and what choosing between two needs (kept, when it was chosen)."""

    __slots__ = ("chosen_at", "exemplar", "kept", "time")

    def __init__(self, labels: dict[str, str], value: float, time_s: float, kept: bool, now: float):
        self.exemplar = Exemplar(labels, value, time_s)
        self.time = time_s
        self.kept = kept
        self.chosen_at = now


def _choose(old: _Exemplar | None, new: _Exemplar, max_age: float | None) -> _Exemplar:
    """Prefer a kept trace, then the latest; an exemplar older than ``max_age`` always yields."""
    if old is None or (max_age is not None and new.chosen_at - old.chosen_at > max_age):
        return new
    return new if (new.kept, new.time) >= (old.kept, old.time) else old


class _Histogram:
    """Cumulative (over time) explicit-bucket histogram with an exemplar slot per bucket."""

    __slots__ = ("bounds", "count", "counts", "exemplars", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative over le
        self.count = 0
        self.sum = 0.0
        self.exemplars: list[_Exemplar | None] = [None] * len(self.counts)

    def add(self, counts: Sequence[int], total: float, count: int) -> None:
        mine = self.counts
        for i, c in enumerate(counts):
            mine[i] += c
        self.sum += total
        self.count += count

    def samples(self, metric: Metric, name: str, labels: dict[str, str]) -> None:
        cumulative = 0
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for le, c, ex in zip(les, self.counts, self.exemplars, strict=True):
            cumulative += c
            metric.add_sample(
                name + "_bucket",
                {**labels, "le": le},
                cumulative,
                exemplar=ex.exemplar if ex is not None else None,
            )
        metric.add_sample(name + "_count", labels, self.count)
        metric.add_sample(name + "_sum", labels, self.sum)


class _RedSeries:
    __slots__ = ("exemplar", "histogram", "labels", "seen")

    def __init__(self, labels: dict[str, str], bounds: Sequence[float], now: float) -> None:
        self.labels = labels
        self.histogram = _Histogram(bounds)
        self.exemplar: _Exemplar | None = None  # for calls_total
        self.seen = now


class _Edge:
    __slots__ = ("client", "exemplar", "failed", "labels", "requests", "seen", "server")

    def __init__(self, key: EdgeKey, bounds: Sequence[float], now: float) -> None:
        self.labels = {
            "client": key.client,
            "server": key.server,
            "connection_type": key.connection_type,
        }
        self.requests = 0
        self.failed = 0
        self.server = _Histogram(bounds)
        self.client = _Histogram(bounds)
        self.exemplar: _Exemplar | None = None  # for request_total
        self.seen = now


class SpanMetricsCollector(Collector):
    """Cumulative spanmetrics / servicegraph series from closed windows (module docstring).

    ``expiration_seconds``: drop a series no window has touched for this long (``None``:
    never). ``clock``: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        expiration_seconds: float | None = DEFAULT_EXPIRATION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if expiration_seconds is not None and expiration_seconds <= 0:
            raise ValueError("expiration_seconds must be > 0 (or None: never expire)")
        self.expiration_seconds = expiration_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._red: dict[Labels, _RedSeries] = {}
        self._edges: dict[EdgeKey, _Edge] = {}
        self._swept_at = clock()
        #: series dropped by expiration so far (RED and edges)
        self.expired_series = 0

    # -- feeding ------------------------------------------------------------------------

    def add_red_window(self, window: RedWindow) -> None:
        """Add one closed RED window's series to the running totals."""
        now = self._clock()
        dim_labels = [prometheus_label(n) for n in window.dimension_names]
        bounds = tuple(window.buckets_ms)
        with self._lock:
            for (service, name, kind, code, dims), stats in window.series.items():
                labels = dict(
                    zip(
                        SPAN_LABELS,
                        (service, name, span_kind_str(kind), status_code_str(code)),
                        strict=True,
                    )
                )
                for label, value in zip(dim_labels, dims, strict=True):
                    if value is None:
                        continue
                    old = labels.get(label)
                    labels[label] = value if old is None else f"{old};{value}"
                self._add_red(labels, stats, bounds, now)
            for service, stats in window.overflow.items():
                labels = {"service_name": service, OVERFLOW_LABEL: "true"}
                self._add_red(labels, stats, bounds, now)
            self._maybe_expire(now)

    def _add_red(
        self, labels: dict[str, str], stats: SeriesStats, bounds: tuple[float, ...], now: float
    ) -> None:
        key = tuple(labels.items())
        series = self._red.get(key)
        if series is None or series.histogram.bounds != bounds:  # new bounds: start over
            series = self._red[key] = _RedSeries(labels, bounds, now)
        series.seen = now
        h = series.histogram
        h.add(stats.bucket_counts, stats.sum_ms, stats.calls)
        max_age = self.expiration_seconds
        for trace_id, span_id, end_ns, ms, kept in stats.exemplars:
            ex = _Exemplar(
                {"trace_id": trace_id.hex(), "span_id": span_id.hex()}, ms, end_ns / 1e9, kept, now
            )
            i = bisect_left(bounds, ms)  # the bucket red.py counted the span in
            h.exemplars[i] = _choose(h.exemplars[i], ex, max_age)
            series.exemplar = _choose(series.exemplar, ex, max_age)

    def add_graph_window(self, window: ServiceGraphWindow) -> None:
        """Add one closed service-graph window's edges to the running totals."""
        now = self._clock()
        with self._lock:
            for key, stats in window.edges.items():
                self._add_edge(key, stats, window.end_unix_nanos / 1e9, now)
            self._maybe_expire(now)

    def _add_edge(self, key: EdgeKey, stats: EdgeStats, end_s: float, now: float) -> None:
        bounds = tuple(stats.server_seconds.bounds)
        edge = self._edges.get(key)
        if edge is None or edge.server.bounds != bounds:
            edge = self._edges[key] = _Edge(key, bounds, now)
        edge.seen = now
        edge.requests += stats.requests
        edge.failed += stats.failed
        for mine, theirs in (
            (edge.server, stats.server_seconds),
            (edge.client, stats.client_seconds),
        ):
            mine.add(theirs.counts, theirs.sum, theirs.count)
        if stats.exemplar_trace_id:
            ex = _Exemplar(
                {"trace_id": stats.exemplar_trace_id.hex()}, 1, end_s, stats.exemplar_kept, now
            )
            edge.exemplar = _choose(edge.exemplar, ex, self.expiration_seconds)

    # -- expiration ---------------------------------------------------------------------

    def _maybe_expire(self, now: float) -> None:
        ttl = self.expiration_seconds
        if ttl is not None and now - self._swept_at >= ttl / 15:
            self._expire(now)

    def _expire(self, now: float) -> int:
        ttl = self.expiration_seconds
        self._swept_at = now
        if ttl is None:
            return 0
        dropped = 0
        for table in (self._red, self._edges):
            stale = [k for k, s in table.items() if now - s.seen > ttl]
            for k in stale:
                del table[k]
            dropped += len(stale)
        self.expired_series += dropped
        return dropped

    def expire(self) -> int:
        """Drop every series not touched for ``expiration_seconds`` now; how many went."""
        with self._lock:
            return self._expire(self._clock())

    @property
    def series_count(self) -> int:
        """RED series (overflow included) plus service-graph edges held."""
        return len(self._red) + len(self._edges)

    # -- exposition ---------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """The families, without samples (lets a registry check names without a collect)."""
        return self._families()

    @staticmethod
    def _families() -> list[Metric]:
        return [
            Metric(
                CALLS_TOTAL.removesuffix("_total"),
                "Spans counted by the span metrics of every decided trace (kept or dropped).",
                "counter",
            ),
            Metric(
                DURATION_MILLISECONDS,
                "Span durations of every decided trace (kept or dropped).",
                "histogram",
                "milliseconds",
            ),
            Metric(
                REQUEST_TOTAL.removesuffix("_total"),
                "Requests between two services (service-graph edges).",
                "counter",
            ),
            Metric(
                REQUEST_FAILED_TOTAL.removesuffix("_total"),
                "Failed requests between two services (either side had status ERROR).",
                "counter",
            ),
            Metric(
                REQUEST_SERVER_SECONDS,
                "Server-side latency of the requests between two services.",
                "histogram",
                "seconds",
            ),
            Metric(
                REQUEST_CLIENT_SECONDS,
                "Client-side latency of the requests between two services.",
                "histogram",
                "seconds",
            ),
        ]

    def collect(self) -> Iterator[Metric]:
        """The current cumulative series (families without series are left out)."""
        calls, duration, total, failed, server, client = families = self._families()
        with self._lock:
            now = self._clock()
            self._maybe_expire(now)
            for series in self._red.values():
                h = series.histogram
                ex = series.exemplar.exemplar if series.exemplar is not None else None
                calls.add_sample(CALLS_TOTAL, series.labels, h.count, exemplar=ex)
                h.samples(duration, DURATION_MILLISECONDS, series.labels)
            for key in sorted(self._edges):
                edge = self._edges[key]
                ex = edge.exemplar.exemplar if edge.exemplar is not None else None
                total.add_sample(REQUEST_TOTAL, edge.labels, edge.requests, exemplar=ex)
                if edge.failed:
                    failed.add_sample(REQUEST_FAILED_TOTAL, edge.labels, edge.failed)
                edge.server.samples(server, REQUEST_SERVER_SECONDS, edge.labels)
                edge.client.samples(client, REQUEST_CLIENT_SECONDS, edge.labels)
        for metric in families:
            if metric.samples:
                yield metric
