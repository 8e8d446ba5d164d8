"""Metrics-store agents: Faust wiring around ``pipeline.sink.metrics_writer.MetricsWriter``.

One agent per span-metrics topic (``<prefix>-red-metrics``, ``<prefix>-service-graph``)
takes batches with ``noack_take`` (it never acks by itself, not even for a batch abandoned
at shutdown) and acknowledges a batch's offsets only after the writer reports every
document settled; a batch that never finished is read again, and the documents' ids make
that harmless. A task installs the metrics index template, a leader timer runs the
retention pass (core OpenSearch APIs, so it works without the ISM plugin). Registered by
the sink role (``agents.sink.register_sink``).
"""

from __future__ import annotations

import os

import faust
import structlog

from agents.topics import raw_topic
from pipeline.config.settings import Settings
from pipeline.sink.metrics_writer import MetricsWriter
from pipeline.sink.service_map_writer import ServiceMapWriter

log = structlog.get_logger(__name__)

BATCH_MESSAGES = 100  # a message is one partition's window: tens to thousands of documents
BATCH_SECONDS = 1.0
METRICS_TOPICS = ("red-metrics", "service-graph")


def register_metrics_store(app: faust.App, settings: Settings) -> None:
    dlq_topic = raw_topic(app, settings, "dlq")

    async def send_dead_letter(value: bytes, headers: dict[str, bytes]):
        return await dlq_topic.send(value=value, headers=headers)

    writer = MetricsWriter(settings, send_dead_letter)

    @app.task
    async def install_metrics_store() -> None:
        await writer.keep_template_installed()

    @app.on_before_shutdown.connect
    async def close_metrics_client(_app, **_kwargs) -> None:
        await writer.client.close()

    @app.timer(settings.store_lifecycle_interval, on_leader=True)
    async def metrics_lifecycle() -> None:
        await writer.lifecycle_pass()

    for name in METRICS_TOPICS:
        app.agent(raw_topic(app, settings, name), name=f"metrics-store-{name}")(
            store_batches(writer)
        )


def store_batches(writer: MetricsWriter | ServiceMapWriter):
    """An agent body: batches of messages written by ``writer``, acknowledged once settled.

    Shared by the metrics store and the service-map store (``agents.service_map_store``).
    """

    async def store(stream: faust.Stream) -> None:
        try:
            async for events in stream.noack_take(BATCH_MESSAGES, BATCH_SECONDS):
                result = await writer.write([(event.key, event.value) for event in events])
                await writer.settle(result)
                for event in events:  # only now may Faust commit these offsets
                    await stream.ack(event)
        except Exception as exc:
            # Restarting the agent in place would leave the failed batch unacked forever
            # (commits stall behind it); exit instead, so the group replays from the last
            # commit.
            log.error(
                f"{writer.name} store failed; exiting so that a restart replays safely",
                exc_info=exc,
            )
            os._exit(70)

    return store
