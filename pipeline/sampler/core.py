"""The sampler: buffer spans per trace, decide whole traces with the YAML policies.

Every event of the spans topic is either a piece of some traces (an OTLP ``TracesData``
written by the gateway) or a tick. A tick reaches each partition once a second; its owner
then decides the partition's due traces. Handling decisions as events of the owning
partition keeps every table write on the right changelog partition and makes a worker
that lost a partition stop deciding for it at once.

The sampler owns no I/O of its own: its caller hands it the storage (a RocksDB database
per partition for the buffer, ``storage.RdictPartitions``, and one with a changelog for
the decision cache, ``decisions.PartitionStore``), the clock, and the ways out (send a
kept trace, park a malformed message, re-read a range of the spans topic). The Faust agent
in ``agents/sampler.py`` passes Kafka and, for the decisions, a Faust table; unit tests
(``tests/unit/sampler``) pass rocksdict databases in a temporary folder and lists.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container
from itertools import chain
from time import thread_time

import structlog

from pipeline.config.settings import Settings
from pipeline.policies.trace import TraceView
from pipeline.sampler import metrics
from pipeline.sampler.buffer import TraceBuffer, TraceState
from pipeline.sampler.decisions import CachedDecision, DecisionCache, ReplayMark
from pipeline.sampler.policy_source import PolicySource
from pipeline.sampler.span_metrics import SpanMetrics
from pipeline.wire.otlp import DecodeError, TracesData, count_spans, regroup_spans
from pipeline.wire.pieces import PiecesError, Services, iter_pieces

log = structlog.get_logger(__name__)

TICK_KEY = b"\x00spansieve-tick"
POLICY_ATTRIBUTE = "sampling.policy"
DEFAULT_CACHE_ENTRIES = 200_000  # decision cache entries when the policy file sets no size
# A replay mark is saved at least this often (event time) while only ticks arrive.
MARK_REFRESH_SECONDS = 60.0


# trace id, TracesData bytes, span count, has root, its ResourceSpans' services (or None)
Piece = tuple[bytes, bytes, int, bool, Services | None]
# A message re-read from the spans topic: offset, key, value, timestamp (s), pieces header.
Replayed = tuple[int, bytes | None, bytes | None, float, bytes | None]
# Reads offsets [start, end) of a partition of the spans topic, in batches.
ReplaySource = Callable[[int, int, int], AsyncIterator[list[Replayed]]]
# Sends a kept trace (partition, trace id, TracesData bytes); the awaitable it returns
# settles once Kafka acknowledged the message.
SendKept = Callable[[int, bytes, bytes], Awaitable[Awaitable]]
# Parks a message that is not OTLP (value, reason).
SendDeadLetter = Callable[[bytes, str], Awaitable[object]]
# Sends a closed span-metrics window (partition, kind "red" or "service-graph", key,
# ExportMetricsServiceRequest bytes); the awaitable it returns settles on Kafka's ack.
SendMetrics = Callable[[int, str, bytes, bytes], Awaitable[Awaitable]]


def tag_spans(data: TracesData, policy: str) -> None:
    """Record on every span which policy kept its trace."""
    for resource_spans in data.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.attributes.add(key=POLICY_ATTRIBUTE).value.string_value = policy


def cache_entries(config) -> int:
    """The decision cache's bound from the policy file's ``decision_cache`` sizes."""
    cache = config.decision_cache
    configured = (cache.sampled_cache_size or 0) + (cache.non_sampled_cache_size or 0)
    return configured or DEFAULT_CACHE_ENTRIES


class TraceSampler:
    """The sampler's state and logic; the Faust agent feeds it events."""

    def __init__(
        self,
        settings: Settings,
        policies: PolicySource,
        buffer: TraceBuffer,
        cache: DecisionCache,
        send_kept: SendKept,
        send_dead_letter: SendDeadLetter,
        replay_source: ReplaySource,
        clock: Callable[[], float] = time.time,
        send_metrics: SendMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.buffer = buffer
        self.cache = cache
        self.send_kept = send_kept
        self.send_dead_letter = send_dead_letter
        self.replay_source = replay_source
        self.clock = clock  # wall clock, only for the decision-latency metric
        self._marks: dict[int, ReplayMark] = {}  # last saved, per partition
        # Per partition: the buffer's low water and the event time at the last saved mark,
        # and whether spans were handled since (see ``_save_mark``).
        self._marked_at: dict[int, tuple[int | None, float]] = {}
        self._spans_since_mark: set[int] = set()
        # Per adopted partition: the offset of the next event (see ``_in_order``).
        self._next_offset: dict[int, int] = {}
        # Per adopted partition: late spans before this offset are in a restored
        # span-metrics checkpoint already (the consumer may read them again).
        self._counted_to: dict[int, int] = {}
        self._pending_sends: dict[int, list] = {}  # kept traces not yet acknowledged
        # Span metrics (settings.span_metrics, off by default): see sampler.span_metrics.
        self.send_metrics = send_metrics
        self.span_metrics: SpanMetrics | None = None
        self._span_metrics_cpu_published = 0.0
        self._policies_cpu = 0.0  # not yet added to metrics.POLICIES_CPU
        if settings.span_metrics:
            if send_metrics is None:
                raise ValueError("span_metrics is on but the sampler has no send_metrics")
            self.span_metrics = SpanMetrics(settings)

    async def _ensure_adopted(self, partition: int, now: float, offset: int) -> None:
        """On the first event of a partition: index its buffer, replay what only Kafka has."""
        if self.buffer.index(partition) is not None:
            return
        decided = self.cache.adopt(partition, now)
        counted_to = None
        if self.span_metrics is not None:
            counted_to, checkpoints = self.cache.restored_metrics(partition)
            self.span_metrics.restore(partition, checkpoints)
        index = self.buffer.adopt(partition, now, skip=decided)
        mark = self.cache.replay_mark(partition)
        if counted_to is not None:
            self._counted_to[partition] = counted_to
        if mark is not None and mark.low_water < offset:
            await self._replay(partition, mark, offset, decided, counted_to)
            await self._settle_sends(partition)
        # Everything before ``offset`` is now buffered here or acknowledged by Kafka.
        self._save_mark(partition, offset, now, force=True)
        metrics.PARTITIONS_ADOPTED.inc()
        metrics.TRACES_RECOVERED.inc(len(index.traces))
        if index.traces:
            log.info("partition adopted", partition=partition, traces=len(index.traces))

    async def _replay(
        self,
        partition: int,
        mark: ReplayMark,
        end: int,
        decided: Container[bytes],
        counted_to: int | None = None,
    ) -> None:
        """Re-read spans of offsets [low water, end) that the previous owner had read.

        Pieces of undecided traces go back into the buffer (and are counted when
        decided). Pieces of traces decided kept are sent again when they lie at or after
        ``mark.handled``: the previous owner may have died before Kafka acknowledged
        them. With span metrics on, pieces of decided traces at or after ``counted_to``
        are counted: no saved checkpoint holds them.
        """
        replayed = resent = 0
        async for batch in self.replay_source(partition, mark.low_water, end):
            for offset, key, value, stamp, header in batch:
                if key == TICK_KEY or not value:
                    continue
                try:
                    pieces = self._pieces(value, header)
                except DecodeError:
                    continue  # the live consumer sent it to the DLQ the first time
                buffered, late = self._buffer_pieces(partition, pieces, stamp, offset, decided)
                replayed += buffered
                resend = offset >= mark.handled
                count = counted_to is not None and offset >= counted_to
                if not (resend or count):
                    continue
                for trace_id, spans_bytes, spans, _root, _services in late:
                    cached = self.cache.lookup(partition, trace_id)
                    if cached is None:
                        continue
                    piece = None
                    if count and self.span_metrics is not None:
                        piece = TracesData.FromString(spans_bytes)
                        self.span_metrics.add(partition, piece, trace_id, cached.sampled)
                    if resend and cached.sampled:
                        await self._send_tagged(partition, trace_id, spans_bytes, cached, piece)
                        resent += spans
            self.buffer.commit(partition)
        metrics.SPANS_REPLAYED.inc(replayed)
        metrics.SPANS_RESENT.inc(resent)
        log.info(
            "spans replayed",
            partition=partition,
            start=mark.low_water,
            end=end,
            spans=replayed,
            resent=resent,
        )

    def _save_mark(self, partition: int, handled: int, now: float, force: bool = False) -> None:
        """Save where a new owner re-reads: from the buffer's low water, or ``handled``.

        Skipped after a tick when only ticks came since the last save and the low water
        has not moved (an idle partition): an older mark stays correct, it only makes a
        new owner re-read those ticks. Without this an idle worker wrote a changelog
        message per partition per tick (8 a second). Refreshed every
        ``MARK_REFRESH_SECONDS`` all the same, to bound that re-read.
        """
        low_water = self.buffer.index(partition).low_water()
        last = self._marked_at.get(partition)
        if (
            not force
            and last is not None
            and partition not in self._spans_since_mark
            and last[0] == low_water
            and now - last[1] < MARK_REFRESH_SECONDS
        ):
            return
        mark = ReplayMark(handled if low_water is None else low_water, handled)
        if self._marks.get(partition) != mark:
            self.cache.save_replay_mark(partition, mark)
            self._marks[partition] = mark
        self._marked_at[partition] = (low_water, now)
        self._spans_since_mark.discard(partition)

    async def _settle_sends(self, partition: int) -> None:
        """Wait until Kafka acknowledged everything this partition sent so far."""
        pending = self._pending_sends.pop(partition, [])
        if pending:
            await asyncio.gather(*pending)

    def forget(self, partition: int) -> None:
        """Drop a revoked partition's state.

        Its span-metrics windows still open are dropped too: the next owner rebuilds
        them from the checkpoints saved with the decisions (``pipeline.sampler.span_metrics``).
        """
        self.buffer.forget(partition)
        self.cache.forget(partition)
        self._marks.pop(partition, None)
        self._marked_at.pop(partition, None)
        self._spans_since_mark.discard(partition)
        self._counted_to.pop(partition, None)
        self._next_offset.pop(partition, None)
        if self.span_metrics is not None:
            self.span_metrics.forget(partition)

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
            (trace_id, piece.SerializeToString(), count_spans(piece), trace_id in roots, None)
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
            trace_id, spans_bytes, spans, has_root, services = piece
            if trace_id in decided:
                late.append(piece)
                continue
            state = append(partition, trace_id, spans_bytes, spans, has_root, now, offset, services)
            buffered += spans
            if size_limit is not None and state.size > size_limit:
                self._drop_oversized(partition, trace_id, now)
        return buffered, late

    def _drop_oversized(self, partition: int, trace_id: bytes, now: float) -> None:
        """A trace over maximum_trace_size_bytes is dropped at once, as the collector does.

        The decision is cached, so the trace's later spans are dropped on arrival.
        """
        taken = self.buffer.take(partition, trace_id)
        if taken is None:
            return
        if self.span_metrics is not None:
            self.span_metrics.add(partition, TracesData.FromString(taken[1]), trace_id, False)
        metrics.TRACES_OVERSIZED.inc()
        metrics.traces_decided("not_sampled", "").inc()
        self.cache.remember(partition, trace_id, CachedDecision(now, False, ""))

    async def _in_order(self, partition: int, now: float, offset: int) -> bool:
        """Adopt the partition on its first event; keep its events gapless and once each.

        Faust drops (and acknowledges) a message it fetched under an older consumer
        generation or while flow control was off, so its offset can be committed although
        no agent saw it. Every offset of the spans topic carries a message (no transactions,
        no compaction), so a jump in the offsets is such a message: it is read again from
        Kafka here before the event goes on. An offset already handled (delivered again
        after a seek) is skipped. Returns whether the event is to be handled.
        """
        await self._ensure_adopted(partition, now, offset)
        expected = self._next_offset.get(partition, offset)
        if offset < expected:
            metrics.EVENTS_REDELIVERED.inc()
            return False
        if offset > expected:
            await self._fill_gap(partition, expected, offset)
        self._next_offset[partition] = offset + 1
        return True

    async def _fill_gap(self, partition: int, start: int, end: int) -> None:
        """Handle offsets [start, end) of the spans topic that the consumer skipped."""
        metrics.OFFSETS_SKIPPED_BY_CONSUMER.inc(end - start)
        log.warning(
            "the consumer skipped messages of the spans topic; reading them again",
            partition=partition,
            first=start,
            end=end,
        )
        async for batch in self.replay_source(partition, start, end):
            for offset, key, value, stamp, header in batch:
                if key != TICK_KEY and value:  # a skipped tick: the next one decides
                    await self._handle_spans(partition, value, header, stamp, offset)

    async def on_spans(
        self, partition: int, raw: bytes, header: bytes | None, now: float, offset: int
    ) -> None:
        """Buffer a message's spans; ``now`` is its Kafka timestamp (see ``on_tick``)."""
        if await self._in_order(partition, now, offset):
            await self._handle_spans(partition, raw, header, now, offset)

    async def _handle_spans(
        self, partition: int, raw: bytes, header: bytes | None, now: float, offset: int
    ) -> None:
        self._spans_since_mark.add(partition)
        try:
            pieces = self._pieces(raw, header)
        except DecodeError as exc:
            # Not written by our gateway: park it on the DLQ instead of crash-looping.
            metrics.MALFORMED_MESSAGES.inc()
            log.error("malformed message on the spans topic", partition=partition, error=str(exc))
            await self.send_dead_letter(raw, f"malformed: {exc}")
            return
        buffered, late = self._buffer_pieces(
            partition, pieces, now, offset, self.cache.decided_ids(partition)
        )
        metrics.SPANS_RECEIVED.inc(buffered)
        for trace_id, spans_bytes, spans, _root, _services in late:
            cached = self.cache.lookup(partition, trace_id)
            if cached is not None:
                await self._late(partition, trace_id, spans_bytes, spans, cached, offset)
        await self._relieve_overflow(partition, now)
        self.buffer.commit(partition)

    async def _late(
        self,
        partition: int,
        trace_id: bytes,
        spans_bytes: bytes,
        spans: int,
        cached: CachedDecision,
        offset: int,
    ) -> None:
        """Spans of an already decided trace follow its decision at once."""
        metrics.SPANS_RECEIVED.inc(spans)
        metrics.LATE_SPANS.labels("sampled" if cached.sampled else "not_sampled").inc(spans)
        piece = None
        # Counted, kept or dropped; unless a restored checkpoint counted them already.
        if self.span_metrics is not None and offset >= self._counted_to.get(partition, 0):
            piece = TracesData.FromString(spans_bytes)
            self.span_metrics.add(partition, piece, trace_id, cached.sampled)
        if cached.sampled:
            await self._send_tagged(partition, trace_id, spans_bytes, cached, piece)

    async def _send_tagged(
        self,
        partition: int,
        trace_id: bytes,
        spans_bytes: bytes,
        cached: CachedDecision,
        piece: TracesData | None = None,
    ) -> None:
        """Send spans of a trace decided kept, tagged with the policy that kept it."""
        if piece is None:
            piece = TracesData.FromString(spans_bytes)
        tag_spans(piece, cached.policy)
        sent = await self.send_kept(partition, trace_id, piece.SerializeToString())
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
        if not await self._in_order(partition, now, offset):
            return
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
        if self.span_metrics is not None:
            await self._close_span_metrics(partition, now)
        # Kept traces (and closed metric windows) must be in Kafka before their decisions
        # reach the changelog and before the replay mark passes their spans: a new owner
        # skips the traces it finds decided, and re-sends nothing before the mark.
        await self._settle_sends(partition)
        handled = offset + 1  # this tick, and every message before it
        if self.span_metrics is None:
            self.cache.flush(partition)
        else:  # the tick's counts go with its decisions, in one changelog message
            checkpoint = self.span_metrics.checkpoint(partition)
            self.cache.flush(partition, now, counted_to=handled, metrics=checkpoint)
        self._save_mark(partition, handled, now)
        if self.span_metrics is not None:
            # Checkpoints must outlive the windows they count into.
            self.cache.keep_for = self._window_lifetime()
            spent = self.span_metrics.cpu_seconds
            metrics.SPAN_METRICS_CPU.inc(spent - self._span_metrics_cpu_published)
            self._span_metrics_cpu_published = spent
        metrics.POLICIES_CPU.inc(self._policies_cpu)
        self._policies_cpu = 0.0
        self.cache.expire(partition, now)
        traces, size = self.buffer.counts()
        metrics.TRACES_BUFFERED.set(traces)
        metrics.BYTES_BUFFERED.set(size)
        metrics.DECISIONS_CACHED.set(self.cache.size())

    def _window_lifetime(self) -> float:
        """Longest time from a count into a window to that window's close (plus margin)."""
        return (
            self.settings.span_metrics_window
            + self.policies.decision_wait
            + self.settings.span_metrics_grace
            + 2 * self.settings.tick_interval
            + 10.0
        )

    async def _close_span_metrics(self, partition: int, now: float) -> None:
        """Send the span-metrics windows that event time has closed.

        Watermark: ``now - decision_wait - span_metrics_grace`` (event time). A span that
        ended before it (span clocks and export delay within the grace) belongs to a trace
        quiet for longer than decision_wait, so decided already; spans counted after their
        window closed (root_wait, max_trace_age, skew) go to the oldest open window (see
        ``pipeline.metrics.red``), so they are counted, only later.
        """
        assert self.span_metrics is not None and self.send_metrics is not None
        watermark = now - self.policies.decision_wait - self.settings.span_metrics_grace
        for kind, key, value in self.span_metrics.close(partition, watermark):
            sent = await self.send_metrics(partition, kind, key, value)
            self._pending_sends.setdefault(partition, []).append(sent)

    def _due(self, state: TraceState, now: float) -> float:
        """When a trace's decision fell due (event time): the first of its waits to run
        out (decision_wait after its last span, root_wait after its root, max_trace_age
        after its first span), or now when it is decided early (overflow)."""
        policies = self.policies
        due = min(
            now, state.last_seen + policies.decision_wait, state.first_seen + policies.max_age
        )
        root_wait = policies.root_wait
        if root_wait is not None and state.root_seen:
            due = min(due, state.root_seen + root_wait)
        return due

    async def decide(self, partition: int, trace_id: bytes, now: float) -> None:
        taken = self.buffer.take(partition, trace_id)
        if taken is None:
            return
        state, spans = taken
        data = TracesData.FromString(spans)
        # The buffered bytes are the trace's serialized form: the policies' substring
        # pre-checks use them as they are, and the span metrics reuse the view's spans.
        services = None if state.services is None else list(chain.from_iterable(state.services))
        view = TraceView(
            data,
            trace_id,
            len(spans),
            raw=spans,
            due=self._due(state, now),
            run_services=services,
        )
        started = thread_time()
        verdict = self.policies.engine.evaluate(view)
        self._policies_cpu += thread_time() - started
        for policy, decision in verdict.per_policy.items():
            metrics.policy_decisions(policy, decision.value).inc()
        policy = verdict.policy or ""
        outcome = "sampled" if verdict.sampled else "not_sampled"
        metrics.traces_decided(outcome, policy if verdict.sampled else "").inc()
        metrics.DECISION_LATENCY.observe(max(0.0, self.clock() - state.first_seen))
        self.cache.remember(partition, trace_id, CachedDecision(now, verdict.sampled, policy))
        if self.span_metrics is not None:
            # Before tag_spans: the sampling.policy attribute is not a span attribute.
            # Timed with the reads of codes and times the policies may not have made.
            started = thread_time()
            self.span_metrics.add_spans(
                partition,
                view.spans,
                view.resource_runs,
                trace_id,
                verdict.sampled,
                codes=view.status_codes,
                times=view.times,
                raw=spans,
            )
            self.span_metrics.cpu_seconds += thread_time() - started
        if verdict.sampled:
            tag_spans(data, policy)
            sent = await self.send_kept(partition, trace_id, data.SerializeToString())
            self._pending_sends.setdefault(partition, []).append(sent)
