"""Transport-independent ingestion: one export request -> one Kafka message per partition."""

from __future__ import annotations

import asyncio
import time

from pipeline.gateway import metrics
from pipeline.kafka import AsyncProducer
from pipeline.otlp import ExportTraceServiceRequest, regroup_spans
from pipeline.partitioner import partition_for_trace
from pipeline.settings import Settings


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time; the client should retry later."""


class SpanIngestor:
    """Writes the spans of export requests to the spans topic, partitioned by trace id."""

    def __init__(self, settings: Settings, producer: AsyncProducer, ack_timeout: float = 5.0):
        self._producer = producer
        self._topic = settings.topic("spans")
        self._partitions = settings.partitions
        self._ack_timeout = ack_timeout

    async def ingest(self, request: ExportTraceServiceRequest) -> int:
        """Produce the request's spans and wait for Kafka's acks; returns the span count."""
        partitions = self._partitions
        groups = regroup_spans(
            request.resource_spans, lambda span: partition_for_trace(span.trace_id, partitions)
        )
        if not groups:
            return 0
        started = time.perf_counter()
        span_count = 0
        deliveries = []
        for partition, data in groups.items():
            span_count += sum(len(s.spans) for r in data.resource_spans for s in r.scope_spans)
            payload = data.SerializeToString()
            deliveries.append(self._producer.send(self._topic, payload, partition=partition))
        try:
            await asyncio.wait_for(asyncio.gather(*deliveries), self._ack_timeout)
        except Exception as exc:
            metrics.SPANS_REJECTED.labels(reason="kafka_unavailable").inc(span_count)
            raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc
        metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)
        metrics.SPANS_ACCEPTED.inc(span_count)
        return span_count
