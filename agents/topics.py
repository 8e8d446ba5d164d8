"""The worker's view of the Kafka topics: raw bytes in and out, our partition count."""

from __future__ import annotations

import faust

from pipeline.settings import Settings


def raw_topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    """A topic of the product (see TOPIC_NAMES) whose keys and values stay bytes."""
    return app.topic(
        settings.topic(name),
        partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
