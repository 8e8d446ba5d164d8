"""Replaying pre-built requests: fresh unique ids, times and errors patched in, ground
truth kept."""

import statistics
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as ProtoExportRequest,
)

from pipeline.loadgen.generator import CLIENT, SERVER, TraceGenerator
from pipeline.loadgen.ledger import Ledger, LoadgenResult
from pipeline.loadgen.pacing import RateProfile
from pipeline.loadgen.pool import (
    STATUS_CLEARED,
    STATUS_FAILED,
    Batch,
    Replay,
    build_batch,
    build_pool,
    cycle_mask,
    duration_scale,
    replay_span_id,
    replay_trace_id,
)
from pipeline.loadgen.topology import Burst, load_topology
from pipeline.wire.otlp import ExportTraceServiceRequest, count_spans


@pytest.fixture(scope="module")
def pool():
    return build_pool(TraceGenerator(load_topology("topologies/estate-30.yaml"), 4), 4, 400)


def spans_of(body: bytes):
    request = ExportTraceServiceRequest.FromString(body)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


def test_replay_zero_at_the_original_time_is_the_original(pool):
    for batch in pool:
        assert batch.render(0, batch.latest_end) == batch.body
        assert batch.spans == count_spans(ExportTraceServiceRequest.FromString(batch.body))
        assert 400 <= batch.spans < 400 + 200


def test_render_patches_ids_and_times_and_nothing_else(pool):
    """Replay 5: every trace id and span id (own, parent's, a linked one of the request)
    is the replay id; each trace is stretched by its factor towards its end, so spans
    stay nested; the last span ends at ``now``; statuses may flip (tested below); nothing
    else changes."""
    batch = pool[1]
    now = time.time_ns()
    delta = now - batch.latest_end
    index = {t.trace_id: i for i, t in enumerate(batch.traces)}
    rendered = list(spans_of(batch.render(5, now)))
    original = list(spans_of(batch.body))
    assert len(rendered) == len(original)
    ends: dict[bytes, int] = {}
    for before in original:
        ends[before.trace_id] = max(ends.get(before.trace_id, 0), before.end_time_unix_nano)

    def moved(trace_id: bytes, value: int) -> int:
        scale = duration_scale(5, index[trace_id])
        return ends[trace_id] - int((ends[trace_id] - value) * scale) + delta

    links = 0
    for span, before in zip(rendered, original, strict=True):
        assert span.trace_id == replay_trace_id(before.trace_id, 5) != before.trace_id
        assert span.span_id == replay_span_id(before.span_id, 5) != before.span_id
        if before.parent_span_id:
            assert span.parent_span_id == replay_span_id(before.parent_span_id, 5)
        else:
            assert not span.parent_span_id
        assert span.start_time_unix_nano == moved(before.trace_id, before.start_time_unix_nano)
        assert span.end_time_unix_nano == moved(before.trace_id, before.end_time_unix_nano)
        for event, old in zip(span.events, before.events, strict=True):
            assert event.time_unix_nano == moved(before.trace_id, old.time_unix_nano)
        for link, old in zip(span.links, before.links, strict=True):
            links += 1
            ours = old.trace_id in index
            assert link.trace_id == (replay_trace_id(old.trace_id, 5) if ours else old.trace_id)
            assert link.span_id == (replay_span_id(old.span_id, 5) if ours else old.span_id)
        for field in ("name", "kind", "attributes", "flags", "events", "dropped_events_count"):
            if field != "events":
                assert getattr(span, field) == getattr(before, field)
        assert [e.name for e in span.events] == [e.name for e in before.events]
        assert span.status == before.status or (span.status.code == 2) != (before.status.code == 2)
    assert max(s.end_time_unix_nano for s in rendered) == now
    assert links, "the pool should hold a span link to patch"


def test_replays_vary_each_traces_duration_between_half_and_double():
    scales = [duration_scale(cycle, trace) for cycle in range(1, 200) for trace in range(20)]
    assert all(0.5 <= scale <= 2.0 for scale in scales)
    assert min(scales) < 0.6 and max(scales) > 1.8  # the whole range is used
    assert len(set(scales)) > 0.99 * len(scales)
    assert duration_scale(0, 7) == 1.0


def test_a_parent_span_in_its_replay_is_the_replayed_parent(pool):
    """Every parent id in a replay names a span of the same replay: the shape survives."""
    rendered = list(spans_of(pool[0].render(9, time.time_ns())))
    ids = {(span.trace_id, span.span_id) for span in rendered}
    assert len(ids) == len(rendered)
    parents = [(s.trace_id, s.parent_span_id) for s in rendered if s.parent_span_id]
    assert parents and all(parent in ids for parent in parents)


