"""Closed span-metric windows -> OTLP ``ExportMetricsServiceRequest`` (delta temporality).

RED part (``append_red_window`` / ``encode_red_windows``), named as the OpenTelemetry
Collector's spanmetrics connector names its output with its default namespace
``traces.span.metrics``:

* ``traces.span.metrics.calls``: Sum, monotonic, DELTA, int; one point per series;
* ``traces.span.metrics.duration``: Histogram, DELTA, unit ``ms``, explicit bounds (the
  connector's defaults unless configured), count, sum, bucket counts.

Errors are not a metric of their own: as in the connector, they are the ``calls`` (and
``duration``) points whose ``status.code`` is ``STATUS_CODE_ERROR``; error rate =
calls{status.code=STATUS_CODE_ERROR} / calls. (The overflow series has no status.code, so
its errors are only available in ``RedWindow.overflow[service].errors``.)

Layout: one ``ResourceMetrics`` per service (resource attribute ``service.name``) with one
``ScopeMetrics`` (scope ``spansieve.spanmetrics``) holding the two metrics; several windows
appended to the same request share them (one data point per series per window). Data point
attributes: ``service.name``, ``span.name``, ``span.kind`` (``SPAN_KIND_SERVER`` ...),
``status.code`` (``STATUS_CODE_UNSET`` / ``_OK`` / ``_ERROR``), then the configured
dimensions that are present, in configuration order. The overflow series of a service has
``service.name`` and ``otel.metric.overflow`` = true (boolean) only. Start / time of every
point are the window's bounds. Exemplars (on both metrics, as the connector does) carry the
trace id, span id, span end time and the duration in ms as a double value.

Service-graph part (``append_service_graph_window`` / ``encode_service_graph_windows``),
shaped as the OpenTelemetry Collector's servicegraph connector shapes its output
(``connector/servicegraphconnector/connector.go``, ``buildMetrics``), in DELTA temporality
(the connector itself only emits CUMULATIVE):

* ``traces_service_graph_request_total``: Sum, monotonic, int; one point per edge;
* ``traces_service_graph_request_failed_total``: Sum, monotonic, int; a point only for the
  edges that failed in the window (the connector has failed series only for those too);
  the metric is left out when no edge of the request failed;
* ``traces_service_graph_request_server_seconds`` and ``..._client_seconds``: Histogram,
  unit ``s``, explicit bounds of the edge's histograms, count, sum, bucket counts.

Names: the connector's README and Prometheus see ``..._server_seconds``; its code names the
OTLP histograms ``traces_service_graph_request_server`` / ``..._client`` with unit ``s``
and relies on the Prometheus translation adding ``_seconds``. The ``_seconds`` names are
used here (the constants of :mod:`pipeline.metrics.service_graph`): with unit ``s`` they
translate to the same Prometheus names (the suffix is not doubled) and also survive a
backend that keeps OTLP names as they are.

Attributes: ``client``, ``server``, ``connection_type`` (``""`` for a plain request), in
that order. The connector adds a boolean ``failed`` attribute and splits every series by it;
an edge's histograms here are not split by outcome, so there is no ``failed`` attribute
(Tempo's metrics-generator and the connector's README list these three labels only);
failures are ``request_failed_total``.

Layout: one ``ResourceMetrics`` with an empty resource, as the connector emits (the edge
is between two services, so no single ``service.name`` fits), holding one ``ScopeMetrics``
(scope ``spansieve.servicegraph``; the connector's is ``traces_service_graph``); several
windows appended to the same request share it. Start / time of every point are the
window's bounds. Exemplars (the connector has none yet): the edge's exemplar trace id on
the ``request_total`` point, value 1 (one request of that trace), time = the window's end
(the trace's own time is not kept), filtered attribute ``spansieve.trace.kept`` (bool: the
trace was kept, so it can be opened). A window without edges adds nothing; encoding only
such windows gives an empty request (zero bytes on the wire), which a caller should not
send, as the connector skips empty flushes.

Pure: protobuf classes only.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

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

SCOPE_NAME = "spansieve.spanmetrics"
NAMESPACE = "traces.span.metrics"
CALLS = f"{NAMESPACE}.calls"
DURATION = f"{NAMESPACE}.duration"
DURATION_UNIT = "ms"
OVERFLOW_ATTRIBUTE = "otel.metric.overflow"
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def span_kind_str(kind: int) -> str:
    """The connector's form of a span kind: ``SPAN_KIND_SERVER``."""
    try:
        return Span.SpanKind.Name(kind)
    except ValueError:
        return "SPAN_KIND_UNSPECIFIED"


