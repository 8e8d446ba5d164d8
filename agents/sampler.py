"""Sampler agent: buffer spans per trace, decide decision_wait after the last span.

Decisions run when a tick message reaches a partition (see ``ticks``): the tick is an event
of that partition, so the buffer's table deletes go to the right changelog partition.
"""

from __future__ import annotations

import faust
import structlog

from agents import metrics
from agents.buffer import TraceBuffer
from agents.topics import raw_topic
from pipeline.otlp import TracesData, regroup_spans, summarize_trace
from pipeline.sampling import decide
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

TICK_KEY = b"\x00spansieve-tick"


def register_sampler(app: faust.App, settings: Settings) -> None:
    spans_topic = raw_topic(app, settings, "spans")
    sampled_topic = raw_topic(app, settings, "sampled")
    buffer = TraceBuffer(app, settings.partitions)

    @app.agent(spans_topic, name="sampler")
    async def sampler(stream: faust.Stream) -> None:
        async for event in stream.events():
            partition = event.message.partition
            if event.key == TICK_KEY:
                await decide_due(partition)
                continue
            data = TracesData.FromString(event.value)
            for trace_id, piece in regroup_spans(data.resource_spans, _trace_id).items():
                summary = summarize_trace(piece)
                buffer.append(partition, trace_id, piece.SerializeToString(), summary)
                metrics.SPANS_BUFFERED.inc(summary.span_count)

    async def decide_due(partition: int) -> None:
        for trace_id in buffer.due(partition, settings.decision_wait):
            taken = buffer.take(partition, trace_id)
            if taken is None:
                continue
            buffered, spans = taken
            keep, policy = decide(trace_id, buffered.as_summary(), settings.sampling_percentage)
            metrics.TRACES_DECIDED.labels("sampled" if keep else "not_sampled", policy).inc()
            if keep:
                await sampled_topic.send(key=trace_id, value=spans, partition=partition)
                log.debug("trace kept", trace_id=trace_id.hex(), policy=policy)
        metrics.TRACES_IN_BUFFER.set(buffer.buffered_traces())

    @app.timer(settings.tick_interval, on_leader=True)
    async def ticks() -> None:
        for partition in range(settings.partitions):
            await spans_topic.send(key=TICK_KEY, value=b"", partition=partition)

    @app.on_partitions_revoked.connect
    async def on_revoked(_app, revoked, **_kwargs) -> None:
        topic = spans_topic.get_topic_name()
        buffer.forget_partitions({tp.partition for tp in revoked if tp.topic == topic})


def _trace_id(span) -> bytes:
    return span.trace_id
