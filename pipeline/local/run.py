"""`spansieve run`: the whole pipeline on the local stack, with a demo trace to look at."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
from opensearchpy import OpenSearch
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.demo import SERVICES, send_demo_trace
from pipeline.local.stack import StackError, print_status, stack_status, stack_up
from pipeline.store.indices import store_names, trace_span_count

console = Console(stderr=True, soft_wrap=True)  # URLs must stay on one line


DEMO_RATE = 1_000  # spans/s of demo traffic while `spansieve run` lasts
DEMO_SECONDS = 7 * 86_400.0


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; a common default
    elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port free on the loopback interface right now (for private test services).

    Chosen at random below the kernel's ephemeral range: a port the kernel hands out (bind
    to port 0) is one it may also give any outgoing connection, a Kafka client's say,
    before the service that is to listen on it has started.
    """
    low, _high = _ephemeral_range()
    candidates = range(max(1024, low - 12000), low)
    for _ in range(200):
        port = random.choice(candidates)
        if port_is_free(port):
            return port
    with socket.socket() as sock:  # that whole range taken: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a TCP port on the loopback interface can be bound right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> bool:
    """Poll check() with a spinner until it is true or timeout seconds passed."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        progress.add_task(what)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return True
            except Exception:
                pass
            time.sleep(0.5)
    return False


def _answers(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code < 500


def start_component(name: str, settings: Settings) -> subprocess.Popen:
    """Start `spansieve <name>` in the background, its JSON log in the state directory."""
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = (log_dir / f"{name}.log").open("ab")
    env = {**os.environ, **_settings_env(settings), "SPANSIEVE_LOG_FORMAT": "json"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", name], stdout=log_file, stderr=log_file, env=env
    )


def _settings_env(settings: Settings) -> dict[str, str]:
    """The settings as SPANSIEVE_* variables, so children see the flags given to `run`;
    lists and mappings (``query_log_links``) as JSON, which is how settings read them."""
    values = settings.model_dump(mode="json", exclude_none=True)
    return {f"SPANSIEVE_{key.upper()}": _env_text(value) for key, value in values.items()}


def _env_text(value: object) -> str:
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


def stop_components(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def run_everything(settings: Settings, exit_after_demo: bool = False) -> int:
    """Stack up, gateway, worker and query API up, demo trace through; returns an exit
    status. Span metrics are on unless SPANSIEVE_SPAN_METRICS says otherwise: the demo
    shows what they give."""
    if "span_metrics" not in settings.model_fields_set:
        settings = settings.model_copy(update={"span_metrics": True})
    try:
        stack_up(settings)
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    print_status(stack_status(settings))
    ensure_topics(settings)
    children = [
        start_component("gateway", settings),
        start_component("worker", settings),
        start_component("query", settings),
    ]
    logs = Path(settings.state_dir / "logs").resolve()
    stop_traffic = None
    try:
        gateway_health = f"http://127.0.0.1:{settings.gateway_metrics_port}/healthz"
        worker_web = f"http://127.0.0.1:{settings.worker_web_port}/"
        query_api = f"http://127.0.0.1:{settings.query_port}"
        if not (
            wait_until(lambda: _answers(gateway_health), "gateway starting", 60)
            and wait_until(lambda: _answers(worker_web), "worker starting", 120)
            and wait_until(lambda: _answers(f"{query_api}/healthz"), "query API starting", 60)
        ):
            console.print(f"[red]error:[/] gateway, worker or query API did not start; see {logs}")
            return 1
        gateway_http = f"http://127.0.0.1:{settings.gateway_http_port}"
        trace_id = send_demo_trace(gateway_http)
        console.print(f"demo trace [bold]{trace_id}[/] sent over {', '.join(SERVICES)}")
        client = OpenSearch(hosts=[settings.opensearch_url])
        span_alias = store_names(settings).span_alias  # honours SPANSIEVE_STORE_INDEX_PREFIX
        stored = wait_until(
            lambda: trace_span_count(client, trace_id, span_alias) >= 5,
            f"waiting for the tail-sampling decision (decision_wait={settings.decision_wait}s)"
            " and indexing",
            settings.decision_wait + 90,
        )
        if not stored:
            console.print(f"[red]error:[/] demo trace not in OpenSearch in time; see {logs}")
            return 1
        url = f"{settings.opensearch_url}/{span_alias}/_search?q=traceId:{trace_id}&pretty"
        console.print("[green]stored.[/] All 5 spans are in OpenSearch:")
        console.print(f"  curl '{url}'")
        console.print(f"On a timeline in the web UI: {query_api}/trace/{trace_id}")
        console.print("Through the Jaeger-compatible query API:")
        console.print(f"  curl '{query_api}/api/traces/{trace_id}'")
        console.print(f"  (Grafana's Jaeger data source or a Jaeger UI: point it at {query_api})")
        console.print(f"Send your own OTLP/HTTP traces to {gateway_http}/v1/traces.")
        console.print(
            f"Logs: {logs}   Metrics: http://127.0.0.1:{settings.gateway_metrics_port}"
            f"/metrics, {worker_web}metrics, {query_api}/metrics"
        )
        if exit_after_demo:
            return 0
        stop_traffic = start_demo_traffic(settings)
        search = f"{settings.opensearch_url}/{span_alias}/_search"
        console.print(
            f"Demo traffic: the 30-service estate at {DEMO_RATE:,} spans/s "
            "(topologies/estate-30.yaml); kept error traces, for example:\n"
            f"  curl '{search}?q=traceFields.error:true&size=3&pretty'\n"
            f"  curl '{query_api}/api/traces?tag=error:true&limit=3'"
        )
        if settings.span_metrics:
            metrics_index = f"{settings.store_index_prefix}spansieve-metrics-*"
            console.print(
                "Span metrics (RED and service graph of every span, kept or dropped), "
                f"~{settings.decision_wait + settings.span_metrics_window:.0f} s behind:\n"
                "  spansieve metrics top\n"
                f"  curl -H 'Accept: application/openmetrics-text' {worker_web}metrics\n"
                f"  curl '{settings.opensearch_url}/{metrics_index}/_search?size=3&pretty'"
            )
        console.print("Pipeline running; Ctrl-C stops it (`spansieve stack down` stops the stack).")
        while all(child.poll() is None for child in children):
            time.sleep(1)
        console.print(f"[red]a component exited; see {logs}[/]")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if stop_traffic is not None:
            stop_traffic.set()
        stop_components(children)


def start_demo_traffic(settings: Settings) -> threading.Event:
    """Play the shipped estate at a modest rate until the returned event is set."""
    from pipeline.loadgen import run_loadgen

    stop = threading.Event()
    threading.Thread(
        target=run_loadgen,
        args=(settings,),
        kwargs={"rate": DEMO_RATE, "duration": DEMO_SECONDS, "stop": stop},
        name="demo-traffic",
        daemon=True,
    ).start()
    return stop
