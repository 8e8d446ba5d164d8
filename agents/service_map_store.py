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

import faust

from agents.metrics_store import store_batches
from agents.topics import raw_topic
from pipeline.config.settings import Settings
from pipeline.sink.service_map_writer import ServiceMapWriter


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

    app.agent(raw_topic(app, settings, "service-map"), name="service-map-store")(
        store_batches(writer)
    )
