"""The worker's Kafka transport asks aiokafka for batching fetches (agents.transport)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiokafka
from faust.transport.drivers import aiokafka as driver

from agents import transport


def test_worker_consumers_wait_for_a_batch(monkeypatch):
    made = SimpleNamespace(_fetch_min_bytes=1, _fetch_max_wait_ms=1500)
    monkeypatch.setattr(
        driver.AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, _t: made
    )
    thread = object.__new__(transport._ConsumerThread)
    assert thread._create_worker_consumer(None) is made
    assert made._fetch_min_bytes == transport.FETCH_MIN_BYTES == 256 * 1024
    assert made._fetch_max_wait_ms == transport.FETCH_MAX_WAIT_MS == 250


def test_aiokafka_still_reads_the_settings_it_is_given():
    """The attributes set after construction are the ones aiokafka's start() reads."""

    async def build() -> aiokafka.AIOKafkaConsumer:
        return aiokafka.AIOKafkaConsumer(fetch_min_bytes=7, fetch_max_wait_ms=9)

    consumer = asyncio.run(build())
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (7, 9)


def test_the_transport_makes_the_batching_consumer_threads():
    assert transport.Transport.Consumer._new_consumer_thread is not (
        driver.Consumer._new_consumer_thread
    )
    assert issubclass(transport._ConsumerThread, driver.AIOKafkaConsumerThread)
