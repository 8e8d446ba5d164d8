"""An asyncio face for confluent-kafka's producer.

confluent-kafka (librdkafka) does the batching, compression and retries in C; this module
only bridges its delivery callbacks to asyncio futures so a request can await its acks.
"""

from __future__ import annotations

import asyncio
import threading
import time

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.config.settings import Settings

log = structlog.get_logger(__name__)


# Largest message librdkafka accepts from us (value, key and headers); Kafka's broker and
# topic defaults (1 048 588 bytes) take it.
MAX_MESSAGE_BYTES = 1_000_000


class AsyncProducer:
    """An idempotent, acks=all confluent-kafka producer whose sends can be awaited."""

    def __init__(self, settings: Settings, **overrides: object) -> None:
        config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            "message.timeout.ms": 10_000,
            "message.max.bytes": MAX_MESSAGE_BYTES,
            **overrides,
        }
        self.reachable = True
        # When the broker last acknowledged a message (monotonic seconds): a producer with
        # recent acks needs no probe to know Kafka is reachable.
        self.last_acked = 0.0
        config.setdefault("error_cb", self._on_error)
        self._producer = Producer(config)
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, daemon=True, name="kafka-poll")
        self._poller.start()

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    def send(
        self,
        topic: str,
        value: bytes,
        partition: int,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ):
        """Queue one message; returns a future resolved when the broker acknowledged it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def delivered(err, _msg) -> None:
            if err is None:
                self.last_acked = time.monotonic()
            loop.call_soon_threadsafe(_settle, future, err)

        self._producer.produce(
            topic, value, key, partition=partition, on_delivery=delivered, headers=headers
        )
        return future

    def queue_length(self) -> int:
        return len(self._producer)

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka reports losing every broker at once; stop accepting until it is back."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.reachable = False
            log.warning("kafka unreachable", error=err.str())

    def probe(self, timeout: float = 1.0, topic: str | None = None) -> bool:
        """Ask the cluster for metadata (blocking), of ``topic`` only if given (a cluster's
        whole metadata can be thousands of topics); updates and returns ``reachable``."""
        try:
            self._producer.list_topics(topic, timeout=timeout)
            self.reachable = True
        except KafkaException:
            self.reachable = False
        return self.reachable

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to timeout), then stop the poll thread."""
        self._producer.flush(timeout)
        self._stopping.set()
        self._poller.join()


def _settle(future: asyncio.Future, err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaException(err))
