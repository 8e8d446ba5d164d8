"""Re-read a range of one partition of a topic, outside any consumer group's position.

A worker that takes a partition over re-reads the spans its previous owner had buffered
(see ``pipeline.sampler``); this is the Kafka side of that: a private consumer assigned to
the one partition, batches of plain tuples, stopping at ``end`` or after a run of empty
polls (the range may end in transaction markers or deleted records).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from confluent_kafka import Consumer, TopicPartition

from pipeline.config.settings import Settings
from pipeline.wire.pieces import header_of

IDLE_POLLS = 10  # give up after this many empty one-second polls
BATCH = 500

# offset, key, value, timestamp in seconds, the spansieve-pieces header (or None)
Record = tuple[int, bytes | None, bytes | None, float, bytes | None]


async def read_range(
    settings: Settings, topic: str, partition: int, start: int, end: int
) -> AsyncIterator[list[Record]]:
    """Yield the records of offsets [start, end) of ``topic``/``partition`` in batches."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}-replay",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, partition, start)])
    position, idle_polls = start, 0
    try:
        while position < end and idle_polls < IDLE_POLLS:
            messages = await asyncio.to_thread(consumer.consume, BATCH, 1.0)
            idle_polls = 0 if messages else idle_polls + 1
            batch: list[Record] = []
            for message in messages:
                if message.error():
                    continue
                if message.offset() >= end:
                    position = end
                    continue
                position = message.offset() + 1
                batch.append(
                    (
                        message.offset(),
                        message.key(),
                        message.value(),
                        message.timestamp()[1] / 1000,
                        header_of(message.headers()),
                    )
                )
            if batch:
                yield batch
    finally:
        consumer.close()
