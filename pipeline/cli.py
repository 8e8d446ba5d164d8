"""The `spansieve` command line. Every flag is also the SPANSIEVE_<FLAG> variable."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from pipeline.config.logs import configure_logging
from pipeline.config.package_data import data_path
from pipeline.config.settings import Settings

COMMON = ("state_dir", "log_format", "log_level")
SERVICES = ("kafka_bootstrap", "opensearch_url", "redis_url", "topic_prefix", "partitions")
# Every command that creates topics takes these (see pipeline.kafka.topics).
REPLICATION = ("kafka_replication_factor", "kafka_min_insync_replicas")

SHIPPED_ESTATE = data_path("pipeline.topologies", "estate-30.yaml")


def settings_options(*fields: str) -> Callable:
    """Click options for the named Settings fields; unset flags fall back to the variables."""

    def decorate(command: Callable) -> Callable:
        for field in reversed((*COMMON, *fields)):
            info = Settings.model_fields[field]
            flag = "--" + field.replace("_", "-")
            env = f"SPANSIEVE_{field.upper()}"
            help_text = f"{info.description} [env {env}; default {info.default}]"
            command = click.option(flag, field, default=None, help=help_text)(command)
        return command

    return decorate


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment, overridden by the flags that were given."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise click.UsageError(f"invalid configuration: {problems}") from None
    configure_logging(settings.log_format, settings.log_level)
    return settings


@click.group()
def main() -> None:
    """spansieve: OTLP in, tail sampling on Kafka + Faust, kept traces in OpenSearch."""


@main.group()
def stack() -> None:
    """The local stack: Kafka, OpenSearch and Redis on 127.0.0.1, no Docker needed."""


def _stack_call(action: str, overrides: dict[str, Any]) -> None:
    from pipeline.local import stack as local_stack

    settings = load_settings(overrides)
    try:
        if action == "up":
            local_stack.stack_up(settings)
            local_stack.print_status(local_stack.stack_status(settings))
        elif action == "down":
            local_stack.stack_down(settings)
        else:
            local_stack.print_status(local_stack.stack_status(settings))
    except local_stack.StackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@stack.command("up")
@settings_options(*SERVICES, "kafka_brokers")
def stack_up(**overrides: Any) -> None:
    """Start whatever of Kafka, OpenSearch and Redis is not running yet, and wait for it."""
    _stack_call("up", overrides)


@stack.command("down")
@settings_options(*SERVICES, "kafka_brokers")
def stack_down(**overrides: Any) -> None:
    """Stop the services this state directory started (never others)."""
    _stack_call("down", overrides)


@stack.command("status")
@settings_options(*SERVICES, "kafka_brokers")
def stack_status(**overrides: Any) -> None:
    """Show what runs where."""
    _stack_call("status", overrides)


@main.command()
@settings_options(
    *SERVICES,
    *REPLICATION,
    *(name for name in Settings.model_fields if name.startswith("gateway_")),
)
def gateway(**overrides: Any) -> None:
    """OTLP/gRPC on :4317 and OTLP/HTTP on :4318 into Kafka; health and metrics on :8888."""
    from pipeline.gateway.server import run_gateway

    try:
        run_gateway(load_settings(overrides))
    except ValueError as exc:  # ExposureError and bad auth or redaction files
        raise click.ClickException(str(exc)) from None


@main.group()
def policies() -> None:
    """Tail-sampling policy files (OpenTelemetry Collector tail_sampling keys)."""


@policies.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policies_check(path: Path) -> None:
    """Validate a policy file (bare, or a collector config); errors name file, line and field."""
    from pipeline.policies.check import check_policy_file
    from pipeline.policies.config import PolicyConfigError

    try:
        click.echo(check_policy_file(path))
    except PolicyConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def store() -> None:
    """The OpenSearch trace store: templates, rollover alias, lifecycle."""


STORE_LAYOUT = (
    "store_index_prefix",
    "store_shards",
    "store_replicas",
    "store_refresh_interval",
    "store_rollover_age",
    "store_rollover_size",
    "store_retention_days",
    "store_lifecycle",
)


@store.command("init")
@settings_options("opensearch_url", *STORE_LAYOUT)
def store_init(**overrides: Any) -> None:
    """Install index templates, the rollover alias and the lifecycle (idempotent)."""
    from opensearchpy import OpenSearch
    from opensearchpy.exceptions import OpenSearchException

    from pipeline.store.lifecycle import LifecycleError
    from pipeline.store.setup import ensure_store

    settings = load_settings(overrides)
    try:
        state = ensure_store(OpenSearch(hosts=[settings.opensearch_url]), settings)
    except (LifecycleError, OpenSearchException) as exc:
        raise click.ClickException(f"{settings.opensearch_url}: {exc}") from None
    lifecycle = (
        "ISM policy" if state.lifecycle == "ism" else "the worker (no ISM plugin on this node)"
    )
    click.echo(f"span alias   {state.span_alias} -> {state.write_index}")
    click.echo(f"service map  {state.service_map_index}")
    click.echo(f"codec        {state.codec}")
    click.echo(
        f"lifecycle    {lifecycle}: roll over at {settings.store_rollover_age} or "
        f"{settings.store_rollover_size}, delete {settings.store_retention_days:g} days "
        "after the last write"
    )
    if state.created:
        click.echo("created the first span index")
    if state.upgraded:
        click.echo("rolled the alias over to apply a newer mapping")


@main.command()
@settings_options(
    *SERVICES,
    *REPLICATION,
    "worker_roles",
    "worker_web_port",
    "worker_shutdown_timeout",
    "worker_log_repeat_interval",
    "policies",
    "decision_wait",
    "sampling_percentage",
    "tick_interval",
    "span_metrics",
    "span_metrics_window",
    "span_metrics_dimensions",
    "span_metrics_max_series_per_service",
    "span_metrics_grace",
)
def worker(**overrides: Any) -> None:
    """The Faust worker: sampler and sink agents; Faust web with /metrics on :6066."""
    from agents.worker import run_worker
    from pipeline.kafka.topics import ReplicationError

    try:
        run_worker(load_settings(overrides))
    except ReplicationError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@settings_options(
    "opensearch_url",
    "store_index_prefix",
    "redis_url",
    "topic_prefix",
    "query_host",
    "query_port",
    "query_max_traces",
    "query_max_clock_skew",
    "query_dependencies_max_spans",
    "query_log_links",
    "query_logs_index",
    "query_max_logs",
    "query_roles",
    "query_tokens_file",
    "query_trusted_proxies",
    "query_proxy_user_header",
    "query_proxy_groups_header",
    "query_tls_cert",
    "query_tls_key",
    "query_tls_client_ca",
    "query_allow_insecure",
)
def query(**overrides: Any) -> None:
    """Jaeger-compatible query API on :16686 (/api/services, /api/traces, ...) over the store;
    /api/sampling serves the adaptive policies' rates (Redis, keys under topic_prefix)."""
    from pipeline.query import run_query

    try:
        run_query(load_settings(overrides))
    except ValueError as exc:  # ExposureError, a bad roles or tokens file (ConfigError)
        raise click.ClickException(str(exc)) from None


