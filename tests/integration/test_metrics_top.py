"""`spansieve metrics top --once` against real Kafka: RED windows encoded by the real
aggregator and encoder, produced to a private red-metrics topic, read back as a table."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Producer
from rich.console import Console

from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.metrics_top import MetricsTopError, run_top
from pipeline.metrics.otlp import encode_red_windows
from pipeline.metrics.red import RedAggregator, RedConfig
from tests.unit.metrics.spans import span, tid, trace

pytestmark = pytest.mark.integration

S = 1_000_000_000
MS = 1_000_000
WINDOW = 15 * S


def window_message(start: int, services: dict[str, tuple[int, int, float]]) -> bytes:
    """One closed 15 s window: per service (calls, errors, duration ms of every span)."""
    agg = RedAggregator(RedConfig(window_seconds=15))
    n = 0
    for service, (calls, errors, ms) in services.items():
        for i in range(calls):
            n += 1
            end = start + S + n * MS
            rs = span(
                service,
                "GET /",
                "server",
                end - int(ms * MS),
                end,
                status="error" if i < errors else "ok",
                span_id=n.to_bytes(8, "big"),
            )
            agg.add_trace(trace(rs), tid(n), True)
    (window,) = agg.close(start + WINDOW)
    assert window.start_unix_nanos == start
    return encode_red_windows([window]).SerializeToString()


def key(partition: int, start: int) -> bytes:
    return partition.to_bytes(4, "big") + start.to_bytes(8, "big")


@pytest.fixture(scope="module")
def topic_settings(stack: Settings, tmp_path_factory) -> Settings:
    """A private prefix whose red-metrics topic holds two windows of two services."""
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("metrics-top"),
        topic_prefix=f"top-{uuid.uuid4().hex[:8]}",
        partitions=2,
    )
    topic = settings.topic("red-metrics")
    ensure_topics(settings, [topic])
    now_ns = time.time_ns()
    w1 = now_ns - now_ns % WINDOW - 3 * WINDOW
    w2 = w1 + WINDOW
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    # The same window, but produced ten minutes ago by its timestamp: before the look-back,
    # so never read (it would add 1000 failed calls to checkout).
    stale = window_message(w1, {"checkout": (1000, 1000, 5.0)})
    old_ms = int(time.time() * 1000) - 600_000
    producer.produce(topic, stale, key(0, w1), partition=0, timestamp=old_ms)
    first = window_message(w1, {"checkout": (10, 2, 3.0), "inventory": (5, 0, 30.0)})
    producer.produce(topic, first, key(0, w1), partition=0)
    producer.produce(topic, first, key(0, w1), partition=0)  # redelivered: counted once
    second = window_message(w1, {"checkout": (10, 0, 3.0)})  # same window, other partition
    producer.produce(topic, second, key(1, w1), partition=1)
    third = window_message(w2, {"inventory": (5, 5, 120.0)})
    producer.produce(topic, third, key(1, w2), partition=1)
    assert producer.flush(30) == 0
    return settings


def table_rows(text: str) -> dict[str, list[str]]:
    """service -> its cells, from a rendered rich table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in ("checkout", "inventory"):
            rows[cells[0]] = cells
    return rows


def test_once_prints_both_services_sorted_by_errors(topic_settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANSIEVE_")}
    finished = subprocess.run(
        [
            sys.executable, "-m", "pipeline", "metrics", "top", "--once", "--duration", "4",
            "--sort", "errors",
            "--topic-prefix", topic_settings.topic_prefix,
            "--kafka-bootstrap", topic_settings.kafka_bootstrap,
            "--state-dir", str(topic_settings.state_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    out = finished.stdout
    rows = table_rows(out)
    assert set(rows) == {"checkout", "inventory"}, out
    # columns: service, rate/s, calls, errors, error %, p50, p95, p99
    # 30 s of event time (two windows): checkout 20 calls (2 errors), inventory 10 (5)
    assert rows["checkout"][1:5] == ["0.67", "20", "2", "10.0%"], out
    assert rows["inventory"][1:5] == ["0.33", "10", "5", "50.0%"], out
    # checkout: every span 3 ms, in (2, 4]: p50 = 2 + 2 * 10/20
    assert rows["checkout"][5] == "3.00", out
    # inventory: 5 in (10, 50], 5 in (100, 200]: p50 = 50 (rank 5), p99 = 100 + 100 * 4.9/5
    assert rows["inventory"][5] == "50.0" and rows["inventory"][7] == "198.0", out
    ordered = [line for line in out.splitlines() if "checkout" in line or "inventory" in line]
    assert "inventory" in ordered[0], out  # 50 % errors before 10 %
    assert "30s of event time in 2 windows" in out


def test_run_top_in_process_sorted_by_name(topic_settings: Settings) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False)
    summary = run_top(
        topic_settings, sort="name", window=120, once=True, duration=3, console=console
    )
    assert summary.duplicates == 1
    assert summary.windows == 2
    rows = {r.service: r for r in summary.summaries("name")}
    assert (rows["checkout"].calls, rows["checkout"].errors) == (20, 2)
    assert (rows["inventory"].calls, rows["inventory"].errors) == (10, 5)
    text = buffer.getvalue()
    assert text.index("checkout") < text.index("inventory")


def test_missing_topic_is_an_error(stack: Settings) -> None:
    settings = Settings(topic_prefix=f"absent-{uuid.uuid4().hex[:8]}")
    with pytest.raises(MetricsTopError, match="does not exist"):
        run_top(settings, once=True, duration=1, console=Console(file=io.StringIO()))
