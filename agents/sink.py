"""Sink agent: Faust wiring around ``pipeline.sink.writer.TraceSink``.

The agent takes batches of the sampled topic with ``noack_take`` (it never acks by itself,
not even for a batch abandoned at shutdown) and acknowledges a batch's offsets only after
the sink reports every document settled; ``store_batches_in_flight`` batches are indexed
at once and acknowledged in order. A task installs the store, a leader timer runs the
worker-side lifecycle. What happens to documents, retries and holds: see
``pipeline/sink/writer.py``.
"""

from __future__ import annotations

import logging
import os

import faust
import structlog

from agents.metrics_store import register_metrics_store
from agents.service_map_store import register_service_map_store
from agents.topics import raw_topic
from pipeline.config.settings import Settings
from pipeline.sink.batches import BatchPipeline, BatchResult
from pipeline.sink.writer import TraceSink

log = structlog.get_logger(__name__)

BATCH_SECONDS = 1.0


def register_sink(app: faust.App, settings: Settings) -> None:
    # The sink logs OpenSearch failures itself, once per retry round; the client's own
    # warning per failed request (with a traceback) would flood the log during an outage.
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    sampled_topic = raw_topic(app, settings, "sampled")
    dlq_topic = raw_topic(app, settings, "dlq")

    async def send_dead_letter(value: bytes, headers: dict[str, bytes]):
        return await dlq_topic.send(value=value, headers=headers)

    sink = TraceSink(settings, send_dead_letter)

    @app.task
    async def install_store() -> None:
        await sink.keep_store_installed()

    @app.on_before_shutdown.connect
    async def close_client(_app, **_kwargs) -> None:
        await sink.client.close()

    @app.timer(settings.store_lifecycle_interval, on_leader=True)
    async def store_lifecycle() -> None:
        await sink.lifecycle_pass()

    @app.agent(sampled_topic, name="sink")
    async def index_kept_traces(stream: faust.Stream) -> None:
        async def finished(events: list, result: BatchResult) -> None:
            await sink.settle(result)
            for event in events:  # only now may Faust commit these offsets
                await stream.ack(event)

        pipeline = BatchPipeline(settings.store_batches_in_flight, finished, on_error=_exit)
        try:
            async for events in stream.noack_take(settings.store_batch_traces, BATCH_SECONDS):
                await pipeline.submit(events, sink.write([event.value for event in events]))
        except Exception as exc:
            _exit(exc)

    register_metrics_store(app, settings)
    register_service_map_store(app, settings)


def _exit(exc: BaseException) -> None:
    """Restarting the agent in place would leave the failed batch unacked forever (commits
    stall behind it); exit instead, so that the group replays from the last commit."""
    log.error("sink failed; exiting so that a restart replays safely", exc_info=exc)
    os._exit(70)
