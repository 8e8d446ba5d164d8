"""Reading back what the gateway wrote: a real Kafka consumer over the spans topic."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from pipeline.config.settings import Settings
from pipeline.wire.otlp import TracesData


def read_spans(
    settings: Settings,
    trace_ids: set[bytes],
    expected: int,
    timeout: float = 20.0,
    topic: str = "spans",
):
    """Spans of the given traces on the spans topic: {span id: (partition, span)}.

    Reads until ``expected`` spans were found (then one more poll, to catch extras) or
    until timeout.
    """
    topic = settings.topic(topic)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(
        [TopicPartition(topic, p, 0) for p in range(settings.partitions)]  # from the start
    )
    found = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                _collect(message, trace_ids, found)
            if len(found) >= expected:
                for message in consumer.consume(500, timeout=0.5):
                    _collect(message, trace_ids, found)
                break
    finally:
        consumer.close()
    return found


def _collect(message, trace_ids: set[bytes], found: dict) -> None:
    if message.error() or not message.value():
        return
    data = TracesData.FromString(message.value())
    for resource_spans in data.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.trace_id in trace_ids:
                    found[span.span_id] = (message.partition(), span)
