"""All configuration in one place: SPANSIEVE_* environment variables, overridable by CLI flags.

Every field here is one environment variable (``SPANSIEVE_<FIELD>``) and, where a command
uses it, one ``--<field>`` flag of that command (see ``pipeline.cli``).
"""

from __future__ import annotations

import json
import string
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TOPIC_NAMES = ("spans", "sampled", "red-metrics", "service-graph", "service-map", "dlq")
SPAN_ALIAS = "otel-v1-apm-span"
SERVICE_MAP_INDEX = "otel-v1-apm-service-map"
#: What a log link's url may hold: ids as hex, the span's service, the trace's window as
#: ISO-8601 UTC (milliseconds) and as ms since the epoch (``pipeline.query.correlation``).
LOG_LINK_PLACEHOLDERS = ("trace_id", "span_id", "service", "start", "end", "start_ms", "end_ms")


class LogLink(BaseModel):
    """A link from a trace or span to an outside log viewer, its url a template.

    Checked at startup, so a typo in a placeholder is a configuration error rather than a
    link that silently leads nowhere; only http(s) or same-server paths, so a configured
    ``javascript:`` url can never run in the UI.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="the link's label in the UI")
    url: str = Field(min_length=1, description="url template, placeholders in braces")

    @model_validator(mode="after")
    def _known_placeholders(self) -> LogLink:
        where = f"query_log_links: link {self.name!r}"
        try:
            parts = list(string.Formatter().parse(self.url))
        except ValueError as exc:
            raise ValueError(f"{where} has a malformed url template: {exc}") from None
        allowed = ", ".join(f"{{{name}}}" for name in LOG_LINK_PLACEHOLDERS)
        for _text, field, spec, conversion in parts:
            if field is None:
                continue
            if field not in LOG_LINK_PLACEHOLDERS or spec or conversion:
                shown = field + (f"!{conversion}" if conversion else "")
                shown += f":{spec}" if spec else ""
                raise ValueError(
                    f"{where} has an unknown placeholder {{{shown}}} in its url; "
                    f"use {allowed} (write {{{{ and }}}} for literal braces)"
                )
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in ("http", "https") and not (not scheme and self.url.startswith("/")):
            raise ValueError(f"{where}: the url must be http(s):// or a path starting with /")
        return self


class Settings(BaseSettings):
    """The product's settings; defaults match the local stack."""

    model_config = SettingsConfigDict(env_prefix="SPANSIEVE_", extra="ignore")

    state_dir: Path = Field(Path(".spansieve"), description="data, logs and pid files")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: readable on a terminal, JSON otherwise"
    )
    log_level: str = Field("info", description="debug, info, warning or error")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="brokers of the local stack's Kafka (`stack up`); above 1, one bootstrap "
        "server is expanded to every local broker (ports 9092, 9094, 9096, ...)",
    )
    kafka_replication_factor: int = Field(
        1, ge=1, description="replication factor of every topic spansieve creates"
    )
    kafka_min_insync_replicas: int = Field(
        1,
        ge=1,
        description="min.insync.replicas of every topic spansieve creates (acks=all writes "
        "need this many replicas in sync)",
    )
    opensearch_url: str = Field("http://127.0.0.1:9200", description="OpenSearch base URL")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL")

    topic_prefix: str = Field("spansieve", description="prefix of every Kafka topic")
    partitions: int = Field(8, ge=1, description="partitions of the span topics")

    gateway_host: str = Field("127.0.0.1", description="address the gateway listens on")
    gateway_http_port: int = Field(4318, description="OTLP/HTTP port")
    gateway_grpc_port: int = Field(4317, description="OTLP/gRPC port")
    gateway_metrics_port: int = Field(8888, description="gateway /healthz and /metrics port")
    gateway_allow_insecure: bool = Field(
        False, description="allow listening beyond loopback without API keys or TLS"
    )
    gateway_api_keys: str = Field(
        "", description="comma-separated API keys (empty: authentication off)"
    )
    gateway_api_keys_file: Path | None = Field(
        None, description="file of API keys, one per line: KEY [service,service...]"
    )
    gateway_tls_cert: Path | None = Field(None, description="PEM server certificate (TLS)")
    gateway_tls_key: Path | None = Field(None, description="PEM private key of the certificate")
    gateway_tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle: require client certificates signed by it (mTLS)"
    )
    gateway_redaction: Path | None = Field(
        None, description="PII redaction YAML (collector redaction processor keys)"
    )
    gateway_max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="largest request body as sent (compressed)"
    )
    gateway_max_decompressed_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="largest request body after gzip inflation"
    )
    gateway_max_spans_per_request: int = Field(
        100_000, gt=0, description="largest number of spans in one export request"
    )
    gateway_max_inflight_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="cap on request bytes awaiting Kafka acks"
    )
    gateway_ack_timeout: float = Field(
        1.0, gt=0, description="seconds to wait for Kafka's ack before a retryable error"
    )
    gateway_linger: float = Field(
        0.1,
        ge=0,
        le=1,
        description="seconds the gateway collects concurrent requests' spans before it "
        "sends them to Kafka, one message per partition (added to each request's latency)",
    )
    gateway_batch_max_bytes: int = Field(
        512 * 1024,
        gt=0,
        le=900_000,
        description="a partition's batched message is sent before the linger ends once "
        "it would outgrow this (Kafka's default message limit is about 1 MB)",
    )

    worker_web_port: int = Field(6066, description="Faust web port with /metrics")
    worker_roles: str = Field("sampler,sink", description="comma-separated agents to run")
    worker_shutdown_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds a stopping worker (SIGTERM/SIGINT) gets to finish cleanly before "
        "it exits anyway; nothing is lost (offsets are committed only after processing)",
    )
    worker_log_repeat_interval: float = Field(
        30.0,
        gt=0,
        description="while Kafka is unreachable, repeat a reminder at most this often "
        "instead of one line per failed client attempt",
    )
    query_host: str = Field("127.0.0.1", description="address the query API listens on")
    query_port: int = Field(16686, description="query API and web UI port")
    query_max_traces: int = Field(
        1500, gt=0, description="most traces one search returns (a larger limit is lowered)"
    )
    query_max_clock_skew: float = Field(
        5.0,
        ge=0,
        description="largest clock-skew correction (seconds) applied to a trace's spans; 0: none",
    )
    query_dependencies_max_spans: int = Field(
        200_000, gt=0, description="most spans /api/dependencies reads (whole traces, then stop)"
    )
    query_log_links: Annotated[list[LogLink], NoDecode] = Field(
        [],
        description=(
            'links from a trace or span to a log viewer, as JSON: [{"name": "Logs", "url": '
            '"https://logs.example/?q={trace_id}&from={start}"}]; placeholders {trace_id}, '
            "{span_id}, {service}, {start}, {end} (ISO-8601 UTC), {start_ms}, {end_ms}"
        ),
    )
    query_logs_index: str = Field(
        "logs-otel-v1*",
        description=(
            "index pattern of OpenTelemetry log records as Data Prepper writes them, listed "
            "beside a trace (no store_index_prefix); empty: no inline logs"
        ),
    )
    query_max_logs: int = Field(
        1000, gt=0, le=10_000, description="most log records listed for one trace"
    )
    query_roles: Path | None = Field(
        None, description="RBAC roles YAML: services and actions per role (unset: RBAC off)"
    )
    query_tokens_file: Path | None = Field(
        None, description="bearer tokens, one per line: TOKEN NAME ROLE[,ROLE...] (RBAC)"
    )
    query_trusted_proxies: str = Field(
        "",
        description="comma-separated addresses or CIDR blocks whose proxy user and groups "
        "headers are believed (single sign-on behind a reverse proxy)",
    )
    query_proxy_user_header: str = Field(
        "X-Forwarded-User", description="header a trusted proxy names the user in"
    )
    query_proxy_groups_header: str = Field(
        "X-Forwarded-Groups", description="header a trusted proxy lists the groups in (commas)"
    )
    query_tls_cert: Path | None = Field(None, description="PEM server certificate (TLS)")
    query_tls_key: Path | None = Field(None, description="PEM private key of the certificate")
    query_tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle: require client certificates signed by it (mTLS)"
    )
    query_allow_insecure: bool = Field(
        False, description="allow listening beyond loopback without RBAC or TLS"
    )

    policies: Path | None = Field(None, description="sampling policy YAML file")
    decision_wait: float = Field(
        30.0, gt=0, description="seconds after a trace's last span before deciding"
    )
    sampling_percentage: float = Field(
        0.0, ge=0, le=100, description="share of error-free traces kept (skeleton policy)"
    )
    tick_interval: float = Field(1.0, gt=0, description="seconds between decision sweeps")
    sampler_max_buffered_bytes: int = Field(
        1024**3, gt=0, description="span bytes a worker buffers before deciding early"
    )
    span_metrics: bool = Field(
        False,
        description=(
            "count RED metrics and service-graph edges over every span (off by default: "
            "the per-span cost is not yet within issue 12's 15 % budget)"
        ),
    )
    span_metrics_window: float = Field(
        15.0, gt=0, description="seconds of event time (span end) per span-metrics window"
    )
    span_metrics_dimensions: str = Field(
        "", description="extra RED dimensions: comma-separated attribute names, name=default"
    )
    span_metrics_max_series_per_service: int = Field(
        1000, ge=1, description="RED series per service and window before the overflow series"
    )
    span_metrics_grace: float = Field(
        5.0, ge=0, description="seconds after decision_wait before a span-metrics window closes"
    )
    span_metrics_encoding: Literal["protobuf", "json"] = Field(
        "protobuf",
        description=(
            "value encoding of the red-metrics and service-graph messages: OTLP protobuf "
            "(an OpenTelemetry Collector kafka receiver reads it with encoding otlp_proto) "
            "or OTLP/JSON (encoding otlp_json); see docs/metrics-topics.md"
        ),
    )

    store_index_prefix: str = Field(
        "", description="prefix of the span alias and service-map index (tests, tenants)"
    )
    store_shards: int = Field(1, ge=1, description="primary shards per span index")
    store_replicas: int = Field(0, ge=0, description="replicas per span index (production: 1)")
    store_refresh_interval: str = Field("5s", description="span index refresh interval")
    store_rollover_age: str = Field("1d", description="roll the span alias over at this age")
    store_rollover_size: str = Field(
        "50gb", description="... or when its primary shards reach this size"
    )
    store_retention_days: float = Field(
        7.0, gt=0, description="delete span indices this long after their last write"
    )
    store_lifecycle: Literal["auto", "ism", "worker"] = Field(
        "auto", description="who rolls over and deletes: ISM plugin, the worker, or auto-detect"
    )
    store_lifecycle_interval: float = Field(
        60.0, gt=0, description="seconds between the worker's rollover/retention checks"
    )
    store_batch_traces: int = Field(500, gt=0, description="kept traces per sink batch")
    store_bulk_bytes: int = Field(
        4 * 1024**2, gt=0, description="largest _bulk request body the sink sends"
    )
    store_bulk_concurrency: int = Field(2, gt=0, description="_bulk requests in flight")
    store_batches_in_flight: int = Field(
        2, gt=0, description="sink batches indexed at once (building overlaps indexing)"
    )
    store_request_timeout: float = Field(
        30.0, gt=0, description="seconds before a _bulk request is retried"
    )
    store_max_backoff: float = Field(
        10.0, gt=0, description="longest pause between retries while OpenSearch fails"
    )
    metrics_retention_days: int = Field(
        90,
        gt=0,
        description=(
            "delete a monthly span-metrics index once its newest possible window is this "
            "many days old"
        ),
    )

    @field_validator("query_log_links", mode="before")
    @classmethod
    def _log_links_json(cls, value: Any) -> Any:
        """The variable and the ``--query-log-links`` flag both hold JSON text; decoding it
        here (not in the settings source) makes bad JSON a validation error naming the
        field, as any other bad value is."""
        if not isinstance(value, str | bytes):
            return value
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"query_log_links is not JSON: {exc}") from None

    @field_validator("query_logs_index")
    @classmethod
    def _strip_index(cls, value: str) -> str:
        return value.strip()

    def topic(self, name: str) -> str:
        """Full Kafka topic name for one of TOPIC_NAMES."""
        if name not in TOPIC_NAMES:
            raise ValueError(f"unknown topic {name!r}; expected one of {TOPIC_NAMES}")
        return f"{self.topic_prefix}-{name}"

    @model_validator(mode="after")
    def _bootstrap_lists_every_local_broker(self) -> Settings:
        """A local multi-broker stack is reached through all its brokers, so clients
        still bootstrap while the first one is down."""
        servers = [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]
        if self.kafka_brokers > 1 and len(servers) == 1:
            host, port = servers[0].rsplit(":", 1)
            self.kafka_bootstrap = ",".join(
                f"{host}:{int(port) + 2 * i}" for i in range(self.kafka_brokers)
            )
        return self

    @cached_property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @cached_property
    def opensearch_port(self) -> int:
        return urlsplit(self.opensearch_url).port or 9200

    @cached_property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379
