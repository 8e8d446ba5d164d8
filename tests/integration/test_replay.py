"""The takeover's re-read of the spans topic reads the whole range, on real Kafka.

It must not end early because Kafka answers slowly (a replay that gave up would lose the
spans it had not read), must end when the range closes with transaction markers, and must
say how much retention deleted.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.config.settings import Settings
from pipeline.kafka import replay

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(stack: Settings):
    name = f"replay-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


def produce(settings: Settings, topic: str, values: list[bytes], **config) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, **config})
    for value in values:
        producer.produce(topic, value=value, key=b"k", partition=0)
    assert producer.flush(30) == 0


def read(settings: Settings, topic: str, start: int, end: int, on_gap=None) -> list:
    async def collect() -> list:
        records = []
        async for batch in replay.read_range(settings, topic, 0, start, end, on_gap=on_gap):
            records.extend(batch)
        return records

    return asyncio.run(collect())


def test_reads_exactly_the_range(stack: Settings, topic: str):
    produce(stack, topic, [str(n).encode() for n in range(50)])
    records = read(stack, topic, 10, 40)
    assert [offset for offset, *_ in records] == list(range(10, 40))
    assert [value for _, _, value, _, _ in records] == [str(n).encode() for n in range(10, 40)]


def test_waits_for_a_slow_broker_instead_of_giving_up(
    stack: Settings, topic: str, monkeypatch: pytest.MonkeyPatch
):
    """The range's last records arrive after many empty polls; none of them is lost."""
    monkeypatch.setattr(replay, "POLL_SECONDS", 0.2)
    produce(stack, topic, [b"early"] * 5)
    later = threading.Thread(target=lambda: (time.sleep(4), produce(stack, topic, [b"late"] * 5)))
    later.start()
    try:
        records = read(stack, topic, 0, 10)  # 20 empty polls before the rest is there
    finally:
        later.join()
    assert [value for _, _, value, _, _ in records] == [b"early"] * 5 + [b"late"] * 5


def test_a_range_ending_in_transaction_markers_ends(stack: Settings, topic: str):
    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "transactional.id": f"t-{topic}"}
    )
    producer.init_transactions(30)
    for outcome in ("commit", "abort", "commit"):
        producer.begin_transaction()
        for n in range(3):
            producer.produce(topic, value=f"{outcome}-{n}".encode(), partition=0)
        producer.flush(30)  # an abort would otherwise drop the records unsent
        if outcome == "commit":
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    # Offsets 0-2 data, 3 marker, 4-6 aborted, 7 marker, 8-10 data, 11 marker.
    records = read(stack, topic, 0, 12)
    assert [offset for offset, *_ in records] == [0, 1, 2, 8, 9, 10]


def test_records_deleted_by_retention_are_reported(stack: Settings, topic: str):
    produce(stack, topic, [str(n).encode() for n in range(20)])
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    deleted = admin.delete_records([TopicPartition(topic, 0, 12)])
    for future in deleted.values():
        future.result(30)
    gaps: list[tuple[int, int]] = []
    records = read(stack, topic, 4, 20, on_gap=lambda start, low: gaps.append((start, low)))
    assert [offset for offset, *_ in records] == list(range(12, 20))
    assert gaps == [(4, 12)]
