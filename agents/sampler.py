"""Sampler agent: Faust wiring around ``pipeline.sampler.TraceSampler``.

The agent reads the spans topic in batches and hands each event's bytes to the sampler;
a timer on the group leader sends the once-a-second ticks; a revoked partition is
forgotten and its buffer database closed. Kafka, the storage and the re-read of a
taken-over partition are passed to the sampler here, so the sampler itself runs without
them in unit tests: the buffer's pieces go to rocksdict databases of their own
(``pipeline.sampler.storage``, under ``<datadir>/<app id>/trace-pieces``), the decision
cache to the ``trace-decisions`` Faust table (its changelog restores it on takeover).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import faust
import structlog
from prometheus_client import REGISTRY

from agents.topics import TableStore, raw_table, raw_topic
from pipeline.config.settings import Settings
from pipeline.kafka.replay import read_range
from pipeline.metrics.prometheus import SpanMetricsCollector
from pipeline.sampler import metrics as sampler_metrics
from pipeline.sampler.buffer import TraceBuffer
from pipeline.sampler.core import TICK_KEY, TraceSampler, cache_entries
from pipeline.sampler.decisions import DecisionCache
from pipeline.sampler.policy_source import PolicySource, seconds
from pipeline.sampler.span_metrics import KIND_RED, KIND_SERVICE_GRAPH, KIND_SERVICE_MAP
from pipeline.sampler.storage import RdictPartitions
from pipeline.shared.lazy import LazySharedState
from pipeline.wire.metrics_json import CONTENT_TYPE_HEADER, CONTENT_TYPES
from pipeline.wire.pieces import header_of

log = structlog.get_logger(__name__)

BATCH_EVENTS = 500
BATCH_SECONDS = 0.05
AGENT_FAILED_EXIT_CODE = 70


class FaustEvents:
    """Turns Faust events of the spans topic into the sampler's calls."""

    def __init__(self, sampler: TraceSampler) -> None:
        self.sampler = sampler

    async def on_event(self, event) -> None:
        """One event of the spans topic: a tick or a message of spans."""
        message = event.message
        if event.key == TICK_KEY:
            await self.sampler.on_tick(message.partition, message.timestamp, message.offset)
        else:
            await self.sampler.on_spans(
                message.partition,
                event.value,
                header_of(message.headers),
                message.timestamp,
                message.offset,
            )


async def feed(
    sampler: FaustEvents,
    batches: AsyncIterator[list],
    exit_process: Callable[[int], object] = os._exit,
) -> None:
    """Hand batches of events to the sampler; exit the process if handling one fails.

    Faust would restart a failed agent in place, over half-applied state. Exiting makes
    the consumer group hand the partitions on and replay from the last commit instead.
    """
    try:
        async for events in batches:
            for event in events:
                await sampler.on_event(event)
    except Exception:
        log.exception("sampler agent failed; exiting so that a restart replays safely")
        exit_process(AGENT_FAILED_EXIT_CODE)


def pieces_folder(app: faust.App) -> Path:
    """Where the trace buffer's databases live: beside Faust's, namespaced by the app."""
    return Path(app.conf.datadir) / app.conf.id / "trace-pieces"


def replay_gap(start: int, log_start: int) -> None:
    """Retention deleted spans a takeover had to re-read (read_range logs it)."""
    sampler_metrics.REPLAY_GAP_OFFSETS.inc(log_start - start)


def build_sampler(app: faust.App, settings: Settings, pieces: RdictPartitions) -> TraceSampler:
    """The sampler over ``pieces`` and the decisions table, with Kafka topics as outputs."""
    sampled_topic = raw_topic(app, settings, "sampled")
    dlq_topic = raw_topic(app, settings, "dlq")
    metrics_topics = {
        KIND_RED: raw_topic(app, settings, "red-metrics"),
        KIND_SERVICE_GRAPH: raw_topic(app, settings, "service-graph"),
        KIND_SERVICE_MAP: raw_topic(app, settings, "service-map"),
    }
    # Shared with the other workers through Redis, for policies that pool state.
    policies = PolicySource(settings, LazySharedState(settings.redis_url, settings.topic_prefix))

    async def send_kept(partition: int, trace_id: bytes, value: bytes):
        return await sampled_topic.send(key=trace_id, value=value, partition=partition)

    async def send_dead_letter(value: bytes, reason: str):
        return await dlq_topic.send(value=value, headers={"reason": reason.encode()})

    content_types = {
        KIND_RED: CONTENT_TYPES[settings.span_metrics_encoding].encode(),
        KIND_SERVICE_GRAPH: CONTENT_TYPES[settings.span_metrics_encoding].encode(),
        KIND_SERVICE_MAP: b"application/json",
    }

    async def send_metrics(partition: int, kind: str, key: bytes, value: bytes):
        # Same partition as the spans: a window's key names its partition and start.
        return await metrics_topics[kind].send(
            key=key,
            value=value,
            partition=partition,
            headers={CONTENT_TYPE_HEADER: content_types[kind]},
        )

    return TraceSampler(
        settings,
        policies,
        TraceBuffer(pieces),
        DecisionCache(
            TableStore(raw_table(app, "trace-decisions", settings.partitions)),
            ttl=seconds(policies.config.decision_cache_ttl),
            max_entries=cache_entries(policies.config),
        ),
        send_kept,
        send_dead_letter,
        functools.partial(read_range, settings, settings.topic("spans"), on_gap=replay_gap),
        send_metrics=send_metrics,
    )


def register_sampler(app: faust.App, settings: Settings) -> None:
    spans_topic = raw_topic(app, settings, "spans")
    pieces = RdictPartitions(pieces_folder(app))
    sampler = build_sampler(app, settings, pieces)
    REGISTRY.register(sampler_metrics.AdaptiveCollector(lambda: sampler.policies.engine))
    if sampler.span_metrics is not None:  # cumulative series on the worker's /metrics
        collector = SpanMetricsCollector()
        REGISTRY.register(collector)
        sampler.span_metrics.expose(collector)
    events = FaustEvents(sampler)

    @app.agent(spans_topic, name="sampler")
    async def sample(stream: faust.Stream) -> None:
        # Batches cut Faust's per-event cost; every write names its partition explicitly,
        # so events of several partitions may share a batch.
        try:
            await feed(events, stream.take_events(BATCH_EVENTS, within=BATCH_SECONDS))
        finally:
            # The worker stops its agents before it exits: nothing writes pieces after
            # this. Pieces still in an uncommitted write batch are re-read by the next
            # owner from the low-water offset.
            pieces.close_all()

    @app.timer(settings.tick_interval, on_leader=True)
    async def ticks() -> None:
        for partition in range(settings.partitions):
            await spans_topic.send(key=TICK_KEY, value=b"", partition=partition)

    @app.task
    async def watch_sighup() -> None:
        sampler.policies.install_sighup(asyncio.get_running_loop())

    @app.on_partitions_revoked.connect
    async def on_revoked(_app, revoked, **_kwargs) -> None:
        topic = spans_topic.get_topic_name()
        for tp in revoked:
            if tp.topic == topic:
                sampler.forget(tp.partition)
                pieces.close(tp.partition)  # reopened if the partition comes back