def _loadgen_option(*names: str, **kwargs: Any) -> Callable:
    """A loadgen flag that is also the variable SPANSIEVE_LOADGEN_<FLAG>."""
    env = "SPANSIEVE_LOADGEN_" + names[0].lstrip("-").replace("-", "_").upper()
    return click.option(*names, envvar=env, show_envvar=True, **kwargs)


@main.command()
@settings_options("gateway_host", "gateway_http_port", "gateway_grpc_port", "gateway_api_keys")
@_loadgen_option(
    "--topology",
    type=click.Path(dir_okay=False, path_type=Path),
    default=SHIPPED_ESTATE,
    show_default="topologies/estate-30.yaml",
    help="topology YAML to play",
)
@_loadgen_option("--rate", type=float, default=1000.0, show_default=True, help="spans per second")
@_loadgen_option("--duration", default="60s", show_default=True, help='"90s", "5m" or seconds')
@_loadgen_option("--seed", type=int, default=1, show_default=True, help="same seed, same traces")
@_loadgen_option(
    "--mode",
    type=click.Choice(["protobuf", "sdk"]),
    default="protobuf",
    show_default=True,
    help="pre-built requests (fast) or the OpenTelemetry SDK's exporter (realistic)",
)
@_loadgen_option(
    "--transport", type=click.Choice(["http", "grpc"]), default="http", show_default=True
)
@_loadgen_option("--endpoint", help="gateway URL, or host:port for gRPC [default: from settings]")
@_loadgen_option("--burst-multiplier", type=float, help="rate multiplier of the burst")
@_loadgen_option("--burst-at", help="burst start into the run, e.g. 30s")
@_loadgen_option("--burst-duration", help="burst length, e.g. 60s")
@_loadgen_option("--no-burst", is_flag=True, help="ignore the topology's burst")
@_loadgen_option(
    "--concurrency",
    type=int,
    default=10,
    show_default=True,
    help="parallel senders (10: an OpenTelemetry Collector exporter's default sending queue)",
)
@_loadgen_option(
    "--max-retry", type=float, default=30.0, show_default=True, help="seconds to retry a request"
)
@_loadgen_option(
    "--summary",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write ground truth here (JSON: counters, error trace ids, every trace sent)",
)
@_loadgen_option("--check", is_flag=True, help="validate the topology, describe it, send nothing")
@_loadgen_option("--quiet", is_flag=True, help="no progress bar")
def loadgen(
    topology: Path,
    rate: float,
    duration: str,
    seed: int,
    mode: str,
    transport: str,
    endpoint: str | None,
    burst_multiplier: float | None,
    burst_at: str | None,
    burst_duration: str | None,
    no_burst: bool,
    concurrency: int,
    max_retry: float,
    summary: Path | None,
    check: bool,
    quiet: bool,
    **overrides: Any,
) -> None:
    """Play a synthetic microservice estate against the gateway at a paced rate."""
    from pipeline.loadgen import TopologyError, load_topology, run_loadgen
    from pipeline.loadgen.report import (
        describe_topology,
        print_result,
        resolve_burst,
        run_seconds,
    )

    settings = load_settings(overrides)
    try:
        estate = load_topology(topology)
    except TopologyError as exc:
        raise click.ClickException(str(exc)) from None
    if check:
        click.echo(describe_topology(estate, seed))
        return
    try:
        seconds = run_seconds(duration)
        burst = resolve_burst(
            estate.burst, no_burst, burst_multiplier, burst_at, burst_duration, seconds
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if rate <= 0 or concurrency < 1:
        raise click.UsageError("--rate must be positive and --concurrency at least 1")
    result = run_loadgen(
        endpoint or settings,
        estate,
        rate,
        seconds,
        seed=seed,
        mode=mode,  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        burst=burst,
        concurrency=concurrency,
        progress=not quiet,
        max_retry_seconds=max_retry,
    )
    if summary is not None:
        result.write_summary(summary)
    print_result(result, summary)
    if result.spans_sent == 0 or result.failed_requests or result.rejected_spans:
        sys.exit(1)


@main.command()
@settings_options(*SERVICES, "kafka_brokers", *REPLICATION)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also write JSON here")
@click.option("--seconds", type=float, default=15.0, show_default=True, help="load per transport")
@click.option("--traces", type=int, default=30_000, show_default=True, help="sampler workload")
@click.option(
    "--stages",
    default="gateway,sampler,sink,query,e2e,metrics",
    show_default=True,
    help="which stages; also peer: the OpenTelemetry Collector's tail sampler beside ours "
    "(built from the Go module proxy on first use)",
)
@click.option("--quick", is_flag=True, help="short runs (about 3 minutes in all)")
def bench(
    json_path: str | None, seconds: float, traces: int, stages: str, quick: bool, **overrides: Any
) -> None:
    """Measure the pipeline's stages on the local stack, next to ceilings from the same run."""
    from pipeline.bench import report
    from pipeline.bench.suite import STAGES, BenchPlan, run_bench
    from pipeline.local.stack import stack_up

    wanted = {stage.strip() for stage in stages.split(",") if stage.strip()}
    unknown = sorted(wanted - set(STAGES))
    if unknown:
        raise click.UsageError(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    settings = load_settings(overrides)
    stack_up(settings)
    results = run_bench(settings, wanted, BenchPlan.of(quick, seconds, traces))
    if json_path:
        report.write_json(Path(json_path), results)
    report.print_summary(results)


@main.command()
@settings_options(
    *SERVICES,
    "kafka_brokers",
    *REPLICATION,
    "gateway_http_port",
    "gateway_metrics_port",
    "worker_web_port",
    "decision_wait",
    "sampling_percentage",
)
@click.option("--exit-after-demo", is_flag=True, help="stop the pipeline once the demo is stored")
def run(exit_after_demo: bool, **overrides: Any) -> None:
    """Everything at once: local stack, gateway, worker, and a demo trace you can look up."""
    from pipeline.kafka.topics import ReplicationError
    from pipeline.local.run import run_everything

    settings = load_settings(overrides)
    try:
        sys.exit(run_everything(settings, exit_after_demo=exit_after_demo))
    except ReplicationError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def metrics() -> None:
    """Span metrics the workers publish (span_metrics on): RED per service."""


@metrics.command("top")
@settings_options("kafka_bootstrap", "topic_prefix")
@click.option(
    "--sort",
    type=click.Choice(["rate", "errors", "p99", "name"]),
    default="rate",
    show_default=True,
    help="order of the rows (errors: by error %)",
)
@click.option(
    "--window",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="seconds to look back, and event-time span of the figures",
)
@click.option("--once", is_flag=True, help="read for --duration seconds, print one table, exit")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="with --once: seconds to read",
)
def metrics_top(sort: str, window: float, once: bool, duration: float, **overrides: Any) -> None:
    """Rate, error % and p50/p95/p99 latency per service from the red-metrics topic."""
    from pipeline.local.metrics_top import MetricsTopError, run_top

    settings = load_settings(overrides)
    try:
        run_top(settings, sort=sort, window=window, once=once, duration=duration)
    except MetricsTopError as exc:
        raise click.ClickException(str(exc)) from None
