"""The Faust app factory: one worker process runs the agents its roles name."""

from __future__ import annotations

import faust
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from agents.memory import register_memory_trim
from agents.sampler import register_sampler
from agents.state import STORE_URL, app_tables_dir
from agents.transport import Transport
from pipeline.config.settings import Settings

# aiohttp refuses a charset inside content_type, so not prometheus_client.CONTENT_TYPE_LATEST
# (nor openmetrics.exposition.CONTENT_TYPE_LATEST); both formats are UTF-8 by definition.
PROMETHEUS_TEXT = "text/plain; version=0.0.4"
OPENMETRICS_TEXT = "application/openmetrics-text; version=1.0.0"


def register_sink(app: faust.App, settings: Settings) -> None:
    """The sink role, imported only when a worker runs it: its OpenSearch client and
    HTTP libraries cost a sampler-only worker 12 MiB of RSS."""
    from agents.sink import register_sink as register

    register(app, settings)


ROLES = {"sampler": register_sampler, "sink": register_sink}


def create_app(settings: Settings) -> faust.App:
    """Build the worker app for the configured roles (e.g. "sampler,sink")."""
    roles = [role.strip() for role in settings.worker_roles.split(",") if role.strip()]
    unknown = sorted(set(roles) - ROLES.keys())
    if unknown:
        raise ValueError(f"unknown worker roles {unknown}; choose from {sorted(ROLES)}")
    datadir = (settings.state_dir / "worker").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    # Each app (topic prefix) its own folder: tables here, trace pieces beside them.
    tabledir = app_tables_dir(datadir, f"{settings.topic_prefix}-worker")
    brokers = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(","))
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=brokers,
        store=STORE_URL,  # RocksDB, healed when ahead of Kafka (agents.state)
        datadir=str(datadir),
        tabledir=str(tabledir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_in_thread=False,
        # A killed worker's partitions move after this long (Faust's default is 60 s).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        # Bound what waits in memory between Kafka and the agents (Faust's defaults queue
        # 4096 events and fetch 4 MiB per partition): a backlog stays in Kafka instead.
        stream_buffer_maxsize=256,
        consumer_max_fetch_size=1024**2,
    )

    # Fetches that wait for 256 KiB or 250 ms (see agents.transport).
    app.transport = Transport(app.conf.broker_consumer, app)

    @app.page("/metrics")
    async def prometheus(web, request):
        # OpenMetrics (the only format with exemplars) when the scraper asks for it, as
        # Prometheus does by default; the classic text format otherwise.
        accept = request.headers.get("Accept", "")
        media_types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
        # ?name[]=...: only those series, as prometheus_client's own handler allows; a
        # poller that needs one counter then does not render every span-metric series.
        names = request.query.getall("name[]", [])
        registry = REGISTRY.restricted_registry(names) if names else REGISTRY
        if "application/openmetrics-text" in media_types:
            return web.bytes(generate_openmetrics(registry), content_type=OPENMETRICS_TEXT)
        return web.bytes(generate_latest(registry), content_type=PROMETHEUS_TEXT)

    register_memory_trim(app)
    for role in roles:
        ROLES[role](app, settings)
    return app
