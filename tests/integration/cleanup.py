"""Removing what a test made on the shared stack: private indices, topics, groups."""

from __future__ import annotations

import contextlib

from confluent_kafka.admin import AdminClient
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings


def drop_indices(client: OpenSearch, settings: Settings) -> None:
    """Every index and template under the settings' private ``store_index_prefix``."""
    prefix = settings.store_index_prefix
    assert prefix, "never drop the shared store"
    client.indices.delete(index=f"{prefix}*", ignore_unavailable=True, expand_wildcards="all")
    client.indices.delete_index_template(name=f"{prefix}*", ignore=404)


def drop_topics(settings: Settings) -> None:
    """The topics under the settings' topic prefix, and the worker's consumer group."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # already gone: nothing to clean
                future.result(30)
    groups = admin.delete_consumer_groups([f"{settings.topic_prefix}-worker"], request_timeout=10)
    for future in groups.values():
        with contextlib.suppress(Exception):  # never joined, or gone already
            future.result(10)