def test_replayed_ids_are_unique():
    masks = {cycle_mask(cycle) for cycle in range(200_000)}
    assert len(masks) == 200_000 and cycle_mask(0) == 0
    trace_id = bytes(range(16))
    ids = {replay_trace_id(trace_id, cycle) for cycle in range(10_000)}
    assert len(ids) == 10_000
    assert all(i[4:] == trace_id[4:] for i in ids)


def test_replay_cycles_through_the_pool_and_switches_at_the_deploy(pool):
    replay = Replay(pool[:2], pool[2:], deploy_at=10.0)
    picks = [replay.next(1.0) for _ in range(5)]
    assert [(b is pool[i % 2], c) for (b, c), i in zip(picks, range(5), strict=True)] == [
        (True, 0),
        (True, 0),
        (True, 1),
        (True, 1),
        (True, 2),
    ]
    batch, cycle = replay.next(10.0)
    assert batch is pool[2] and cycle == 0


def test_rate_profile_integrates_the_burst():
    steady = RateProfile(100.0)
    assert steady.due(20.0) == 2000.0
    burst = RateProfile(100.0, Burst(multiplier=10, at=10.0, duration=5.0))
    assert burst.rate_at(9.9) == 100.0 and burst.rate_at(12.0) == 1000.0
    assert burst.rate_at(15.0) == 100.0
    assert burst.due(10.0) == 1000.0
    assert burst.due(12.0) == pytest.approx(1000.0 + 2000.0)
    assert burst.due(20.0) == pytest.approx(2000.0 + 9 * 100 * 5)


def test_ledger_expands_batches_into_trace_records(pool):
    ledger = Ledger(started_at=1000.0)
    ledger.batch_delivered(pool[0], 3, 1000.5)
    ledger.batch_delivered(pool[1], 0, 1001.2)
    ledger.batch_failed(pool[2], 7, "503: gave up")
    records = list(ledger.traces())
    assert len(records) == len(pool[0].traces) + len(pool[1].traces)
    assert records[0].trace_id == replay_trace_id(pool[0].traces[0].trace_id, 3).hex()
    assert records[0].sent_at == 1000.5
    assert sum(r.spans for r in records) == pool[0].spans + pool[1].spans
    result = LoadgenResult(
        topology="estate-30", mode="protobuf", transport="http", endpoint="x", seed=4,
        target_rate=1.0, duration=2.0, burst=None, bad_deploy=None, started_at=1000.0,
        elapsed=2.0, build_seconds=0.1, cpu_seconds=0.5, shortfall_spans=0, ledger=ledger,
    )  # fmt: skip
    summary = result.summary()
    assert summary["spans_sent"] == pool[0].spans + pool[1].spans
    assert summary["failed_spans"] == pool[2].spans and summary["failed_requests"] == 1
    assert len(summary["failed_trace_ids"]) == len(pool[2].traces)
    assert summary["timeline"] == [pool[0].spans, pool[1].spans, 0]
    errors = {r.trace_id for r in records if r.error}
    assert set(summary["error_trace_ids"]) == errors
    assert summary["traces"][0][:3] == [
        records[0].trace_id,
        records[0].spans,
        int(records[0].error),
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 3),
    cycle=st.integers(0, 2**32 - 1),
    shift=st.integers(0, 10**17),
)
def test_any_replay_parses_and_keeps_the_trace_shapes(pool, which, cycle, shift):
    batch = pool[which]
    now = batch.latest_end + shift
    spans = list(spans_of(batch.render(cycle, now)))
    per_trace = Counter(span.trace_id for span in spans)
    assert per_trace == Counter({replay_trace_id(t.trace_id, cycle): t.spans for t in batch.traces})
    assert max(span.end_time_unix_nano for span in spans) == now


# --- errors vary between replays --------------------------------------------------------


@pytest.fixture(scope="module")
def error_pool() -> list[Batch]:
    """The estate after its bad deploy: error traces in every request."""
    generator = TraceGenerator(load_topology("topologies/estate-30.yaml"), 8)
    return build_pool(generator, 3, 600, elapsed=100.0)