def status_code_str(code: int) -> str:
    """The connector's form of a status code: ``STATUS_CODE_ERROR``."""
    try:
        return Status.StatusCode.Name(code)
    except ValueError:
        return "STATUS_CODE_UNSET"


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _service_scope(
    request: ExportMetricsServiceRequest, index: dict[str, ScopeMetrics], service: str
) -> ScopeMetrics:
    sm = index.get(service)
    if sm is None:
        rm = request.resource_metrics.add()
        rm.resource.attributes.append(_kv("service.name", service))
        sm = rm.scope_metrics.add()
        sm.scope.CopyFrom(InstrumentationScope(name=SCOPE_NAME))
        calls = sm.metrics.add(name=CALLS)
        calls.sum.CopyFrom(Sum(aggregation_temporality=DELTA, is_monotonic=True))
        duration = sm.metrics.add(name=DURATION, unit=DURATION_UNIT)
        duration.histogram.CopyFrom(Histogram(aggregation_temporality=DELTA))
        index[service] = sm
    return sm


def _red_index(request: ExportMetricsServiceRequest) -> dict[str, ScopeMetrics]:
    """service.name -> the RED ScopeMetrics already in the request."""
    index: dict[str, ScopeMetrics] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            if sm.scope.name != SCOPE_NAME:
                continue
            names = [m.name for m in sm.metrics]
            if CALLS not in names or DURATION not in names:
                continue
            for kv in rm.resource.attributes:
                if kv.key == "service.name":
                    index.setdefault(kv.value.string_value, sm)
    return index


def _metric(sm: ScopeMetrics, name: str) -> Metric:
    for m in sm.metrics:
        if m.name == name:
            return m
    raise KeyError(name)  # pragma: no cover - _service_scope always creates both


def _exemplars(stats: SeriesStats) -> list[Exemplar]:
    return [
        Exemplar(trace_id=tid, span_id=sid, time_unix_nano=t, as_double=ms)
        for tid, sid, t, ms, _kept in stats.exemplars
    ]


def _points(
    calls: Metric,
    duration: Metric,
    window: RedWindow,
    attributes: list[KeyValue],
    stats: SeriesStats,
) -> None:
    exemplars = _exemplars(stats)
    calls.sum.data_points.append(_count_point(window, attributes, stats.calls, exemplars))
    duration.histogram.data_points.append(
        _histogram_point(
            window,
            attributes,
            stats.calls,
            stats.sum_ms,
            stats.bucket_counts,
            window.buckets_ms,
            exemplars,
        )
    )


def _count_point(window, attributes: list[KeyValue], value: int, exemplars=()) -> NumberDataPoint:
    """A delta count over a window (RED or service graph: both have the same bounds)."""
    return NumberDataPoint(
        attributes=attributes,
        start_time_unix_nano=window.start_unix_nanos,
        time_unix_nano=window.end_unix_nanos,
        as_int=value,
        exemplars=exemplars,
    )


def _histogram_point(
    window, attributes: list[KeyValue], count: int, total: float, counts, bounds, exemplars=()
) -> HistogramDataPoint:
    """A delta histogram over a window."""
    return HistogramDataPoint(
        attributes=attributes,
        start_time_unix_nano=window.start_unix_nanos,
        time_unix_nano=window.end_unix_nanos,
        count=count,
        sum=total,
        bucket_counts=counts,
        explicit_bounds=bounds,
        exemplars=exemplars,
    )


def append_red_window(request: ExportMetricsServiceRequest, window: RedWindow) -> None:
    """Append one closed RED window's data points to ``request`` (see the module doc)."""
    index = _red_index(request)
    metrics: dict[str, tuple[Metric, Metric]] = {}

    def service_metrics(service: str) -> tuple[Metric, Metric]:
        pair = metrics.get(service)
        if pair is None:
            sm = _service_scope(request, index, service)
            pair = metrics[service] = (_metric(sm, CALLS), _metric(sm, DURATION))
        return pair

    dim_names = window.dimension_names
    for (service, name, kind, code, dims), stats in window.series.items():
        attributes = [
            _kv("service.name", service),
            _kv("span.name", name),
            _kv("span.kind", span_kind_str(kind)),
            _kv("status.code", status_code_str(code)),
        ]
        attributes += [_kv(n, v) for n, v in zip(dim_names, dims, strict=True) if v is not None]
        _points(*service_metrics(service), window, attributes, stats)
    for service, stats in window.overflow.items():
        attributes = [
            _kv("service.name", service),
            KeyValue(key=OVERFLOW_ATTRIBUTE, value=AnyValue(bool_value=True)),
        ]
        _points(*service_metrics(service), window, attributes, stats)


