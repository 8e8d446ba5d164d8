"""Prints benchmark results as a table and writes them as JSON."""

from __future__ import annotations

import platform
from pathlib import Path

import orjson
import psutil
from rich.console import Console
from rich.table import Table


def machine() -> dict:
    return {
        "cpu_count": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_gateway(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="gateway (512-span requests into real Kafka)")
    for column in ("measure", "value", "note"):
        table.add_column(column)
    ceiling = result["parse_ceiling_spans_per_s"]
    table.add_row("raw protobuf parse", f"{ceiling:,.0f} spans/s", "ceiling, one core")
    produce = result["kafka_produce_ceiling_spans_per_s"]
    table.add_row("raw Kafka produce", f"{produce:,.0f} spans/s", "ceiling, confluent-kafka")
    for transport in ("http", "grpc"):
        stage = result.get(transport)
        if not stage:
            continue
        table.add_row(
            f"OTLP/{transport.upper()} per gateway core",
            f"{stage['spans_per_core_s']:,.0f} spans/s",
            f"{stage['ratio_to_parse_ceiling']:.2f} x parse ceiling; "
            f"{stage['spans_per_s_wall']:,.0f} spans/s wall; {stage['requests_refused']} refused",
        )
    breakdown = result["breakdown_us_per_span"]
    table.add_row(
        "hot path per span",
        " / ".join(f"{value:.2f}" for value in breakdown.values()) + " µs",
        "parse / validate+regroup / serialize",
    )
    console.print(table)


def print_sampler(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="sampler (one worker process, ~10 spans/trace, ~1 % kept)")
    for column in ("measure", "value", "note"):
        table.add_column(column)
    ceiling = result["kafka_consume_ceiling_spans_per_s"]
    table.add_row("raw Kafka consume", f"{ceiling:,.0f} spans/s", "ceiling, confluent-kafka")
    table.add_row(
        "sampler per worker core",
        f"{result['spans_per_core_s']:,.0f} spans/s",
        f"{result['ratio_to_consume_ceiling']:.3f} x consume ceiling; "
        f"{result['spans']:,} spans in {result['wall_s']:.1f} s wall",
    )
    table.add_row(
        "kept traces",
        f"{result['kept_traces']:,.0f} of {result['traces']:,}",
        f"{result['error_traces']} carry an error",
    )
    table.add_row(
        "decision latency p99",
        f"<= {result['decision_latency_p99_s']:g} s",
        f"first span to decision; decision_wait {result['decision_wait_s']:g} s; "
        "histogram bucket bound",
    )
    table.add_row(
        "RSS per buffered span",
        f"{result['rss_bytes_per_buffered_span']:,.0f} bytes",
        f"{result['buffered_spans']:,} spans buffered; "
        f"{result['rss_marginal_bytes_per_span']:,.0f} bytes per added span",
    )
    console.print(table)


def write_json(path: Path, results: dict) -> None:
    path.write_bytes(orjson.dumps({"machine": machine(), **results}, option=orjson.OPT_INDENT_2))
