"""Runs the gateway: OTLP/gRPC, OTLP/HTTP and the health/metrics port in one event loop."""

from __future__ import annotations

import asyncio
import time

import structlog
import uvicorn

from pipeline.config import listen
from pipeline.config.settings import Settings
from pipeline.gateway import metrics
from pipeline.gateway.auth import ApiKeyAuth, load_api_keys
from pipeline.gateway.grpc import build_grpc_server
from pipeline.gateway.http import observability_app, otlp_http_app
from pipeline.gateway.ingest import SpanIngestor
from pipeline.kafka.producer import AsyncProducer
from pipeline.kafka.topics import ensure_topics

log = structlog.get_logger(__name__)

PROBE_INTERVAL = 2.0


def check_exposure(settings: Settings, auth: ApiKeyAuth) -> None:
    """Refuse to listen beyond loopback unprotected unless explicitly allowed."""
    listen.check_exposure(
        "gateway",
        settings.gateway_host,
        authentication="API keys",
        authenticated=auth.enabled,
        cert=settings.gateway_tls_cert,
        key=settings.gateway_tls_key,
        allow_insecure=settings.gateway_allow_insecure,
    )


def _uvicorn(app, host: str, port: int, settings: Settings | None = None) -> uvicorn.Server:
    tls = {}
    if settings is not None:
        tls = listen.uvicorn_tls(
            settings.gateway_tls_cert, settings.gateway_tls_key, settings.gateway_tls_client_ca
        )
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, **tls)
    return uvicorn.Server(config)


def _redactor(settings: Settings):
    if settings.gateway_redaction is None:
        return None
    from pipeline.gateway.redaction import Redactor, load_redaction_config

    return Redactor(load_redaction_config(settings.gateway_redaction))


async def _probe_kafka(producer: AsyncProducer, topic: str) -> None:
    """Keep ``producer.reachable`` current so requests fail fast while Kafka is down.

    Acknowledgements in the last interval prove Kafka reachable; only a quiet producer
    asks for metadata (of the spans topic alone).
    """
    while True:
        if time.monotonic() - producer.last_acked > PROBE_INTERVAL:
            await asyncio.to_thread(producer.probe, 1.0, topic)
        else:
            producer.reachable = True
        await asyncio.sleep(PROBE_INTERVAL)


async def serve_gateway(settings: Settings) -> None:
    """Serve until interrupted."""
    auth = ApiKeyAuth(load_api_keys(settings.gateway_api_keys, settings.gateway_api_keys_file))
    check_exposure(settings, auth)
    redactor = _redactor(settings)
    ensure_topics(settings)
    # librdkafka's own queue is bounded too (its default is 1 GiB); the floor keeps a tiny
    # in-flight cap from turning every request into "queue full".
    queue_kbytes = max(settings.gateway_max_inflight_bytes, 16 * 1024 * 1024) // 1024
    producer = AsyncProducer(settings, **{"queue.buffering.max.kbytes": queue_kbytes})
    ingestor = SpanIngestor(settings, producer, redactor)
    metrics.PRODUCER_QUEUE.set_function(producer.queue_length)
    metrics.INFLIGHT_BYTES.set_function(lambda: ingestor.inflight_bytes)
    grpc_server = build_grpc_server(settings, ingestor, auth)
    await grpc_server.start()
    http_servers = [
        _uvicorn(
            otlp_http_app(settings, ingestor, auth),
            settings.gateway_host,
            settings.gateway_http_port,
            settings,
        ),
        _uvicorn(
            observability_app(lambda: producer.reachable),
            "127.0.0.1",
            settings.gateway_metrics_port,
        ),
    ]
    log.info(
        "gateway listening",
        otlp_grpc=f"{settings.gateway_host}:{settings.gateway_grpc_port}",
        otlp_http=f"{settings.gateway_host}:{settings.gateway_http_port}",
        metrics=f"127.0.0.1:{settings.gateway_metrics_port}",
        api_keys=auth.enabled,
        tls=settings.gateway_tls_cert is not None,
        redaction=redactor is not None,
    )
    prober = asyncio.create_task(_probe_kafka(producer, settings.topic("spans")))
    try:
        await asyncio.gather(*(server.serve() for server in http_servers))
    finally:
        prober.cancel()
        await grpc_server.stop(grace=2)
        ingestor.batcher.flush("shutdown")  # what the last requests left pending
        producer.close()


def run_gateway(settings: Settings) -> None:
    asyncio.run(serve_gateway(settings))
