"""Topic creation: the product's topics and the worker's changelogs, idempotently."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

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
    metadata = admin.list_topics(timeout=timeout)
    check_replication(settings, len(metadata.brokers))
    wanted = [
        new_topic(settings, name, topic_config)
        for name, topic_config in configs.items()
        if name not in metadata.topics
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            log.info(
                "topic created",
                topic=topic,
                partitions=settings.partitions,
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas,
            )
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.INVALID_REPLICATION_FACTOR:
                raise ReplicationError(
                    f"cannot create topic {topic} with replication factor "
                    f"{settings.kafka_replication_factor}: {len(metadata.brokers)} broker(s) "
                    f"answer at {settings.kafka_bootstrap}. Start more brokers "
                    "(`spansieve stack up --kafka-brokers 3`) or lower "
                    "SPANSIEVE_KAFKA_REPLICATION_FACTOR."
                ) from None
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def new_topic(settings: Settings, name: str, config: dict[str, str] | None = None) -> NewTopic:
    """The NewTopic we create: replication comes from the settings, never a literal, so a
    replicated cluster gets replicated topics (changelogs included)."""
    topic_config = {
        "min.insync.replicas": str(settings.kafka_min_insync_replicas),
        **(config or {}),
    }
    return NewTopic(
        name,
        num_partitions=settings.partitions,
        replication_factor=settings.kafka_replication_factor,
        config=topic_config,
    )


class ReplicationError(ValueError):
    """The replication settings cannot work; the message says what to change."""


def replication_problems(
    brokers: int, replication_factor: int, min_insync_replicas: int
) -> tuple[str | None, str | None]:
    """(error, warning) about these replication settings on a cluster of ``brokers``.

    min.insync.replicas above the replication factor makes every acks=all write fail, so
    it is an error; fewer brokers than replicas (a small cluster, or a broker down) is a
    warning: existing topics still work, under-replicated.
    """
    error = warning = None
    if min_insync_replicas > replication_factor:
        error = (
            f"kafka_min_insync_replicas ({min_insync_replicas}) is above "
            f"kafka_replication_factor ({replication_factor}): no acks=all write could "
            "ever succeed. Set SPANSIEVE_KAFKA_MIN_INSYNC_REPLICAS to at most "
            f"{replication_factor} (or raise SPANSIEVE_KAFKA_REPLICATION_FACTOR)."
        )
    if brokers < replication_factor:
        warning = (
            f"the Kafka cluster has {brokers} broker(s), fewer than kafka_replication_factor "
            f"({replication_factor}): new topics cannot be created and existing ones are "
            "under-replicated. Start more brokers (`spansieve stack up --kafka-brokers "
            f"{replication_factor}` locally) or lower SPANSIEVE_KAFKA_REPLICATION_FACTOR."
        )
    return error, warning


_warned: set[tuple[str, str]] = set()


def check_replication(settings: Settings, brokers: int) -> None:
    """Refuse impossible replication settings; warn (once per cluster and message) when
    the cluster has fewer brokers than the replication factor."""
    error, warning = replication_problems(
        brokers, settings.kafka_replication_factor, settings.kafka_min_insync_replicas
    )
    if error is not None:
        raise ReplicationError(error)
    if warning is not None and (settings.kafka_bootstrap, warning) not in _warned:
        _warned.add((settings.kafka_bootstrap, warning))
        log.warning(
            "kafka has fewer brokers than replicas",
            brokers=brokers,
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
            advice=warning,
        )


def align_min_insync(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Set min.insync.replicas on our topics that someone else created (Faust's leader and
    repartition topics take no topic configs); returns the topics changed.

    Only topics under the prefix whose value differs are altered, so a repeat is one
    describe_configs call.
    """
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    names = [
        name
        for name in admin.list_topics(timeout=timeout).topics
        if name.startswith(f"{settings.topic_prefix}-")
    ]
    if not names:
        return []
    wanted = str(settings.kafka_min_insync_replicas)
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    stale = []
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entry = future.result(timeout).get("min.insync.replicas")
        if entry is None or entry.value != wanted:
            stale.append(resource.name)
    if not stale:
        return []
    changes = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(
                    "min.insync.replicas",
                    wanted,
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        for name in stale
    ]
    for resource, future in admin.incremental_alter_configs(
        changes, request_timeout=timeout
    ).items():
        future.result(timeout)
        log.info("min.insync.replicas set", topic=resource.name, value=wanted)
    return stale


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
