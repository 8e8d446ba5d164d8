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
    calls.sum.data_points.append(
        NumberDataPoint(
            attributes=attributes,
            start_time_unix_nano=window.start_unix_nanos,
            time_unix_nano=window.end_unix_nanos,
            as_int=stats.calls,
            exemplars=exemplars,
        )
    )
    duration.histogram.data_points.append(
        HistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=window.start_unix_nanos,
            time_unix_nano=window.end_unix_nanos,
            count=stats.calls,
            sum=stats.sum_ms,
            bucket_counts=stats.bucket_counts,
            explicit_bounds=window.buckets_ms,
            exemplars=exemplars,
        )
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
