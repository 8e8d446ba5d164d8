"""Sampler agent: buffer spans per trace, decide whole traces with the YAML policies.

Every event of the spans topic is either a piece of some traces (an OTLP ``TracesData``
written by the gateway) or a tick. A tick reaches each partition once a second; its owner
then decides the partition's due traces. Handling decisions as events of the owning
partition keeps every table write on the right changelog partition and makes a worker
that lost a partition stop deciding for it at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Container

import faust
import structlog
from confluent_kafka import Consumer, TopicPartition

from agents import metrics
from agents.buffer import TraceBuffer
from agents.decisions import CachedDecision, DecisionCache, TableStore
from agents.policy_source import PolicySource, seconds
from agents.topics import raw_table, raw_topic
from pipeline.otlp import DecodeError, TracesData, count_spans, regroup_spans
from pipeline.pieces import PiecesError, header_of, iter_pieces
from pipeline.policies.trace import TraceView
from pipeline.settings import Settings

log = structlog.get_logger(__name__)

TICK_KEY = b"\x00spansieve-tick"
POLICY_ATTRIBUTE = "sampling.policy"
DEFAULT_CACHE_ENTRIES = 200_000
REPLAY_IDLE_POLLS = 10  # a takeover's replay gives up after this many empty one-second polls
BATCH_EVENTS = 500
BATCH_SECONDS = 0.05
AGENT_FAILED_EXIT_CODE = 70


Piece = tuple[bytes, bytes, int, bool]  # trace id, TracesData bytes, span count, has root


def tag_spans(data: TracesData, policy: str) -> None:
    """Record on every span which policy kept its trace."""
    for resource_spans in data.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.attributes.add(key=POLICY_ATTRIBUTE).value.string_value = policy


class TraceSampler:
    """The sampler's state and logic; the Faust agent feeds it events."""

    def __init__(self, app: faust.App, settings: Settings, sampled_topic, dlq_topic) -> None:
        self.settings = settings
        self.policies = PolicySource(settings)
        self.buffer = TraceBuffer(app, settings.partitions)
        self.cache = DecisionCache(
            TableStore(raw_table(app, "trace-decisions", settings.partitions)),
            ttl=seconds(self.policies.config.decision_cache_ttl),
            max_entries=self._cache_entries(),
        )
        self.sampled_topic = sampled_topic
        self.dlq_topic = dlq_topic
        self._low_water: dict[int, int] = {}  # last saved, per partition
        self._pending_sends: dict[int, list] = {}  # kept traces not yet acknowledged

    def _cache_entries(self) -> int:
        cache = self.policies.config.decision_cache
        configured = (cache.sampled_cache_size or 0) + (cache.non_sampled_cache_size or 0)
        return configured or DEFAULT_CACHE_ENTRIES

    async def _ensure_adopted(self, partition: int, now: float, offset: int) -> None:
        """On the first event of a partition: index its buffer, replay what only Kafka has."""
        if self.buffer.index(partition) is not None:
            return
        decided = self.cache.adopt(partition, now)
        index = self.buffer.adopt(partition, now, skip=decided)
        start = self.cache.low_water(partition)
        if start is not None and start < offset:
            await self._replay(partition, start, offset, decided)
        low_water = index.low_water()
        self._save_low_water(partition, offset if low_water is None else low_water)
        metrics.PARTITIONS_ADOPTED.inc()
        metrics.TRACES_RECOVERED.inc(len(index.traces))
        if index.traces:
            log.info("partition adopted", partition=partition, traces=len(index.traces))

    async def _replay(
        self, partition: int, start: int, end: int, decided: Container[bytes]
    ) -> None:
        """Re-read spans of offsets [start, end) that were buffered by the previous owner."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": f"{self.settings.topic_prefix}-replay",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(self.settings.topic("spans"), partition, start)])
        position, idle_polls, replayed = start, 0, 0
        try:
            while position < end and idle_polls < REPLAY_IDLE_POLLS:
                messages = await asyncio.to_thread(consumer.consume, 500, 1.0)
                idle_polls = 0 if messages else idle_polls + 1
                for message in messages:
                    if message.error() or message.offset() >= end:
                        position = end if not message.error() else position
                        continue
                    position = message.offset() + 1
                    if message.key() == TICK_KEY or not message.value():
                        continue
                    stamp = message.timestamp()[1] / 1000
                    try:
                        pieces = self._pieces(message.value(), header_of(message.headers()))
                    except DecodeError:
                        continue  # the live consumer sent it to the DLQ the first time
                    buffered, _late = self._buffer_pieces(
                        partition, pieces, stamp, message.offset(), decided
                    )
                    replayed += buffered
                self.buffer.commit(partition)
        finally:
            consumer.close()
        metrics.SPANS_REPLAYED.inc(replayed)
        log.info("spans replayed", partition=partition, start=start, end=end, spans=replayed)

    def _save_low_water(self, partition: int, offset: int) -> None:
        if self._low_water.get(partition) != offset:
            self.cache.save_low_water(partition, offset)
            self._low_water[partition] = offset

    def forget(self, partition: int) -> None:
        self.buffer.forget(partition)
        self.cache.forget(partition)
        self._low_water.pop(partition, None)

    def _pieces(self, raw: bytes, header: bytes | None) -> list[Piece]:
        """A message's per-trace pieces: sliced by the gateway's header, else parsed.

        Parsing (raises DecodeError) covers messages from producers other than our
        gateway and headers that do not match their value.
        """
        if header is not None:
            try:
                return list(iter_pieces(raw, header))
            except PiecesError as exc:
                metrics.MALFORMED_MESSAGES.inc()
                log.warning("pieces header ignored; parsing the message", error=str(exc))
        roots: set[bytes] = set()

        def trace_of(span) -> bytes:
            if not span.parent_span_id:
                roots.add(span.trace_id)
            return span.trace_id

        data = TracesData.FromString(raw)
        return [
            (trace_id, piece.SerializeToString(), count_spans(piece), trace_id in roots)
            for trace_id, piece in regroup_spans(data.resource_spans, trace_of).items()
        ]

    def _buffer_pieces(
        self, partition: int, pieces: list[Piece], now: float, offset: int, decided
    ) -> tuple[int, list[Piece]]:
        """Append a message's pieces to the buffer, except for traces in ``decided``.

        Returns the span count buffered and the pieces of the decided traces.
        """
        buffered = 0
        late: list[Piece] = []
        append = self.buffer.append
        size_limit = self.policies.config.maximum_trace_size_bytes or None
        for piece in pieces:
            trace_id, spans_bytes, spans, has_root = piece
            if trace_id in decided:
                late.append(piece)
                continue
            state = append(partition, trace_id, spans_bytes, spans, has_root, now, offset)
            buffered += spans
            if size_limit is not None and state.size > size_limit:
                self._drop_oversized(partition, trace_id, now)
        return buffered, late

    def _drop_oversized(self, partition: int, trace_id: bytes, now: float) -> None:
        """A trace over maximum_trace_size_bytes is dropped at once, as the collector does.

        The decision is cached, so the trace's later spans are dropped on arrival.
        """
        if self.buffer.take(partition, trace_id) is None:
            return
        metrics.TRACES_OVERSIZED.inc()
        metrics.TRACES_DECIDED.labels("not_sampled", "").inc()
        self.cache.remember(partition, trace_id, CachedDecision(now, False, ""))

    async def on_spans(
        self, partition: int, raw: bytes, header: bytes | None, now: float, offset: int
    ) -> None:
        """Buffer a message's spans; ``now`` is its Kafka timestamp (see ``on_tick``)."""
        await self._ensure_adopted(partition, now, offset)
        try:
            pieces = self._pieces(raw, header)
        except DecodeError as exc:
            # Not written by our gateway: park it on the DLQ instead of crash-looping.
            metrics.MALFORMED_MESSAGES.inc()
            log.error("malformed message on the spans topic", partition=partition, error=str(exc))
            await self.dlq_topic.send(value=raw, headers={"reason": f"malformed: {exc}".encode()})
            return
        buffered, late = self._buffer_pieces(
            partition, pieces, now, offset, self.cache.decided_ids(partition)
        )
        metrics.SPANS_RECEIVED.inc(buffered)
        for trace_id, spans_bytes, spans, _root in late:
            cached = self.cache.lookup(partition, trace_id)
            if cached is not None:
                await self._late(partition, trace_id, spans_bytes, spans, cached)
        await self._relieve_overflow(partition, now)
        self.buffer.commit(partition)

    async def _late(
        self, partition: int, trace_id: bytes, spans_bytes: bytes, spans: int, cached
    ) -> None:
        """Spans of an already decided trace follow its decision at once."""
        metrics.SPANS_RECEIVED.inc(spans)
        metrics.LATE_SPANS.labels("sampled" if cached.sampled else "not_sampled").inc(spans)
        if cached.sampled:
            piece = TracesData.FromString(spans_bytes)
            tag_spans(piece, cached.policy)
            sent = await self.sampled_topic.send(
                key=trace_id, value=piece.SerializeToString(), partition=partition
            )
            self._pending_sends.setdefault(partition, []).append(sent)

    async def _relieve_overflow(self, partition: int, now: float) -> None:
        """Over num_traces or the byte cap: decide this partition's oldest traces early."""
        traces, size = self.buffer.counts()
        excess = traces - self.policies.config.num_traces
        if size > self.settings.sampler_max_buffered_bytes:
            excess = max(excess, 1 + traces // 100)
        if excess <= 0:
            return
        for trace_id in self.buffer.oldest(partition, excess):
            metrics.EARLY_DECISIONS.inc()
            await self.decide(partition, trace_id, now)

    async def on_tick(self, partition: int, now: float, offset: int) -> None:
        """Decide the partition's due traces.

        Time is event time: the Kafka timestamps of the partition's own messages (set by
        the broker, LogAppendTime), ticks included. A worker catching up on a backlog
        therefore sees traces go quiet as they did when they were sent, and does not split
        them because it reads them late.
        """
        await self._ensure_adopted(partition, now, offset)
        self.policies.maybe_reload()
        due = self.buffer.due(
            partition,
            now,
            self.policies.decision_wait,
            self.policies.root_wait,
            self.policies.max_age,
        )
        for trace_id in due:
            await self.decide(partition, trace_id, now)
        self.buffer.commit(partition)
        self.cache.flush(partition)
        # Kept traces must be in Kafka before the low-water mark passes their spans.
        pending = self._pending_sends.pop(partition, [])
        if pending:
            await asyncio.gather(*pending)
        low_water = self.buffer.index(partition).low_water()
        self._save_low_water(partition, offset + 1 if low_water is None else low_water)
        self.cache.expire(partition, now)
        traces, size = self.buffer.counts()
        metrics.TRACES_BUFFERED.set(traces)
        metrics.BYTES_BUFFERED.set(size)
        metrics.DECISIONS_CACHED.set(self.cache.size())

    async def on_event(self, event) -> None:
        """One event of the spans topic: a tick or a message of spans."""
        message = event.message
        if event.key == TICK_KEY:
            await self.on_tick(message.partition, message.timestamp, message.offset)
        else:
            await self.on_spans(
                message.partition,
                event.value,
                header_of(message.headers),
                message.timestamp,
                message.offset,
            )

    async def decide(self, partition: int, trace_id: bytes, now: float) -> None:
        taken = self.buffer.take(partition, trace_id)
        if taken is None:
            return
        state, spans = taken
        data = TracesData.FromString(spans)
        verdict = self.policies.engine.evaluate(TraceView(data, trace_id, len(spans)))
        for policy, decision in verdict.per_policy.items():
            metrics.POLICY_DECISIONS.labels(policy, decision.value).inc()
        policy = verdict.policy or ""
        outcome = "sampled" if verdict.sampled else "not_sampled"
        metrics.TRACES_DECIDED.labels(outcome, policy if verdict.sampled else "").inc()
        metrics.DECISION_LATENCY.observe(max(0.0, time.time() - state.first_seen))
        self.cache.remember(partition, trace_id, CachedDecision(now, verdict.sampled, policy))
        if verdict.sampled:
            tag_spans(data, policy)
            sent = await self.sampled_topic.send(
                key=trace_id, value=data.SerializeToString(), partition=partition
            )
            self._pending_sends.setdefault(partition, []).append(sent)


async def feed(
    sampler: TraceSampler,
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


def register_sampler(app: faust.App, settings: Settings) -> None:
    spans_topic = raw_topic(app, settings, "spans")
    sampler = TraceSampler(
        app, settings, raw_topic(app, settings, "sampled"), raw_topic(app, settings, "dlq")
    )

    @app.agent(spans_topic, name="sampler")
    async def sample(stream: faust.Stream) -> None:
        # Batches cut Faust's per-event cost; every write names its partition explicitly,
        # so events of several partitions may share a batch.
        await feed(sampler, stream.take_events(BATCH_EVENTS, within=BATCH_SECONDS))

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
