"""Runs the gateway's servers in one event loop."""

from __future__ import annotations

import asyncio

import structlog
import uvicorn

from pipeline.gateway.http import observability_app, otlp_http_app
from pipeline.gateway.ingest import SpanIngestor
from pipeline.kafka import AsyncProducer, ensure_topics
from pipeline.settings import Settings

log = structlog.get_logger(__name__)


def _server(app, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    return uvicorn.Server(config)


async def serve_gateway(settings: Settings) -> None:
    """Serve OTLP/HTTP and the metrics port until interrupted."""
    ensure_topics(settings)
    producer = AsyncProducer(settings)
    ingestor = SpanIngestor(settings, producer)
    servers = [
        _server(otlp_http_app(ingestor), settings.gateway_host, settings.gateway_http_port),
        _server(observability_app(), "127.0.0.1", settings.gateway_metrics_port),
    ]
    log.info(
        "gateway listening",
        otlp_http=f"{settings.gateway_host}:{settings.gateway_http_port}",
        metrics=f"127.0.0.1:{settings.gateway_metrics_port}",
    )
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        producer.close()


def run_gateway(settings: Settings) -> None:
    asyncio.run(serve_gateway(settings))
