"""A broker killed under replication factor 3 loses no acknowledged span.

Runs a private three-broker KRaft cluster (its own ports and state directory, started
through the product's stack code) so the shared single-broker stack is never touched.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from pipeline.config.settings import Settings
from pipeline.kafka.topics import align_min_insync, ensure_topics
from pipeline.local.run import port_is_free, wait_until
from pipeline.local.stack import kafka_node_pid, stack_down, stack_status, stack_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES = 3000
KILL_AT = 1000  # the leader dies a third of the way through


def free_port_block(size: int) -> int:
    """A port p with p .. p + size - 1 all free, below the kernel's ephemeral range (a port
    from that range may go to an outgoing connection before Kafka binds it)."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20_000, ephemeral_low - size)
        if all(port_is_free(port + i) for i in range(size)):
            return port
    raise RuntimeError(f"no {size} free consecutive ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Three combined KRaft nodes on six consecutive free ports; always stopped."""
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("three-brokers"),
        kafka_bootstrap=f"127.0.0.1:{free_port_block(6)}",
        kafka_brokers=3,
        kafka_replication_factor=3,
        kafka_min_insync_replicas=2,
        topic_prefix=f"repl-{uuid.uuid4().hex[:8]}",
        partitions=1,
    )
    try:
        stack_up(settings, progress=False, only=["kafka"])
        yield settings
    finally:
        stack_down(settings, only=["kafka"])


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


def _under_replicated(settings: Settings) -> int:
    """Partitions of the whole cluster whose in-sync replicas are fewer than replicas."""
    meta = _admin(settings).list_topics(timeout=10)
    return sum(
        len(p.isrs) < len(p.replicas) for t in meta.topics.values() for p in t.partitions.values()
    )


def test_cluster_has_three_nodes(cluster: Settings) -> None:
    rows = {row.name: row for row in stack_status(cluster)}
    kafka = {name: row for name, row in rows.items() if name.startswith("kafka")}
    assert set(kafka) == {"kafka-1", "kafka-2", "kafka-3"}
    assert all(row.state == "running" for row in kafka.values()), kafka
    port = cluster.kafka_port
    assert [kafka[f"kafka-{n}"].address for n in (1, 2, 3)] == [
        f"127.0.0.1:{port}",
        f"127.0.0.1:{port + 2}",
        f"127.0.0.1:{port + 4}",
    ]
    assert len(cluster.kafka_bootstrap.split(",")) == 3
    assert sorted(_admin(cluster).list_topics(timeout=10).brokers) == [1, 2, 3]


def test_killed_leader_loses_no_acknowledged_message(cluster: Settings) -> None:
    started = time.monotonic()
    topic = cluster.topic("spans")
    ensure_topics(cluster, [topic])
    admin = _admin(cluster)
    # A new topic's partitions reach every broker's metadata a moment after creation.
    assert wait_until(
        lambda: 0 in admin.list_topics(topic, timeout=10).topics[topic].partitions,
        "topic metadata",
        30,
    )
    partition = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
    assert len(partition.replicas) == 3
    config = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    entries = next(iter(config.values())).result(10)
    assert entries["min.insync.replicas"].value == "2"
    leader = partition.leader

    acked: set[int] = set()
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg) -> None:
        if err is None:
            acked.add(int(msg.value()))
        else:
            failed.append(err)

    producer = Producer(
        {
            "bootstrap.servers": cluster.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60_000,
        }
    )
    killed_pid = None
    for i in range(MESSAGES):
        producer.produce(topic, str(i).encode(), partition=0, on_delivery=delivered)
        producer.poll(0)
        if i == KILL_AT:
            producer.flush(30)  # some acknowledged before the kill, for certain
            killed_pid = kafka_node_pid(cluster, leader)
            assert killed_pid is not None
            os.kill(killed_pid, signal.SIGKILL)
        time.sleep(0.002)
    assert producer.flush(90) == 0, "messages still queued after 90 s"
    assert killed_pid is not None

    new_leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
    assert new_leader not in (leader, -1)
    assert len(acked) >= MESSAGES * 0.9, (len(acked), failed[:5])

    seen = _read_all(cluster, topic)
    duplicates = {value: n for value, n in seen.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} duplicated, e.g. {list(duplicates)[:5]}"
    lost = acked - set(seen)
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {sorted(lost)[:5]}"

    # The killed broker comes back through `stack up` and catches up.
    assert _under_replicated(cluster) > 0
    stack_up(cluster, progress=False, only=["kafka"])
    assert kafka_node_pid(cluster, leader) not in (None, killed_pid)
    assert wait_until(lambda: _under_replicated(cluster) == 0, "cluster healed", 90)
    print(f"replication test body: {time.monotonic() - started:.1f} s")


def _min_isr(settings: Settings, topic: str) -> str:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = _admin(settings)  # kept alive until the future resolves
    entries = admin.describe_configs([resource])[resource].result(10)
    return entries["min.insync.replicas"].value


def test_topics_created_by_others_get_min_isr(cluster: Settings) -> None:
    """Faust creates its leader topic without topic configs; the worker aligns it."""
    topic = f"{cluster.topic_prefix}-worker-__assignor-__leader"
    plain = NewTopic(topic, num_partitions=1, replication_factor=3)
    admin = _admin(cluster)
    admin.create_topics([plain])[topic].result(30)
    assert _min_isr(cluster, topic) == "1"
    assert topic in align_min_insync(cluster)
    assert _min_isr(cluster, topic) == "2"
    assert align_min_insync(cluster) == []  # already aligned: nothing to change


def _read_all(settings: Settings, topic: str, timeout: float = 60.0) -> Counter[int]:
    """Every message of partition 0 from the start to the end offset, counted by value."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + timeout
    position = 0
    try:
        while position < high and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1):
                if message.error():
                    continue
                seen[int(message.value())] += 1
                position = message.offset() + 1
    finally:
        consumer.close()
    assert position >= high, f"read up to offset {position} of {high}"
    return seen
