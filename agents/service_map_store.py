"""Service-map store agent: Faust wiring around ``pipeline.sink.service_map_writer``.

The agent reads ``<prefix>-service-map`` (the service-map documents of the traces the
samplers decided, one message per closed window and partition) in batches with
``noack_take`` (it never acks by itself, not even for a batch abandoned at shutdown) and
acknowledges a batch's offsets only after the writer reports every document settled; a
batch that never finished is read again, and ``hashId`` as document id makes that
harmless. A task installs the service-map template and index. Registered by the sink
role (``agents.sink.register_sink``).
"""

from __future__ import annotations

import os

import faust
import structlog

from agents.topics import raw_topic
from pipeline.config.settings import Settings
from pipeline.sink.service_map_writer import ServiceMapWriter

log = structlog.get_logger(__name__)

BATCH_MESSAGES = 100  # a message is one partition's window: a few to thousands of documents
BATCH_SECONDS = 1.0


def register_service_map_store(app: faust.App, settings: Settings) -> None:
    dlq_topic = raw_topic(app, settings, "dlq")

    async def send_dead_letter(value: bytes, headers: dict[str, bytes]):
        return await dlq_topic.send(value=value, headers=headers)

    writer = ServiceMapWriter(settings, send_dead_letter)

    @app.task
    async def install_service_map_store() -> None:
        await writer.keep_index_installed()

    @app.on_before_shutdown.connect
    async def close_service_map_client(_app, **_kwargs) -> None:
        await writer.client.close()

    @app.agent(raw_topic(app, settings, "service-map"), name="service-map-store")
    async def store_service_map(stream: faust.Stream) -> None:
        try:
            async for events in stream.noack_take(BATCH_MESSAGES, BATCH_SECONDS):
                result = await writer.write([(event.key, event.value) for event in events])
                await writer.settle(result)
                for event in events:  # only now may Faust commit these offsets
                    await stream.ack(event)
        except Exception as exc:
            _exit(exc)


def _exit(exc: BaseException) -> None:
    """Restarting the agent in place would leave the failed batch unacked forever (commits
    stall behind it); exit instead, so that the group replays from the last commit."""
    log.error("service-map store failed; exiting so that a restart replays safely", exc_info=exc)
    os._exit(70)
