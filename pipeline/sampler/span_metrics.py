"""Span metrics in the sampler: one RED aggregator and one service graph per partition.

The sampler feeds every decided trace (kept or dropped) and every late span here, from
the ``TracesData`` it already parsed; on a tick it closes the windows the watermark has
passed and sends each closed window as one OTLP ``ExportMetricsServiceRequest`` (see
``pipeline.metrics.otlp``) through its ``send_metrics`` output, keyed by
:func:`window_key` so that a consumer can recognise a window sent twice. A closed
service-graph window with service-map relationships also gives one message of kind
``service-map``: a JSON array of Data Prepper's ``otel-v1-apm-service-map`` documents
(``pipeline.metrics.service_map``), which the sink role indexes by their ``hashId``. These
are not checkpointed: a relationship lost with a dead worker comes back with the next
trace that shows it.

Exact counts across a change of owner: the open windows live in memory, so after each
tick the sampler takes a :meth:`SpanMetrics.checkpoint` (what the tick changed, as
zlib-compressed JSON) and stores it in the same decision-cache batch as the tick's decisions:
one RocksDB put and one changelog message, so a trace's decision and its counts are
saved together or not at all. A new owner (after ``kill -9`` or a rebalance) adds up the
checkpoints it restores (:meth:`SpanMetrics.restore`) and re-counts only what no saved
checkpoint holds: traces without a saved decision are re-read and decided again, late
spans at or after the saved "counted to" offset are counted again (see
``pipeline.sampler.core``). A window closed and sent just before a crash whose
checkpoint was lost is sent again, with the same key and the same counts.

Late spans (spans of an already decided trace) are counted on their own; the service
graph pairs spans within what it is given, so a late server-side span whose client span
was decided earlier makes no edge, and a late client-side span without its server
child makes a virtual-node edge.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from time import thread_time

import orjson

from pipeline.config.settings import Settings
from pipeline.metrics.otlp import encode_red_windows, encode_service_graph_windows
from pipeline.metrics.prometheus import SpanMetricsCollector
from pipeline.metrics.red import Dimension, RedAggregator, RedConfig
from pipeline.metrics.service_graph import ServiceGraph
from pipeline.metrics.service_map import service_map_documents
from pipeline.wire.metrics_json import encode
from pipeline.wire.otlp import ResourceRun, Span, TracesData, flat_spans

KIND_RED = "red"
KIND_SERVICE_GRAPH = "service-graph"
KIND_SERVICE_MAP = "service-map"  # Data Prepper's service-map documents, a JSON array
NANOS = 1_000_000_000
_KEY = struct.Struct(">IQ")  # partition, window start (unix nanos)


def window_key(partition: int, start_unix_nanos: int) -> bytes:
    """Message key of a closed window: partition (4 bytes) + window start (8), big-endian."""
    return _KEY.pack(partition, start_unix_nanos)


def parse_window_key(key: bytes) -> tuple[int, int]:
    """(partition, window start in unix nanos) of a :func:`window_key`."""
    partition, start = _KEY.unpack(key)
    return partition, start


def parse_dimensions(spec: str) -> tuple[Dimension, ...]:
    """``"http.method,region=eu"`` -> dimensions ``http.method`` and ``region`` (default eu)."""
    out: list[Dimension] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, default = item.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"span metrics dimension without a name: {item!r}")
        out.append(Dimension(name, default.strip() if eq else None))
    return tuple(out)


@dataclass
class _Partition:
    red: RedAggregator
    graph: ServiceGraph


class SpanMetrics:
    """Per-partition aggregators, created on a partition's first trace."""

    def __init__(self, settings: Settings) -> None:
        self.window_seconds = settings.span_metrics_window
        self.red_config = RedConfig(
            window_seconds=settings.span_metrics_window,
            dimensions=parse_dimensions(settings.span_metrics_dimensions),
            max_series_per_service=settings.span_metrics_max_series_per_service,
        )
        self._partitions: dict[int, _Partition] = {}
        self.encoding = settings.span_metrics_encoding  # of the red / service-graph topics
        # CPU seconds (this thread's) spent on span metrics: the cost is measured inside
        # the worker, where it is paid (the sampler publishes it on /metrics).
        self.cpu_seconds = 0.0
        # Cumulative Prometheus series of the windows this worker closed (see ``expose``).
        self.collector: SpanMetricsCollector | None = None

    def expose(self, collector: SpanMetricsCollector) -> None:
        """Also feed every closed window to ``collector`` (the worker's /metrics)."""
        self.collector = collector

    def _of(self, partition: int) -> _Partition:
        held = self._partitions.get(partition)
        if held is None:
            held = self._partitions[partition] = _Partition(
                RedAggregator(self.red_config),
                # Relationships for Data Prepper's service map, from the graph's pairs.
                ServiceGraph(window_seconds=self.window_seconds, service_map=True),
            )
        return held

    def add(self, partition: int, data: TracesData, trace_id: bytes, kept: bool) -> None:
        """Count the spans of ``data`` (one trace, or late spans of one trace)."""
        started = thread_time()
        spans, runs = flat_spans(data.resource_spans)
        self.add_spans(partition, spans, runs, trace_id, kept)
        self.cpu_seconds += thread_time() - started

    def add_spans(
        self,
        partition: int,
        spans: list[Span],
        runs: list[ResourceRun],
        trace_id: bytes,
        kept: bool,
        codes: list[int] | None = None,
        times: list[tuple[int, int]] | None = None,
        raw: bytes | None = None,
    ) -> None:
        """Count one trace's spans already flattened (the policies' ``TraceView`` did it,
        and may have read their status codes and times too); ``raw``, the trace's protobuf
        bytes if at hand, lets the service graph skip attribute lookups (see
        ``ServiceGraph.add_sides``). Not timed here: the caller adds the time to
        :attr:`cpu_seconds` (with the reads it makes for this call)."""
        held = self._of(partition)
        clients: list[tuple] = []
        servers: list[tuple] = []
        services: set[str] = set()
        if codes is None:
            codes = [span.status.code for span in spans]
        if times is None:
            times = [(span.start_time_unix_nano, span.end_time_unix_nano) for span in spans]
        # One walk over the spans: the RED pass also gathers what the graph pairs.
        held.red.add_spans(
            spans,
            runs,
            trace_id,
            kept,
            sides=(clients, servers, services),
            codes=codes,
            times=times,
        )
        if services:
            held.graph.add_sides(
                spans, codes, times, clients, servers, trace_id, kept, services, raw
            )

    def close(self, partition: int, watermark_seconds: float) -> list[tuple[str, bytes, bytes]]:
        """Close the partition's windows ending at or before the watermark (event time).

        Returns (kind, key, value) per closed window with something in it, oldest first.
        """
        started = thread_time()
        closed = list(self._close(partition, watermark_seconds))
        self.cpu_seconds += thread_time() - started
        return closed

    def _close(
        self, partition: int, watermark_seconds: float
    ) -> Iterator[tuple[str, bytes, bytes]]:
        held = self._partitions.get(partition)
        if held is None:
            return
        watermark = int(watermark_seconds * NANOS)
        red_windows = held.red.close(watermark)
        graph_windows = held.graph.close(watermark)
        if self.collector is not None:
            for window in red_windows:
                self.collector.add_red_window(window)
            for window in graph_windows:
                self.collector.add_graph_window(window)
        closed = [(KIND_RED, w.start_unix_nanos, encode_red_windows([w])) for w in red_windows] + [
            (KIND_SERVICE_GRAPH, w.start_unix_nanos, encode_service_graph_windows([w]))
            for w in graph_windows
        ]
        for kind, start, request in closed:
            if request.resource_metrics:  # an empty request is not sent
                yield kind, window_key(partition, start), encode(request, self.encoding)
        for window in graph_windows:
            if window.relationships or window.isolated:
                docs = [doc for _, doc in service_map_documents(window)]
                key = window_key(partition, window.start_unix_nanos)
                yield KIND_SERVICE_MAP, key, orjson.dumps(docs)

    def checkpoint(self, partition: int) -> bytes:
        """The partition's changes since its last checkpoint (b"" when none)."""
        held = self._partitions.get(partition)
        if held is None:
            return b""
        started = thread_time()
        red, graph = held.red.checkpoint(), held.graph.checkpoint()
        saved = b""
        if red is not None or graph is not None:
            # Compressed: a busy partition changes thousands of series a tick, and the
            # changelog message carrying them must stay well under Kafka's 1 MB default.
            saved = zlib.compress(orjson.dumps({"red": red, "graph": graph}), 1)
        self.cpu_seconds += thread_time() - started
        return saved

    def restore(self, partition: int, checkpoints: list[bytes]) -> None:
        """Rebuild the partition's open windows from its saved checkpoints, oldest first."""
        self.forget(partition)
        if not checkpoints:
            return
        held = self._of(partition)
        parsed = [orjson.loads(zlib.decompress(raw)) for raw in checkpoints]
        held.red.restore([cp["red"] for cp in parsed if cp["red"] is not None])
        held.graph.restore([cp["graph"] for cp in parsed if cp["graph"] is not None])

    def forget(self, partition: int) -> None:
        """Drop the partition's aggregators, open windows included (they are saved)."""
        self._partitions.pop(partition, None)

    def partitions(self) -> list[int]:
        return sorted(self._partitions)
