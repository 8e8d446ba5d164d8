"""Sink agent: bulk-index kept traces into OpenSearch, retrying until it succeeds.

Offsets of a batch are acknowledged only after its bulk request succeeded, so a crash or an
OpenSearch outage replays the batch; document ids make the replay idempotent.
"""

from __future__ import annotations

import asyncio

import faust
import structlog
from opensearchpy import AsyncOpenSearch, OpenSearch

from agents import metrics
from agents.topics import raw_topic
from pipeline.otlp import TracesData
from pipeline.settings import Settings
from pipeline.store import ensure_span_index, index_traces

log = structlog.get_logger(__name__)

BATCH_SIZE = 500
BATCH_SECONDS = 1.0
MAX_BACKOFF = 30.0


def register_sink(app: faust.App, settings: Settings) -> None:
    sampled_topic = raw_topic(app, settings, "sampled")
    client = AsyncOpenSearch(hosts=[settings.opensearch_url], timeout=30)

    @app.task
    async def install_index() -> None:
        await asyncio.to_thread(ensure_span_index, OpenSearch(hosts=[settings.opensearch_url]))

    @app.agent(sampled_topic, name="sink")
    async def sink(stream: faust.Stream) -> None:
        async for values in stream.take(BATCH_SIZE, within=BATCH_SECONDS):
            traces = [TracesData.FromString(value) for value in values]
            backoff = 1.0
            while True:
                try:
                    written = await index_traces(client, traces)
                    break
                except Exception as exc:
                    metrics.SINK_RETRIES.inc()
                    log.warning("bulk index failed; retrying", error=str(exc), backoff=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
            metrics.DOCUMENTS_INDEXED.inc(written)
