"""Transport-independent ingestion: checks, redaction, pieces per partition for Kafka.

A request's accepted spans become per-trace pieces, grouped by partition
(``pipeline.wire.pieces``); the batcher (``pipeline.gateway.batcher``) sends them together
with the pieces of the requests that arrived within the same linger, one Kafka message per
partition, indexed so the workers store spans without parsing them.

Both receivers (HTTP and gRPC) hand a parsed export request here and map the outcome or
the exceptions to their protocol's answers.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.config.settings import Settings
from pipeline.gateway import metrics
from pipeline.gateway.auth import Principal
from pipeline.gateway.batcher import PartitionBatcher
from pipeline.gateway.validation import rejection_message, span_problem
from pipeline.kafka.producer import MAX_MESSAGE_BYTES, AsyncProducer
from pipeline.wire.otlp import ExportTraceServiceRequest, count_spans, service_name
from pipeline.wire.pieces import PartitionMessage, split_by_partition


class KafkaUnavailable(Exception):
    """Kafka is unreachable or did not acknowledge in time: retry later (503/UNAVAILABLE)."""


class Overloaded(Exception):
    """Too many bytes await Kafka acks, or the producer queue is full (429/RESOURCE_EXHAUSTED)."""


class TooManySpans(Exception):
    """The request holds more spans than allowed (413/INVALID_ARGUMENT)."""


class TraceTooLarge(Exception):
    """One trace's spans in the request exceed a Kafka message (413/INVALID_ARGUMENT).

    Refused before batching: librdkafka would refuse the message, and with it every
    request batched with this one, on every retry.
    """


# A piece travels whole in one message, with its header entry beside it.
MAX_PIECE_BYTES = MAX_MESSAGE_BYTES - 4096


@dataclass(frozen=True)
class ExportOutcome:
    accepted: int
    rejected: int
    message: str


class SpanIngestor:
    """Writes the valid spans of export requests to Kafka, partitioned by trace id."""

    def __init__(self, settings: Settings, producer: AsyncProducer, redactor=None) -> None:
        self._producer = producer
        self._redactor = redactor
        self.batcher = PartitionBatcher(
            producer,
            settings.topic("spans"),
            settings.gateway_linger,
            settings.gateway_batch_max_bytes,
        )
        self._partitions = settings.partitions
        self._ack_timeout = settings.gateway_ack_timeout
        self._max_spans = settings.gateway_max_spans_per_request
        self._max_inflight = settings.gateway_max_inflight_bytes
        self._inflight = 0

    @property
    def inflight_bytes(self) -> int:
        return self._inflight

    async def ingest(
        self, request: ExportTraceServiceRequest, body_size: int, principal: Principal
    ) -> ExportOutcome:
        """Produce the request's acceptable spans and wait for Kafka's acks.

        A request larger than the in-flight cap is still taken when nothing else is in
        flight, so the cap bounds memory without refusing any one request for ever.
        """
        if not self._producer.reachable:
            raise KafkaUnavailable("Kafka is unreachable")
        total = count_spans(request)
        if total > self._max_spans:
            raise TooManySpans(f"{total} spans in one request; the limit is {self._max_spans}")
        if self._inflight and self._inflight + body_size > self._max_inflight:
            raise Overloaded(f"{self._inflight} bytes already await Kafka acks")
        rejections: Counter[str] = Counter()
        if principal.allowed_services is not None:
            _drop_disallowed_services(request, principal.allowed_services, rejections)
        if self._redactor is not None:
            stats = self._redactor.redact_request(request)
            metrics.REDACTIONS.labels("key_removed").inc(stats.redacted_keys)
            metrics.REDACTIONS.labels("value_masked").inc(stats.masked_values)

        def accept(span: Span) -> bool:
            problem = span_problem(span)
            if problem is None:
                return True
            rejections[problem] += 1
            return False

        groups = split_by_partition(request.resource_spans, self._partitions, accept)
        for message in groups.values():
            if message.size <= MAX_PIECE_BYTES:  # no piece can be larger: skip the scan
                continue
            largest = message.largest_piece()
            if largest > MAX_PIECE_BYTES:
                metrics.SPANS_REJECTED.labels("trace_too_large").inc(total)
                raise TraceTooLarge(
                    f"one trace has {largest} bytes of spans in this request; "
                    f"the limit is {MAX_PIECE_BYTES}: send its spans in smaller requests"
                )
        rejected = sum(rejections.values())
        for reason, count in rejections.items():
            metrics.SPANS_REJECTED.labels(reason).inc(count)
        accepted = total - rejected
        if groups:
            await self._produce(groups, body_size, accepted)
        metrics.SPANS_ACCEPTED.inc(accepted)
        return ExportOutcome(accepted, rejected, rejection_message(rejections))

    async def _produce(
        self, groups: dict[int, PartitionMessage], body_size: int, spans: int
    ) -> None:
        started = time.perf_counter()
        self._inflight += body_size
        # The batch waits up to one linger before it is sent; the ack timeout starts then.
        timeout = self._ack_timeout + self.batcher.linger
        try:
            try:
                await asyncio.wait_for(asyncio.shield(self.batcher.add(groups)), timeout)
            except BufferError as exc:
                metrics.SPANS_REJECTED.labels("overloaded").inc(spans)
                raise Overloaded("the Kafka producer queue is full") from exc
            except Exception as exc:
                metrics.SPANS_REJECTED.labels("kafka_unavailable").inc(spans)
                reason = str(exc) or f"no ack within {self._ack_timeout}s"
                raise KafkaUnavailable(f"Kafka did not acknowledge: {reason}") from exc
        finally:
            self._inflight -= body_size
        metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)


def _drop_disallowed_services(
    request: ExportTraceServiceRequest, allowed: frozenset[str], rejections: Counter[str]
) -> None:
    """Remove resources whose service.name this key may not send, counting their spans."""
    for index in range(len(request.resource_spans) - 1, -1, -1):
        resource_spans = request.resource_spans[index]
        if service_name(resource_spans.resource.attributes) not in allowed:
            spans = sum(len(s.spans) for s in resource_spans.scope_spans)
            rejections["service_not_allowed"] += spans
            del request.resource_spans[index]
