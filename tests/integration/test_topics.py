"""Topic creation and deletion on the real broker (benchmarks delete their private topics)."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient

from pipeline.config.settings import Settings
from pipeline.kafka.topics import delete_topics, ensure_topics
from pipeline.local.run import wait_until


def test_private_topics_are_created_with_our_partitions_and_deleted(pipeline_settings: Settings):
    name = f"private-{uuid.uuid4().hex[:8]}"
    ensure_topics(pipeline_settings, [name])
    admin = AdminClient({"bootstrap.servers": pipeline_settings.kafka_bootstrap})
    topic = admin.list_topics(name, timeout=10).topics[name]
    assert len(topic.partitions) == pipeline_settings.partitions
    delete_topics(pipeline_settings, [name, f"never-{name}"])  # a missing one is no error
    assert wait_until(lambda: name not in admin.list_topics(timeout=10).topics, "deleted", 30)
