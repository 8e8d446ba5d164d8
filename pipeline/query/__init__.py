"""`spansieve query`: the Jaeger-compatible HTTP API and the web UI over the trace store.

* ``app``: the Starlette app (routes, metrics); ``params``: query parameters;
* ``search``: OpenSearch request bodies and reads; ``jaeger``: documents -> Jaeger JSON;
* ``skew``: clock-skew correction; ``dependencies``: service calls of a window;
* ``sampling``: Jaeger remote-sampling strategies from the adaptive rates in Redis;
* ``v3``: Jaeger's API v3 (OTLP/JSON traces, trace summaries for the current Jaeger UI);
* ``spm``: Jaeger's Service Performance Monitoring answers from the span-metrics store;
* ``ui/``: the web UI's static files (package data).

This module runs the app with uvicorn next to one AsyncOpenSearch client and one asyncio
Redis client, which it closes on the way out. May import ``config``, ``store`` (field
names, the serializer), Starlette, opensearch-py and redis; never ``sink``, ``shared``
or ``agents``.
"""

from __future__ import annotations

import asyncio
import ipaddress

import structlog
import uvicorn
from opensearchpy import AsyncOpenSearch

from pipeline.config.settings import Settings
from pipeline.query.app import query_app
from pipeline.store.client import OrjsonSerializer
from pipeline.store.indices import store_names

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT = 30.0  # seconds; a dependencies scan of a large window takes a few pages


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve_query(settings: Settings) -> None:
    """Serve until interrupted. The API has no authentication: it listens on loopback
    unless told otherwise (put it behind an authenticating proxy then)."""
    client = AsyncOpenSearch(
        hosts=[settings.opensearch_url],
        timeout=REQUEST_TIMEOUT,
        serializer=OrjsonSerializer(),  # search answers are large; orjson reads them fast
    )
    app = query_app(settings, client)
    config = uvicorn.Config(
        app, host=settings.query_host, port=settings.query_port, log_config=None, access_log=False
    )
    if not _loopback(settings.query_host):
        log.warning(
            "query API listening beyond loopback, unauthenticated", host=settings.query_host
        )
    log.info(
        "query API listening",
        url=f"http://{settings.query_host}:{settings.query_port}/api/services",
        span_alias=store_names(settings).span_alias,
        opensearch=settings.opensearch_url,
        sampling_rates=app.state.rates.pattern,
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await client.close()
        await app.state.rates.close()


def run_query(settings: Settings) -> None:
    asyncio.run(serve_query(settings))
