"""TraceSampler end to end, in one process and with no server: messages made by the real
gateway code into an in-memory spans topic, rocksdict databases in a temporary folder,
ticks on a fake clock (event time), kept traces and dead letters collected in lists."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from pipeline.sampler.core import MARK_REFRESH_SECONDS, TICK_KEY
from pipeline.sampler.decisions import BATCH_PREFIX, LOW_WATER_KEY
from pipeline.wire.partitioner import partition_for_trace
from tests.unit.sampler.harness import (
    POLICIES,
    T0,
    FakeClock,
    Gateway,
    Outputs,
    SpansTopic,
    TraceMaker,
    Worker,
    all_spans,
    merged,
    policy_of,
    settings_for,
    trace_on,
)


class Stack:
    """Gateway -> topic -> worker, driven second by second."""

    def __init__(self, tmp_path, policies: str = POLICIES, partitions: int = 2) -> None:
        self.tmp_path = tmp_path
        self.settings = settings_for(tmp_path, policies, partitions)
        self.clock = FakeClock()
        self.topic = SpansTopic(partitions, self.clock)
        self.gateway = Gateway(self.settings, self.topic)
        self.worker = self.new_worker("worker-a")

    def new_worker(self, name: str, **kwargs) -> Worker:
        outputs = self.worker.outputs if hasattr(self, "worker") else None
        return Worker(self.settings, self.topic, self.tmp_path / name, outputs, **kwargs)

    @property
    def outputs(self):
        return self.worker.outputs

    async def export(self, *requests) -> None:
        await self.gateway.export(merged(*requests))

    async def seconds(self, count: int) -> None:
        """``count`` ticks, one second apart, each consumed by the worker."""
        for _ in range(count):
            self.clock.advance(1.0)
            self.topic.tick()
            await self.worker.consume()

    def close(self) -> None:
        self.worker.close()


def run(scenario) -> None:
    asyncio.run(scenario())


def assert_kept_whole(outputs, trace: TraceMaker, policy: str = "errors") -> None:
    spans = outputs.kept_spans(trace.trace_id)
    assert Counter(span.span_id for span in spans) == Counter(trace.span_ids)  # each once
    assert {policy_of(span) for span in spans} == {policy}


def test_error_traces_are_kept_whole_with_their_policy_and_the_rest_dropped(tmp_path):
    async def scenario():
        stack = Stack(tmp_path)
        failing, fine, other = TraceMaker(), TraceMaker(), TraceMaker()
        # Three requests a second apart, over three services; each request carries spans
        # of several traces, as an instrumented service's exporter would.
        await stack.export(failing.request(2, root=True, service="web"), fine.request(3, root=True))
        await stack.seconds(1)
        await stack.export(failing.request(2, service="api"), other.request(1, error=True))
        await stack.seconds(1)
        await stack.export(failing.request(1, error=True, service="db"), fine.request(2))
        await stack.seconds(4)  # t=6: ``other`` has been quiet for decision_wait (5 s)
        assert stack.outputs.kept_ids() == [other.trace_id]
        await stack.seconds(1)  # t=7: so have ``failing`` and ``fine``
        assert stack.outputs.kept_ids() == [other.trace_id, failing.trace_id]
        assert_kept_whole(stack.outputs, failing)
        assert_kept_whole(stack.outputs, other)
        assert stack.worker.sampler.buffer.counts() == (0, 0)
        for trace in (failing, fine, other):
            partition = partition_for_trace(trace.trace_id, 2)
            decision = stack.worker.sampler.cache.lookup(partition, trace.trace_id)
            assert decision.sampled == (trace is not fine)
        assert stack.outputs.dead == []
        stack.close()

    run(scenario)


def test_late_spans_follow_the_cached_decision_at_once(tmp_path):
    async def scenario():
        stack = Stack(tmp_path)
        failing, fine = TraceMaker(), TraceMaker()
        await stack.export(failing.request(2, root=True, error=True), fine.request(2, root=True))
        await stack.seconds(6)
        assert stack.outputs.kept_ids() == [failing.trace_id]
        late_failing = failing.request(1)  # its last span after the decision
        await stack.export(late_failing, fine.request(1))
        await stack.worker.consume()  # no tick needed: late spans go at once
        assert stack.outputs.kept_ids() == [failing.trace_id, failing.trace_id]
        late = all_spans(TracesData.FromString(stack.outputs.kept[-1][2]))
        assert [span.span_id for span in late] == [failing.span_ids[-1]]
        assert_kept_whole(stack.outputs, failing)
        assert stack.worker.sampler.buffer.counts() == (0, 0)  # neither was buffered again
        await stack.seconds(10)
        assert stack.outputs.kept_ids() == [failing.trace_id, failing.trace_id]
        stack.close()

    run(scenario)


def test_a_malformed_message_goes_to_the_dead_letter_output_and_the_worker_carries_on(
    tmp_path,
):
    async def scenario():
        stack = Stack(tmp_path)
        poison = b"\x0a\xff\xff\xff\xff\x0fnot OTLP at all"
        stack.topic.append(0, poison)  # another producer, no pieces header
        failing = TraceMaker()
        await stack.export(failing.request(3, root=True, error=True))
        await stack.seconds(6)
        assert len(stack.outputs.dead) == 1
        value, reason = stack.outputs.dead[0]
        assert value == poison
        assert reason.startswith("malformed")
        assert_kept_whole(stack.outputs, failing)
        stack.close()

    run(scenario)


def test_a_message_whose_pieces_header_does_not_match_is_parsed_instead(tmp_path):
    async def scenario():
        stack = Stack(tmp_path)
        failing = TraceMaker()
        await stack.export(failing.request(3, root=True, error=True))
        for log in stack.topic.records:  # spoil the header of the message just written
            for position, record in enumerate(log):
                if record.value:
                    log[position] = dataclasses.replace(record, header=b"bad")
        await stack.seconds(6)
        assert stack.outputs.dead == []
        assert_kept_whole(stack.outputs, failing)
        stack.close()

    run(scenario)


def test_a_new_owner_replays_and_finishes_the_traces_of_the_previous_one(tmp_path):
    """Worker A dies; worker B (its own, empty buffer databases; the decision cache
    restored from A's changelog) re-reads the spans topic from A's low-water offset and
    finishes A's traces whole, without deciding again what A had decided."""

    async def scenario():
        stack = Stack(tmp_path)
        fine, decided, failing = (TraceMaker(trace_on(0, 2)) for _ in range(3))
        await stack.export(fine.request(2, root=True))  # offset 0: the low water, later
        await stack.seconds(1)
        await stack.export(decided.request(2, root=True, error=True))
        await stack.seconds(1)
        await stack.export(failing.request(2, root=True), fine.request(1))
        await stack.seconds(1)
        await stack.export(failing.request(1))
        await stack.seconds(3)  # t=6: ``decided`` is due (quiet since t=1), the rest not yet
        a = stack.worker
        assert a.outputs.kept_ids() == [decided.trace_id]
        assert a.sampler.buffer.counts()[0] == 2
        a.close()  # A is gone; Kafka keeps the spans, the changelog keeps A's decisions

        b = stack.new_worker("worker-b")
        b.decisions.restore_from(a.decisions.changelog)
        b.start_at(a.positions)  # the consumer group's committed offsets
        stack.worker = b
        await stack.export(failing.request(1, error=True), decided.request(1))
        await b.consume()
        assert stack.topic.replays == [(0, 0, a.positions[0])]  # from A's low water
        assert b.sampler.buffer.counts()[0] == 2  # ``fine`` and ``failing``, not ``decided``
        assert b.outputs.kept_ids() == [decided.trace_id] * 2  # its late span went at once
        await stack.seconds(6)
        assert b.outputs.kept_ids() == [decided.trace_id] * 2 + [failing.trace_id]
        assert_kept_whole(b.outputs, failing)  # spans replayed, and read live
        assert_kept_whole(b.outputs, decided)  # decided once, by A; never again
        assert b.sampler.cache.lookup(0, fine.trace_id).sampled is False
        assert b.sampler.buffer.counts() == (0, 0)
        stack.close()

    run(scenario)


def marks_saved(worker: Worker, partition: int) -> int:
    return sum(
        1 for p, key, _ in worker.decisions.changelog if p == partition and key == LOW_WATER_KEY
    )


def test_an_idle_partition_saves_its_replay_mark_once_a_minute_not_every_tick(tmp_path):
    """Ticks alone leave the mark where it was (it stays correct, a new owner only re-reads
    ticks); spans, a decision that moves the low water, or a minute passing save it."""

    async def scenario():
        stack = Stack(tmp_path)
        a = stack.worker
        await stack.seconds(3)  # adopts the partitions: one mark each
        assert marks_saved(a, 0) == 1
        await stack.seconds(20)
        assert marks_saved(a, 0) == 1
        trace = TraceMaker(trace_on(0, 2))
        await stack.export(trace.request(2, root=True, error=True))
        await stack.seconds(1)  # spans handled: saved
        assert marks_saved(a, 0) == 2
        saved_at = []  # event time of each save from here on
        for _ in range(130):
            before = marks_saved(a, 0)
            await stack.seconds(1)
            if marks_saved(a, 0) > before:
                saved_at.append(stack.clock())
        assert a.outputs.kept_ids() == [trace.trace_id]
        # One save when the decision moved the low water, then one a minute.
        assert len(saved_at) == 3
        assert saved_at[1] - saved_at[0] == saved_at[2] - saved_at[1] == MARK_REFRESH_SECONDS
        a.close()

        b = stack.new_worker("worker-b")
        b.decisions.restore_from(a.decisions.changelog)
        b.start_at(a.positions)
        stack.worker = b
        await stack.seconds(1)
        # B re-reads from the marks: ticks only, since no piece is buffered.
        assert stack.topic.replays
        for partition, start, end in stack.topic.replays:
            records = stack.topic.records[partition][start:end]
            assert {record.key for record in records} == {TICK_KEY}
        assert b.outputs.kept_ids() == [trace.trace_id]  # (shared outputs) not kept again
        stack.close()

    run(scenario)


class LosingOutputs(Outputs):
    """Kept traces sent into the void: the worker dies before Kafka acknowledges them."""

    async def send_kept(self, partition: int, trace_id: bytes, value: bytes):
        return asyncio.get_running_loop().create_future()  # never settles


def test_a_new_owner_re_sends_kept_spans_the_previous_one_may_not_have_delivered(tmp_path):
    """A forwards a late span of a kept trace and dies before Kafka acknowledged it,
    its consumer offset already past that span. B finds the trace decided; the re-read
    meets the span after A's handled offset and sends it again."""

    async def scenario():
        stack = Stack(tmp_path)
        failing = TraceMaker(trace_on(0, 2))
        await stack.export(failing.request(2, root=True, error=True))
        await stack.seconds(6)
        a = stack.worker
        assert a.outputs.kept_ids() == [failing.trace_id]
        a.sampler.send_kept = LosingOutputs().send_kept
        await stack.export(failing.request(1))  # late: forwarded, never acknowledged
        await a.consume()
        a.close()

        b = stack.new_worker("worker-b")
        b.decisions.restore_from(a.decisions.changelog)
        b.start_at(a.positions)  # committed past the late span
        stack.worker = b
        await stack.seconds(1)
        assert_kept_whole(b.outputs, failing)
        assert b.outputs.kept_ids() == [failing.trace_id] * 2
        stack.close()

    run(scenario)


def test_a_decision_reaches_the_changelog_only_after_its_kept_trace_is_acknowledged(tmp_path):
    """Else a new owner could find the trace decided, skip its spans, and lose them."""

    async def scenario():
        stack = Stack(tmp_path)
        failing = TraceMaker(trace_on(0, 2))
        await stack.export(failing.request(2, root=True, error=True))
        await stack.seconds(4)
        a = stack.worker
        a.sampler.send_kept = LosingOutputs().send_kept
        stack.clock.advance(1.0)
        stack.topic.tick()  # t=5: the trace is due
        consuming = asyncio.ensure_future(a.consume())
        await asyncio.sleep(0.05)
        assert not consuming.done()  # waiting for Kafka to acknowledge the kept trace
        assert not [key for _, key, _ in a.decisions.changelog if key.startswith(BATCH_PREFIX)]
        consuming.cancel()
        stack.close()

    run(scenario)


def test_a_message_the_consumer_drops_is_read_again_and_a_redelivered_one_skipped(tmp_path):
    """Faust drops (and acknowledges) a message fetched under an older generation: the
    sampler sees the offsets jump and reads the gap from Kafka. A message delivered again
    after a seek is not handled twice."""

    async def scenario():
        stack = Stack(tmp_path)
        failing = TraceMaker(trace_on(0, 2))
        await stack.export(failing.request(2, root=True))
        await stack.seconds(1)
        await stack.export(failing.request(2, error=True))  # the message dropped
        dropped_offset = len(stack.topic.records[0]) - 1
        stack.worker.dropped.add((0, dropped_offset))
        await stack.export(failing.request(1))
        await stack.seconds(1)
        assert stack.topic.replays[-1] == (0, dropped_offset, dropped_offset + 1)
        stack.worker.positions[0] -= 3  # a seek back: three events come again
        await stack.seconds(6)
        assert_kept_whole(stack.outputs, failing)  # every span, each once
        stack.close()

    run(scenario)


def test_a_restarted_worker_adopts_its_databases_and_replays_idempotently(tmp_path):
    """The same worker restarts over its own databases; its consumer resumes a little
    before where it stopped (the last commit), so some messages come twice: replayed
    from the low water and read again live. Each span is still kept exactly once."""

    async def scenario():
        stack = Stack(tmp_path)
        failing = TraceMaker(trace_on(1, 2))
        await stack.export(failing.request(2, root=True))
        await stack.seconds(1)
        await stack.export(failing.request(2))
        await stack.seconds(1)
        await stack.export(failing.request(1))
        a = stack.worker
        await a.consume()
        a.close()

        b = stack.new_worker("worker-a")  # the same folder
        b.start_at([position - 2 for position in a.positions])
        stack.worker = b
        await stack.export(failing.request(1, error=True))
        await stack.seconds(1)
        assert stack.topic.replays == [(1, 0, a.positions[1] - 2)]
        assert b.sampler.buffer.index(1).traces[failing.trace_id].spans == 6
        await stack.seconds(5)
        assert b.outputs.kept_ids() == [failing.trace_id]
        assert_kept_whole(b.outputs, failing)
        stack.close()

    run(scenario)


def test_a_trace_over_the_size_limit_is_dropped_with_its_later_spans(tmp_path):
    policies = POLICIES + "maximum_trace_size_bytes: 1500\n"

    async def scenario():
        stack = Stack(tmp_path, policies)
        huge, small = TraceMaker(), TraceMaker()
        await stack.export(huge.request(5, root=True, error=True), small.request(2, error=True))
        await stack.seconds(1)
        await stack.export(huge.request(30))  # now over 1500 bytes: dropped at once
        await stack.worker.consume()
        assert stack.worker.sampler.buffer.counts()[0] == 1
        await stack.export(huge.request(2, error=True))  # later spans follow the drop
        await stack.seconds(6)
        assert stack.outputs.kept_ids() == [small.trace_id]
        assert stack.worker.sampler.buffer.counts() == (0, 0)
        stack.close()

    run(scenario)


def test_over_num_traces_the_oldest_traces_are_decided_early(tmp_path):
    policies = POLICIES.replace("num_traces: 1000", "num_traces: 3")

    async def scenario():
        stack = Stack(tmp_path, policies, partitions=1)
        traces = [TraceMaker() for _ in range(5)]
        for number, trace in enumerate(traces):
            await stack.export(trace.request(2, root=True, error=number < 2))
            await stack.worker.consume()
        # Two over the bound: the two oldest were decided (and kept) before decision_wait.
        assert stack.outputs.kept_ids() == [traces[0].trace_id, traces[1].trace_id]
        assert stack.worker.sampler.buffer.counts()[0] == 3
        assert_kept_whole(stack.outputs, traces[0])
        stack.close()

    run(scenario)


def record_views(stack: Stack, read) -> dict:
    """``read(view)`` of every trace the policies decide, by trace id."""
    seen: dict = {}
    engine = stack.worker.sampler.policies.engine
    evaluate = engine.evaluate

    def recording(view):
        seen[view.trace_id] = read(view)
        return evaluate(view)

    engine.evaluate = recording
    return seen


def test_each_decision_carries_the_moment_it_fell_due(tmp_path):
    """The policies learn when a trace's decision fell due, in event time, whichever tick
    decided it (the adaptive policy counts traffic by it): decision_wait after its last
    span, decision_wait_after_root_received after its root, or the moment of an early
    decision on overflow."""
    policies = POLICIES.replace("num_traces: 1000", "num_traces: 2").replace(
        "max_trace_age: 60s", "max_trace_age: 60s\ndecision_wait_after_root_received: 2s"
    )

    async def scenario():
        stack = Stack(tmp_path, policies, partitions=1)
        due = record_views(stack, lambda view: view.due)
        quiet, rooted = TraceMaker(), TraceMaker()
        stack.clock.advance(0.3)
        await stack.export(quiet.request(2))
        await stack.worker.consume()
        stack.clock.advance(0.4)
        await stack.export(rooted.request(1, root=True))
        await stack.worker.consume()
        await stack.seconds(6)  # ticks at +1.7, +2.7, ...: neither trace due on a tick
        assert due == {rooted.trace_id: T0 + 0.7 + 2, quiet.trace_id: T0 + 0.3 + 5}
        crowded = [TraceMaker() for _ in range(3)]
        for trace in crowded:
            await stack.export(trace.request(1))
            await stack.worker.consume()
        assert due[crowded[0].trace_id] == stack.clock.now  # decided early, at once
        stack.close()

    run(scenario)


def test_the_services_of_a_trace_come_from_the_pieces_header(tmp_path, monkeypatch):
    """The gateway lists each piece's services; the policies read them without
    serializing a resource again. (Without them, ``TraceView`` finds them from the
    resources: its own unit test.)"""

    def not_called(resource):
        raise AssertionError("service found from a resource")

    async def scenario():
        stack = Stack(tmp_path, partitions=1)
        seen = record_views(stack, lambda view: view.run_services)
        trace = TraceMaker()
        await stack.export(trace.request(2, root=True, service="web"))
        await stack.export(trace.request(1, service="db"))
        monkeypatch.setattr("pipeline.policies.trace.service_of", not_called)
        await stack.seconds(7)
        assert seen[trace.trace_id] == ["web", "db"]
        stack.close()

    run(scenario)
