"""Topic creation: the product's topics and the worker's changelogs, idempotently."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.config.settings import TOPIC_NAMES, Settings

log = structlog.get_logger(__name__)


# The sampler keeps time by the spans topic's timestamps; the broker's clock makes them one
# clock for all gateways and the tick sender.
PRODUCT_TOPIC_CONFIGS = {"spans": {"message.timestamp.type": "LogAppendTime"}}


def ensure_topics(
    settings: Settings,
    names: Iterable[str] | None = None,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create topics if missing (idempotent; existing topics are left as they are).

    Without ``names``, the product's topics (TOPIC_NAMES under the prefix, with
    PRODUCT_TOPIC_CONFIGS). Every topic gets ``settings.partitions`` partitions, the
    co-partitioning the workers rely on.
    """
    if names is None:
        configs = {
            settings.topic(n): {**PRODUCT_TOPIC_CONFIGS.get(n, {}), **(config or {})}
            for n in TOPIC_NAMES
        }
    else:
        configs = {name: config or {} for name in names}
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = admin.list_topics(timeout=timeout).topics
    wanted = [
        NewTopic(
            name, num_partitions=settings.partitions, replication_factor=1, config=topic_config
        )
        for name, topic_config in configs.items()
        if name not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            log.info("topic created", topic=topic, partitions=settings.partitions)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def delete_topics(settings: Settings, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics (a benchmark's private ones); missing topics are not an error."""
    names = list(names)
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for topic, future in admin.delete_topics(names, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            log.info("topic already gone", topic=topic)
