"""``spansieve metrics top``: a live per-service table of the red-metrics topic.

Reads ``<prefix>-red-metrics`` (the sampler's closed RED windows, OTLP delta messages)
with a consumer of its own: a throwaway group id, partitions assigned by hand (no group
join, nothing committed), each starting at the first message produced at or after
``now - window`` (``offsets_for_times``; the end when there is none). Messages go into a
:class:`pipeline.metrics.summary.RedSummary` spanning the last ``window`` seconds of event
time, and a ``rich`` table (rate, error %, p50/p95/p99 per service) is redrawn every
second. ``once``: read for ``duration`` seconds, print one table, return.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline.config.settings import Settings
from pipeline.metrics.summary import NANOS, SORT_KEYS, RedSummary, ServiceSummary

REFRESH_SECONDS = 1.0
POLL_SECONDS = 0.2
BATCH = 500
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_ONCE_SECONDS = 5.0
#: Width of the table when the output is not a terminal (scripts, tests, pipes).
PIPE_WIDTH = 160
#: What the number columns take at most, borders and padding included (room for names).
NUMBER_COLUMNS_WIDTH = 64


class MetricsTopError(Exception):
    """The topic cannot be read (Kafka unreachable, topic missing)."""


def make_consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"spansieve-metrics-top-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
    )


def assign_since(consumer: Consumer, topic: str, since_ms: int, timeout: float = 10.0) -> int:
    """Assign every partition of ``topic`` from its first message at or after ``since_ms``.

    Returns the number of partitions; raises MetricsTopError when the topic is missing.
    """
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise MetricsTopError(f"cannot read the topic list: {exc}") from None
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise MetricsTopError(
            f"topic {topic} does not exist (is a worker running with span metrics on?)"
        )
    wanted = [TopicPartition(topic, p, since_ms) for p in sorted(info.partitions)]
    try:
        found = consumer.offsets_for_times(wanted, timeout=timeout)
    except KafkaException as exc:
        raise MetricsTopError(f"cannot look up offsets of {topic}: {exc}") from None
    # offset -1: no message at or after that time; start at the end (new windows only).
    start = [
        TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
        for tp in found
    ]
    consumer.assign(start)
    return len(start)


def drain(consumer: Consumer, summary: RedSummary, timeout: float = POLL_SECONDS) -> int:
    """One poll: feed what arrived into the summary; the number of messages read."""
    messages = consumer.consume(BATCH, timeout=timeout)
    for message in messages:
        if message.error() is None:
            summary.add_message(message.value(), message.key())
    return len(messages)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _error_cell(row: ServiceSummary) -> str:
    text = f"{row.error_pct:.1f}%"
    if row.error_pct >= 5:
        return f"[bold red]{text}[/]"
    if row.error_pct >= 1:
        return f"[yellow]{text}[/]"
    return text


def render_table(
    summary: RedSummary, sort: str, topic: str, span_seconds: float, width: int | None = None
) -> Table:
    """The summary as a table, sorted by ``sort``, with what it covers as its caption.

    ``width``: the console's; service names longer than the room left get an ellipsis.
    """
    rows = summary.summaries(sort)
    marks = {key: " ▼" if key == sort else "" for key in SORT_KEYS}
    table = Table(
        title=f"spansieve metrics top · {topic}", title_justify="left", caption_justify="left"
    )
    # Numbers never wrap nor shrink below their header; a long service name gets an ellipsis.
    room = max(12, width - NUMBER_COLUMNS_WIDTH) if width else None
    table.add_column(
        "service" + marks["name"], no_wrap=True, overflow="ellipsis", min_width=12, max_width=room
    )
    for header in (
        "rate/s" + marks["rate"],
        "calls",
        "err",
        "err %" + marks["errors"],
        "p50 ms",
        "p95 ms",
        "p99 ms" + marks["p99"],
    ):
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for row in rows:
        table.add_row(
            row.service,
            f"{row.rate:.2f}",
            str(row.calls),
            str(row.errors),
            _error_cell(row),
            _ms(row.p50_ms),
            _ms(row.p95_ms),
            _ms(row.p99_ms),
        )
    newest = summary.newest_end_unix_nanos
    if newest is None:
        table.caption = f"no RED windows yet (looking back {span_seconds:g}s)"
    else:
        end = datetime.fromtimestamp(newest / NANOS, UTC).strftime("%H:%M:%S")
        lag = max(0.0, time.time() - newest / NANOS)
        table.caption = (
            f"{len(rows)} services · {summary.covered_seconds:g}s of event time in "
            f"{summary.windows} windows (span {span_seconds:g}s) · newest window ends "
            f"{end} UTC ({lag:.0f}s ago) · sorted by {sort}"
        )
    return table


def run_top(
    settings: Settings,
    sort: str = "rate",
    window: float = DEFAULT_WINDOW_SECONDS,
    once: bool = False,
    duration: float = DEFAULT_ONCE_SECONDS,
    console: Console | None = None,
) -> RedSummary:
    """Show the table (live, until Ctrl-C; or once after ``duration`` seconds).

    Returns the summary it showed last. Raises MetricsTopError when the topic cannot be read.
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; expected one of {', '.join(SORT_KEYS)}")
    if window <= 0 or duration <= 0:
        raise ValueError("window and duration must be positive")
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=PIPE_WIDTH)
    topic = settings.topic("red-metrics")
    summary = RedSummary(span_seconds=window)
    consumer = make_consumer(settings)
    try:
        assign_since(consumer, topic, int((time.time() - window) * 1000))
        if once:
            deadline = time.monotonic() + duration
            while time.monotonic() < deadline:
                drain(consumer, summary, min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            console.print(render_table(summary, sort, topic, window, console.width))
            return summary
        with Live(
            render_table(summary, sort, topic, window, console.width),
            console=console,
            auto_refresh=False,
        ) as live:
            try:
                next_draw = time.monotonic() + REFRESH_SECONDS
                while True:
                    drain(consumer, summary)
                    if time.monotonic() >= next_draw:
                        live.update(
                            render_table(summary, sort, topic, window, console.width), refresh=True
                        )
                        next_draw = time.monotonic() + REFRESH_SECONDS
            except KeyboardInterrupt:
                pass
        return summary
    finally:
        consumer.close()
