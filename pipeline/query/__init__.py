"""`spansieve query`: the Jaeger-compatible HTTP API and the web UI over the trace store.

* ``app``: the Starlette app (routes, metrics); ``params``: query parameters;
* ``conditions``: the ``where`` search parameter (OR, regexes, negation, numeric and
  trace-level comparisons) and its OpenSearch filters;
* ``search``: OpenSearch request bodies and reads; ``jaeger``: documents -> Jaeger JSON;
* ``skew``: clock-skew correction; ``dependencies``: service calls of a window;
* ``sampling``: Jaeger remote-sampling strategies from the adaptive rates in Redis;
* ``v3``: Jaeger's API v3 (OTLP/JSON traces, trace summaries for the current Jaeger UI);
* ``spm``: Jaeger's Service Performance Monitoring answers from the span-metrics store;
* ``correlation``: logs and metrics beside a trace (log links, its log records from Data
  Prepper's log indices, exemplar traces of the span metrics);
* ``rbac/``: who may see which services' traces (roles, tokens, proxy SSO, audit);
* ``ui/``: the web UI's static files (package data).

This module runs the app with uvicorn next to one AsyncOpenSearch client and one asyncio
Redis client, which it closes on the way out. May import ``config``, ``store`` (field
names, the serializer), Starlette, opensearch-py and redis; never ``sink``, ``shared``
or ``agents``.
"""

from __future__ import annotations

import asyncio

import structlog
import uvicorn
from opensearchpy import AsyncOpenSearch

from pipeline.config import listen
from pipeline.config.settings import Settings
from pipeline.query.app import query_app
from pipeline.store.client import OrjsonSerializer
from pipeline.store.indices import store_names

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT = 30.0  # seconds; a dependencies scan of a large window takes a few pages


async def serve_query(settings: Settings) -> None:
    """Serve until interrupted. Beyond loopback it needs RBAC (``query_roles``) and TLS,
    unless ``query_allow_insecure`` says otherwise."""
    listen.check_exposure(
        "query",
        settings.query_host,
        authentication="RBAC roles",
        authenticated=settings.query_roles is not None,
        cert=settings.query_tls_cert,
        key=settings.query_tls_key,
        allow_insecure=settings.query_allow_insecure,
    )
    client = AsyncOpenSearch(
        hosts=[settings.opensearch_url],
        timeout=REQUEST_TIMEOUT,
        serializer=OrjsonSerializer(),  # search answers are large; orjson reads them fast
    )
    app = query_app(settings, client)
    tls = listen.uvicorn_tls(
        settings.query_tls_cert, settings.query_tls_key, settings.query_tls_client_ca
    )
    config = uvicorn.Config(
        app,
        host=settings.query_host,
        port=settings.query_port,
        log_config=None,
        access_log=False,
        **tls,
    )
    scheme = "https" if tls else "http"
    log.info(
        "query API listening",
        url=f"{scheme}://{settings.query_host}:{settings.query_port}/api/services",
        rbac=app.state.authenticator is not None,
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
