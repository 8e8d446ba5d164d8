"""Span-metrics messages -> metrics-store documents, one per data point (series and window).

Input: one message of ``<prefix>-red-metrics`` or ``<prefix>-service-graph``, as the
sampler sends it (``pipeline.sampler.span_metrics``): an OTLP
``ExportMetricsServiceRequest`` (protobuf or OTLP/JSON) in DELTA temporality holding the
closed window(s) of one partition (``pipeline.metrics.otlp`` says exactly what it holds),
keyed partition (4 bytes) + window start in unix nanoseconds (8), big-endian.

Output: one JSON document per data point, i.e. per series per window:

* ``@timestamp`` / ``window_end``: the point's start and end (the window's bounds), ISO-8601
  UTC with milliseconds; ``window_seconds``; ``partition`` (from the key);
* ``kind``: ``red`` (scope ``spansieve.spanmetrics``), ``service_graph`` (scope
  ``spansieve.servicegraph``), ``other`` for any other scope; ``metric``, ``unit``;
* series attributes: ``service.name``, ``span.name``, ``span.kind``, ``status.code``
  (RED), ``client``, ``server``, ``connection_type`` (service graph) as fields of their
  own; ``overflow: true`` on a RED overflow series (``otel.metric.overflow``); every other
  attribute (configured dimensions) as a keyword in the flat ``attributes`` object, its
  key's "." written "@" (as the span documents write attribute keys), so ``http.method``
  is ``attributes.http@method``;
* numbers: a Sum or Gauge point has ``value``; ``traces.span.metrics.calls`` also has
  ``calls`` and ``errors`` (= calls when ``status.code`` is ``STATUS_CODE_ERROR``, else 0;
  absent on an overflow series, whose message does not say); a Histogram point has
  ``count``, ``sum``, ``bucket_counts``, ``explicit_bounds`` (and ``min`` / ``max`` when
  set); ``exemplar_trace_ids`` (hex) when the point has exemplars.

Document id: a hash of (partition, window start, metric, sorted attributes), so a window
delivered or sent twice (a Kafka redelivery, a replayed topic) overwrites its documents
instead of adding to them. The OTLP names below are the metrics topics' wire contract,
spelled here (the sink imports no code of the sampler's metrics library); the unit tests
check them against ``pipeline.metrics``.

Pure: protobuf, orjson and ``pipeline.wire`` only.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.wire.metrics_json import MessageDecodeError, decode_any

KIND_RED = "red"
KIND_SERVICE_GRAPH = "service_graph"
KIND_OTHER = "other"
SCOPE_KINDS = {"spansieve.spanmetrics": KIND_RED, "spansieve.servicegraph": KIND_SERVICE_GRAPH}
RED_CALLS = "traces.span.metrics.calls"
STATUS_CODE_ERROR = "STATUS_CODE_ERROR"
OVERFLOW_ATTRIBUTE = "otel.metric.overflow"
# Attributes that are document fields of their own (the rest go under ``attributes``).
PROMOTED = (
    "service.name",
    "span.name",
    "span.kind",
    "status.code",
    "client",
    "server",
    "connection_type",
)
ATTRIBUTES = "attributes"
NANOS = 1_000_000_000
_KEY = struct.Struct(">IQ")  # as pipeline.sampler.span_metrics.window_key


class MetricsMessageError(ValueError):
    """A message that is no span-metrics window (bad key or undecodable body)."""


@dataclass(frozen=True, slots=True)
class MetricDocument:
    """One document: its id, its window start (which picks the monthly index), its body."""

    id: str
    start_unix_nanos: int
    source: dict[str, Any]

    def encoded(self) -> bytes:
        return orjson.dumps(self.source)


def parse_key(key: bytes | None) -> tuple[int, int]:
    """(partition, window start in unix nanos) of a metrics message key."""
    if key is None or len(key) != _KEY.size:
        raise MetricsMessageError(f"metrics message key is not partition + window start: {key!r}")
    partition, start = _KEY.unpack(key)
    return partition, start


def document_id(partition: int, start_unix_nanos: int, metric: str, attributes: list) -> str:
    """Deterministic id of one series in one window: 32 hex digits.

    ``attributes`` are (key, value type, value text) triples; their order does not matter.
    """
    canonical = orjson.dumps([partition, start_unix_nanos, metric, sorted(attributes)])
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def iso_millis(unix_nanos: int) -> str:
    """Unix nanoseconds -> ISO-8601 UTC with milliseconds (an OpenSearch ``date``)."""
    seconds, fraction = divmod(unix_nanos, NANOS)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction // 1_000_000:03d}Z"


def _text(value: AnyValue) -> tuple[str, str]:
    """(type, text) of an attribute value: the text is what a keyword field holds."""
    which = value.WhichOneof("value")
    if which is None:
        return "empty", ""
    if which == "string_value":
        return "string", value.string_value
    if which == "bool_value":
        return "bool", "true" if value.bool_value else "false"
    if which == "bytes_value":
        return "bytes", value.bytes_value.hex()
    if which in ("int_value", "double_value"):
        return which[:-6], str(getattr(value, which))
    return which, value.SerializeToString().hex()  # array / kvlist: opaque, but stable


def _series_fields(
    attributes: list[tuple[str, str, str]], source: dict[str, Any]
) -> tuple[str | None, bool]:
    """Spread the attributes over ``source``; returns (status.code, overflow)."""
    extra: dict[str, str] = {}
    status = None
    overflow = False
    for key, kind, text in attributes:
        if key in PROMOTED:
            source[key] = text
            if key == "status.code":
                status = text
        elif key == OVERFLOW_ATTRIBUTE:
            overflow = kind == "bool" and text == "true"
            if overflow:
                source["overflow"] = True
            else:
                extra[key.replace(".", "@")] = text
        else:
            extra[key.replace(".", "@")] = text
    if extra:
        source[ATTRIBUTES] = extra
    return status, overflow


def _exemplar_ids(point) -> list[str]:
    return sorted({e.trace_id.hex() for e in point.exemplars if e.trace_id})


def _documents_of_metric(
    metric, kind: str, partition: int, resource_service: str | None
) -> list[MetricDocument]:
    data = metric.WhichOneof("data")
    if data not in ("sum", "gauge", "histogram"):
        return []  # exponential histograms and summaries: not produced by spansieve
    docs = []
    for point in getattr(metric, data).data_points:
        attributes = [(kv.key, *_text(kv.value)) for kv in point.attributes]
        if resource_service is not None and all(a[0] != "service.name" for a in attributes):
            attributes.append(("service.name", "string", resource_service))
        start, end = point.start_time_unix_nano, point.time_unix_nano
        source: dict[str, Any] = {
            "@timestamp": iso_millis(start),
            "window_end": iso_millis(end),
            "window_seconds": (end - start) / NANOS,
            "kind": kind,
            "metric": metric.name,
            "partition": partition,
        }
        if metric.unit:
            source["unit"] = metric.unit
        status, overflow = _series_fields(attributes, source)
        if data == "histogram":
            source["count"] = point.count
            source["sum"] = point.sum
            source["bucket_counts"] = list(point.bucket_counts)
            source["explicit_bounds"] = list(point.explicit_bounds)
            if point.HasField("min"):
                source["min"] = point.min
            if point.HasField("max"):
                source["max"] = point.max
        else:
            value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
            source["value"] = value
            if metric.name == RED_CALLS:
                source["calls"] = value
                if not overflow:
                    source["errors"] = value if status == STATUS_CODE_ERROR else 0
        exemplars = _exemplar_ids(point)
        if exemplars:
            source["exemplar_trace_ids"] = exemplars
        doc_id = document_id(partition, start, metric.name, attributes)
        docs.append(MetricDocument(doc_id, start, source))
    return docs


def parse_request(value: bytes) -> ExportMetricsServiceRequest:
    """Protobuf or OTLP/JSON (``span_metrics_encoding``), told apart by the first byte."""
    try:
        return decode_any(value)
    except MessageDecodeError as exc:
        raise MetricsMessageError(f"not an ExportMetricsServiceRequest: {exc}") from exc


def metric_documents(value: bytes, key: bytes | None) -> list[MetricDocument]:
    """The documents of one metrics message (see the module doc); MetricsMessageError if
    the key or the body is not what the sampler sends."""
    partition, _window_start = parse_key(key)
    request = parse_request(value)
    docs: list[MetricDocument] = []
    for rm in request.resource_metrics:
        resource_service = next(
            (kv.value.string_value for kv in rm.resource.attributes if kv.key == "service.name"),
            None,
        )
        for sm in rm.scope_metrics:
            kind = SCOPE_KINDS.get(sm.scope.name, KIND_OTHER)
            for metric in sm.metrics:
                docs.extend(_documents_of_metric(metric, kind, partition, resource_service))
    return docs
