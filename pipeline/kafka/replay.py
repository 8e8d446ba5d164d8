"""Re-read a range of one partition of a topic, outside any consumer group's position.

A worker that takes a partition over re-reads the spans its previous owner had buffered
(see ``pipeline.sampler``); this is the Kafka side of that: a private consumer assigned to
the one partition, batches of plain tuples, stopping once its position reaches ``end``.

The read never ends early because Kafka is slow: a busy broker may answer nothing for
many seconds, and a replay that gave up then would silently lose the spans it had not
read yet. Only two things end it before ``end``:

* offsets that hold no record: transaction markers and aborted records are skipped by the
  consumer, whose *position* still moves past them, so the position is what counts;
* records deleted by retention: the log now starts after ``start``; the read goes on from
  the log start, and the gap is reported (``on_gap``) so the caller can count it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import structlog
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from pipeline.config.settings import Settings
from pipeline.wire.pieces import header_of

log = structlog.get_logger(__name__)

BATCH = 500
POLL_SECONDS = 1.0
WARN_EVERY_IDLE_POLLS = 30  # a warning per half-minute without progress, not one per poll

# offset, key, value, timestamp in seconds, the spansieve-pieces header (or None)
Record = tuple[int, bytes | None, bytes | None, float, bytes | None]
# Called with (first missing offset, first offset still in the log) when retention
# deleted part of the range.
OnGap = Callable[[int, int], object]


def _position(consumer: Consumer, partition: TopicPartition) -> int | None:
    """The consumer's next offset to read, once it has fetched anything."""
    (current,) = consumer.position([partition])
    return None if current.offset == OFFSET_INVALID else current.offset


def _log_start(consumer: Consumer, partition: TopicPartition) -> int | None:
    try:
        low, _high = consumer.get_watermark_offsets(partition, timeout=5.0, cached=False)
    except Exception:  # the broker did not answer: ask again at the next idle poll
        return None
    return low


async def read_range(
    settings: Settings,
    topic: str,
    partition: int,
    start: int,
    end: int,
    on_gap: OnGap | None = None,
) -> AsyncIterator[list[Record]]:
    """Yield the records of offsets [start, end) of ``topic``/``partition`` in batches."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}-replay",
            "enable.auto.commit": False,
            # If retention deleted the start of the range, read from the log start (not
            # from the end, the default), and report the gap below.
            "auto.offset.reset": "earliest",
        }
    )
    assigned = TopicPartition(topic, partition, start)
    consumer.assign([assigned])
    position, idle_polls = start, 0
    gap_checked = False

    def moved_to(offset: int) -> None:
        """The read passed ``offset``; the first time past ``start``, look for a gap."""
        nonlocal position, gap_checked
        if not gap_checked and offset > start:
            low = _log_start(consumer, assigned)
            gap_checked = low is not None
            if low is not None and low > start:
                log.error(
                    "part of a re-read range was deleted by retention before it was read",
                    topic=topic,
                    partition=partition,
                    first_missing=start,
                    log_start=low,
                )
                if on_gap is not None:
                    on_gap(start, min(low, end))
        position = offset

    try:
        while position < end:
            messages = await asyncio.to_thread(consumer.consume, BATCH, POLL_SECONDS)
            batch: list[Record] = []
            for message in messages:
                if message.error():
                    continue
                offset = message.offset()
                if offset >= end:
                    moved_to(end)
                    continue
                if offset > position:
                    moved_to(offset)
                position = offset + 1
                batch.append(
                    (
                        offset,
                        message.key(),
                        message.value(),
                        message.timestamp()[1] / 1000,
                        header_of(message.headers()),
                    )
                )
            if batch:
                idle_polls = 0
                yield batch
                continue
            # Nothing delivered: past the range already (markers), or Kafka is slow.
            fetched_to = _position(consumer, assigned)
            if fetched_to is not None and fetched_to > position:
                moved_to(min(fetched_to, end))
                continue
            idle_polls += 1
            if idle_polls % WARN_EVERY_IDLE_POLLS == 0:
                log.warning(
                    "re-read of a partition makes no progress; still waiting for Kafka",
                    topic=topic,
                    partition=partition,
                    position=position,
                    end=end,
                    idle_seconds=idle_polls * POLL_SECONDS,
                )
    finally:
        consumer.close()
