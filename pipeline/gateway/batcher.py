"""Coalesce the pieces of concurrent export requests into one Kafka message per partition.

Sending each request's spans as one message per partition makes the message count grow
with the request rate times the partition count. Every message costs the same fixed work
three times over: a ``produce`` call and a delivery callback here, a batch in librdkafka's
broker thread, and an event, a RocksDB write and a replay-order check on the worker. At
5 000 spans/s in 250-span requests over 8 partitions that fixed work was most of the CPU
per span of both processes.

The batcher collects the pieces of the requests that arrive within ``linger`` seconds
(the first request of a batch opens it) and sends them together: one message per
partition per flush. A flush happens earlier when one partition's pending message would
outgrow ``max_bytes``, so under heavy load batches fill and go out before the linger
ends: the batch size, not the delay, grows with load. Every request awaits the flush that
carries its pieces; a request is answered only after Kafka acknowledged all of them.
"""

from __future__ import annotations

import asyncio

from pipeline.gateway import metrics
from pipeline.kafka.producer import AsyncProducer
from pipeline.wire.pieces import PIECES_HEADER, PartitionMessage


class PartitionBatcher:
    """Pending pieces per partition, sent when the linger ends or a message is full."""

    def __init__(self, producer: AsyncProducer, topic: str, linger: float, max_bytes: int) -> None:
        self._producer = producer
        self._topic = topic
        self._linger = linger
        self._max_bytes = max_bytes
        self._pending: dict[int, PartitionMessage] = {}
        self._outcome: asyncio.Future | None = None  # settles once the pending batch is acked
        self._timer: asyncio.TimerHandle | None = None
        self.flushes = 0  # batches sent

    @property
    def linger(self) -> float:
        return self._linger

    def add(self, groups: dict[int, PartitionMessage]) -> asyncio.Future:
        """Queue a request's per-partition pieces; the future settles when Kafka has them.

        The future is shared by every request of the batch: await it through
        ``asyncio.shield`` so one request's timeout does not cancel it for the others. It
        fails with the producer's exception (``BufferError`` when librdkafka's queue is
        full, ``KafkaException`` for a refused or undelivered message).
        """
        if any(
            partition in self._pending
            and self._pending[partition].size + message.size > self._max_bytes
            for partition, message in groups.items()
        ):
            self.flush("full")
        for partition, message in groups.items():
            pending = self._pending.get(partition)
            if pending is None:
                self._pending[partition] = message
            else:
                pending.merge(message)
        outcome = self._outcome
        if outcome is None:
            outcome = self._outcome = asyncio.get_running_loop().create_future()
            # Failed batches whose requests all gave up must not log "never retrieved".
            outcome.add_done_callback(_retrieve)
        if any(message.size >= self._max_bytes for message in self._pending.values()):
            self.flush("full")
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self.flush)
        return outcome

    def flush(self, trigger: str = "linger") -> None:
        """Send the pending batch now: its linger ended, it is full, or the gateway stops."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, outcome = self._pending, self._outcome
        self._pending, self._outcome = {}, None
        if outcome is None:
            return
        if not pending:  # requests without a single accepted span
            outcome.set_result(None)
            return
        self.flushes += 1
        metrics.BATCHES_SENT.labels(trigger).inc()
        try:
            deliveries = []
            for partition, message in pending.items():
                # One request alone can bring more than a message holds: whole pieces per
                # message (the gateway refuses a piece too large for one).
                for chunk in message.chunks(self._max_bytes):
                    deliveries.append(
                        self._producer.send(
                            self._topic,
                            chunk.value(),
                            partition=partition,
                            headers=[(PIECES_HEADER, chunk.header())],
                        )
                    )
                    metrics.MESSAGES_SENT.inc()
        except Exception as exc:  # BufferError (queue full) or a refused message
            for delivery in deliveries:  # their acks come, but the batch failed as a whole
                delivery.add_done_callback(_retrieve)
            outcome.set_exception(exc)
            return
        asyncio.gather(*deliveries).add_done_callback(lambda gathered: _settle(outcome, gathered))


def _settle(outcome: asyncio.Future, gathered: asyncio.Future) -> None:
    if outcome.done():
        return
    if gathered.cancelled():
        outcome.cancel()
    elif gathered.exception() is not None:
        outcome.set_exception(gathered.exception())
    else:
        outcome.set_result(None)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