def encode_red_windows(windows: Iterable[RedWindow]) -> ExportMetricsServiceRequest:
    """Closed RED windows -> one request (one ResourceMetrics per service)."""
    request = ExportMetricsServiceRequest()
    for w in windows:
        append_red_window(request, w)
    return request


# -- service graph ---------------------------------------------------------------------

SERVICE_GRAPH_SCOPE_NAME = "spansieve.servicegraph"
SERVICE_GRAPH_LATENCY_UNIT = "s"
EXEMPLAR_KEPT_ATTRIBUTE = "spansieve.trace.kept"
_SERVICE_GRAPH_METRICS = (
    METRIC_REQUEST_TOTAL,
    METRIC_REQUEST_FAILED_TOTAL,
    METRIC_REQUEST_SERVER_SECONDS,
    METRIC_REQUEST_CLIENT_SECONDS,
)


def _service_graph_scope(request: ExportMetricsServiceRequest) -> ScopeMetrics:
    """The request's service-graph ScopeMetrics (empty resource), created with its metrics."""
    for rm in request.resource_metrics:
        if len(rm.resource.attributes):
            continue
        for sm in rm.scope_metrics:
            if sm.scope.name == SERVICE_GRAPH_SCOPE_NAME:
                present = {m.name for m in sm.metrics}
                for name in _SERVICE_GRAPH_METRICS:
                    if name not in present:
                        _add_service_graph_metric(sm, name)
                return sm
    sm = request.resource_metrics.add().scope_metrics.add()
    sm.scope.CopyFrom(InstrumentationScope(name=SERVICE_GRAPH_SCOPE_NAME))
    for name in _SERVICE_GRAPH_METRICS:
        _add_service_graph_metric(sm, name)
    return sm


def _add_service_graph_metric(sm: ScopeMetrics, name: str) -> None:
    if name in (METRIC_REQUEST_TOTAL, METRIC_REQUEST_FAILED_TOTAL):
        sm.metrics.add(name=name).sum.CopyFrom(
            Sum(aggregation_temporality=DELTA, is_monotonic=True)
        )
    else:
        sm.metrics.add(name=name, unit=SERVICE_GRAPH_LATENCY_UNIT).histogram.CopyFrom(
            Histogram(aggregation_temporality=DELTA)
        )


def _edge_attributes(key: EdgeKey) -> list[KeyValue]:
    return [
        _kv("client", key.client),
        _kv("server", key.server),
        _kv("connection_type", key.connection_type),
    ]


def _edge_exemplars(window: ServiceGraphWindow, stats: EdgeStats) -> list[Exemplar]:
    if not stats.exemplar_trace_id:
        return []
    kept = KeyValue(key=EXEMPLAR_KEPT_ATTRIBUTE, value=AnyValue(bool_value=stats.exemplar_kept))
    return [
        Exemplar(
            filtered_attributes=[kept],
            time_unix_nano=window.end_unix_nanos,
            as_int=1,
            trace_id=stats.exemplar_trace_id,
        )
    ]


def append_service_graph_window(
    request: ExportMetricsServiceRequest, window: ServiceGraphWindow
) -> None:
    """Append one closed service-graph window's edges to ``request`` (see the module doc)."""
    if not window.edges:
        return
    sm = _service_graph_scope(request)
    total, failed, server, client = (_metric(sm, n) for n in _SERVICE_GRAPH_METRICS)
    for key in sorted(window.edges):
        stats = window.edges[key]
        attributes = _edge_attributes(key)
        exemplars = _edge_exemplars(window, stats)
        total.sum.data_points.append(_count_point(window, attributes, stats.requests, exemplars))
        if stats.failed:
            failed.sum.data_points.append(_count_point(window, attributes, stats.failed))
        for metric, h in ((server, stats.server_seconds), (client, stats.client_seconds)):
            metric.histogram.data_points.append(
                _histogram_point(window, attributes, h.count, h.sum, h.counts, h.bounds)
            )
    if not failed.sum.data_points:
        # Left out when nothing failed, as the connector does (re-added by a later append).
        for i, m in enumerate(sm.metrics):
            if m.name == METRIC_REQUEST_FAILED_TOTAL:
                del sm.metrics[i]
                break


def encode_service_graph_windows(
    windows: Iterable[ServiceGraphWindow],
) -> ExportMetricsServiceRequest:
    """Closed service-graph windows -> one request (empty when no window has an edge)."""
    request = ExportMetricsServiceRequest()
    for w in windows:
        append_service_graph_window(request, w)
    return request