def decoded_errors(body: bytes) -> dict[bytes, bool]:
    """Trace id -> whether a span of it has status ERROR, read with opentelemetry-proto."""
    errors: dict[bytes, bool] = {}
    for resource_spans in ProtoExportRequest.FromString(body).resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                failed = span.status.code == 2
                errors[span.trace_id] = errors.get(span.trace_id, False) or failed
    return errors


def test_replays_of_one_request_vary_its_error_traces(error_pool):
    batch = error_pool[0]
    template = sum(t.error for t in batch.traces)
    assert template >= 2
    counts = [sum(decoded_errors(batch.render(c, time.time_ns())).values()) for c in range(300)]
    assert counts[0] == template  # replay 0 is the request as generated
    assert len(set(counts)) >= 4  # varies from replay to replay ...
    assert statistics.mean(counts[1:]) == pytest.approx(template, rel=0.25)  # ... around it
    # A generated failure comes back in about 90 % of the replays, all its spans together.
    failing = next(i for i, t in enumerate(batch.traces) if t.error)
    again = [batch.trace_errors(c)[failing] for c in range(1, 1001)]
    assert 0.86 < sum(again) / len(again) < 0.94


def test_the_ledger_counts_the_errors_of_the_bytes_sent(error_pool):
    """Over many replays, what the ledger records per trace is what the bytes say."""
    ledger = Ledger(started_at=0.0)
    sent_errors = 0
    for cycle in range(60):
        for batch in error_pool:
            decoded = decoded_errors(batch.render(cycle, time.time_ns()))
            ledger.batch_delivered(batch, cycle, 1.0)
            sent_errors += sum(decoded.values())
            records = ledger.delivered_since(ledger.requests_sent - 1)[1]
            assert {bytes.fromhex(r.trace_id): r.error for r in records} == decoded
    assert ledger.error_traces_sent == sent_errors
    assert sum(r.error for r in ledger.traces()) == sent_errors
    ledger.batch_failed(error_pool[0], 61, "gave up")
    failed = {bytes.fromhex(r.trace_id): r.error for r in ledger.failed_traces()}
    assert failed == decoded_errors(error_pool[0].render(61, time.time_ns()))


def test_a_replay_flips_statuses_in_place_and_consistently(error_pool):
    """Failing spans carry ERROR with a message, the others an unset status without one;
    a client span reports what its server span did; lengths never change."""
    batch = error_pool[1]
    for cycle in range(1, 40):
        body = batch.render(cycle, time.time_ns())
        assert len(body) == len(batch.body)
        for offsets in batch.unit_offsets:
            for offset in offsets:
                assert body[offset : offset + 2] in (STATUS_FAILED, STATUS_CLEARED)
        spans = list(spans_of(body))
        by_id = {(s.trace_id, s.span_id): s for s in spans}
        for span in spans:
            assert (span.status.code == 2) == bool(span.status.message)
            parent = by_id.get((span.trace_id, span.parent_span_id))
            if span.kind == SERVER and parent is not None and parent.kind == CLIENT:
                assert parent.status.code == span.status.code


def test_recurrence_one_replays_the_generated_errors_and_zero_redraws_them():
    generator = TraceGenerator(load_topology("topologies/estate-30.yaml"), 8)
    traces = [t for _ in range(60) for t in generator.generate(1_700_000_000_000_000_000, 100.0)]
    fixed = build_batch(traces, recurrence=1.0)
    template = [t.error for t in fixed.traces]
    assert any(template)
    assert all(fixed.trace_errors(cycle) == template for cycle in range(1, 50))
    assert fixed.recurring == len(fixed.unit_thresholds)  # no other span can fail
    fresh = build_batch(traces, recurrence=0.0)
    assert fresh.render(0, fresh.latest_end) == fresh.body
    assert decoded_errors(fresh.body) == {t.trace_id: t.error for t in fresh.traces}
    # At 0 a generated failure never comes back; the trace's other spans may fail anew,
    # as every span that can.
    failed = [fresh.failed_units(cycle) for cycle in range(1, 200)]
    assert fresh.recurring and not any(unit < fresh.recurring for f in failed for unit in f)
    assert sum(map(len, failed)) > 0


def test_varying_errors_keeps_rendering_linear_in_spans(error_pool):
    """One draw per unit (a span that can fail, or a trace's generated failure) and two
    bytes per flipped status: bounded by the spans (their cost is measured by the load
    generator's render benchmark, not asserted here: these machines are noisy)."""
    for batch in error_pool:
        assert len(batch.unit_thresholds) <= batch.spans
        assert sum(len(offsets) for offsets in batch.unit_offsets) <= batch.spans
