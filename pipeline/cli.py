"""The `spansieve` command line. Every flag is also the SPANSIEVE_<FLAG> variable."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from pipeline.logs import configure_logging
from pipeline.settings import Settings

COMMON = ("state_dir", "log_format", "log_level")
SERVICES = ("kafka_bootstrap", "opensearch_url", "redis_url", "topic_prefix", "partitions")


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
    from pipeline import stack as local_stack

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
@settings_options(*SERVICES)
def stack_up(**overrides: Any) -> None:
    """Start whatever of Kafka, OpenSearch and Redis is not running yet, and wait for it."""
    _stack_call("up", overrides)


@stack.command("down")
@settings_options(*SERVICES)
def stack_down(**overrides: Any) -> None:
    """Stop the services this state directory started (never others)."""
    _stack_call("down", overrides)


@stack.command("status")
@settings_options(*SERVICES)
def stack_status(**overrides: Any) -> None:
    """Show what runs where."""
    _stack_call("status", overrides)


@main.command()
@settings_options(
    *SERVICES, *(name for name in Settings.model_fields if name.startswith("gateway_"))
)
def gateway(**overrides: Any) -> None:
    """OTLP/gRPC on :4317 and OTLP/HTTP on :4318 into Kafka; health and metrics on :8888."""
    from pipeline.gateway.server import GatewayConfigError, run_gateway

    try:
        run_gateway(load_settings(overrides))
    except (GatewayConfigError, ValueError) as exc:
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


@main.command()
@settings_options(
    *SERVICES,
    "worker_roles",
    "worker_web_port",
    "policies",
    "decision_wait",
    "sampling_percentage",
    "tick_interval",
)
def worker(**overrides: Any) -> None:
    """The Faust worker: sampler and sink agents; Faust web with /metrics on :6066."""
    from agents.worker import run_worker

    run_worker(load_settings(overrides))


@main.command()
@settings_options(*SERVICES)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also write JSON here")
@click.option("--seconds", type=float, default=15.0, show_default=True, help="load per transport")
@click.option("--traces", type=int, default=30_000, show_default=True, help="sampler workload")
@click.option("--stages", default="gateway,sampler", show_default=True, help="which stages")
@click.option("--quick", is_flag=True, help="short runs (a few minutes in all)")
def bench(
    json_path: str | None, seconds: float, traces: int, stages: str, quick: bool, **overrides: Any
) -> None:
    """Measure the pipeline's stages on the local stack, next to ceilings from the same run."""
    import tempfile

    from pipeline.bench import report
    from pipeline.bench.gateway import bench_gateway
    from pipeline.bench.sampler import bench_sampler
    from pipeline.stack import stack_up

    settings = load_settings(overrides)
    stack_up(settings)
    wanted = {stage.strip() for stage in stages.split(",")}
    results = {}
    if "gateway" in wanted:
        results["gateway"] = bench_gateway(settings, 5.0 if quick else seconds)
        report.print_gateway(results["gateway"])
    if "sampler" in wanted:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.state_dir, prefix="bench-") as folder:
            results["sampler"] = bench_sampler(
                settings, Path(folder), min(traces, 10_000) if quick else traces
            )
    if json_path:
        report.write_json(Path(json_path), results)
    if "sampler" in results:
        report.print_sampler(results["sampler"])


@main.command()
@settings_options(
    *SERVICES,
    "gateway_http_port",
    "gateway_metrics_port",
    "worker_web_port",
    "decision_wait",
    "sampling_percentage",
)
@click.option("--exit-after-demo", is_flag=True, help="stop the pipeline once the demo is stored")
def run(exit_after_demo: bool, **overrides: Any) -> None:
    """Everything at once: local stack, gateway, worker, and a demo trace you can look up."""
    from pipeline.run import run_everything

    settings = load_settings(overrides)
    sys.exit(run_everything(settings, exit_after_demo=exit_after_demo))
