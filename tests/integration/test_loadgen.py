"""The load generator against a real gateway: every span it says it sent is in Kafka."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from pipeline.config.settings import Settings
from pipeline.loadgen import run_loadgen
from pipeline.wire.otlp import TracesData
from tests.integration.conftest import running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(stack: Settings, tmp_path_factory):
    """A gateway of our own on private topics (no worker needed)."""
    base = stack.model_copy(
        update={
            "state_dir": tmp_path_factory.mktemp("loadgen"),
            "topic_prefix": f"it-lg-{uuid.uuid4().hex[:8]}",
            "partitions": 4,
        }
    )
    with running_gateway(base) as settings:
        yield settings


def read_back(settings: Settings, trace_ids: set[bytes], expected: int, timeout=30.0):
    """{trace id: [spans]} from the spans topic, once ``expected`` spans were found.

    Deduplicated by (trace id, span id): replayed pool traces reuse span ids under new
    trace ids, so the span id alone is not unique across a run.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    topic = settings.topic("spans")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    seen: set[tuple[bytes, bytes]] = set()
    found: dict[bytes, list] = defaultdict(list)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(seen) < expected:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() or not message.value():
                    continue
                for resource_spans in TracesData.FromString(message.value()).resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            key = (span.trace_id, span.span_id)
                            if span.trace_id in trace_ids and key not in seen:
                                seen.add(key)
                                found[span.trace_id].append(span)
    finally:
        consumer.close()
    return found


@pytest.mark.parametrize(
    ("mode", "transport", "rate"),
    [("protobuf", "http", 4000), ("protobuf", "grpc", 4000), ("sdk", "http", 800)],
)
def test_every_span_sent_arrives_in_kafka(gateway: Settings, mode, transport, rate):
    result = run_loadgen(
        gateway, rate=rate, duration=2.0, seed=11, mode=mode, transport=transport, burst=False
    )
    assert result.failed_spans == 0 and result.rejected_spans == 0, result.ledger.last_error
    assert result.spans_sent == pytest.approx(rate * 2.0, rel=0.15)
    assert result.shortfall_spans < rate * 0.2
    records = list(result.traces())
    assert len(records) == result.traces_sent
    assert sum(r.spans for r in records) == result.spans_sent
    assert len({r.trace_id for r in records}) == len(records)
    assert all(r.sent_at >= result.started_at for r in records)

    ids = {bytes.fromhex(r.trace_id) for r in records}
    found = read_back(gateway, ids, result.spans_sent)
    for record in records:
        spans = found.get(bytes.fromhex(record.trace_id), [])
        assert len(spans) == record.spans, record
        assert any(s.status.code == 2 for s in spans) == record.error, record


def test_replays_carry_fresh_ids_and_current_times(gateway: Settings):
    """At 6 000 spans/s for 3 s the 6 000-span pool is played 3 times: ids stay unique."""
    before = time.time_ns()
    result = run_loadgen(gateway, rate=6000, duration=3.0, seed=5, burst=False)
    after = time.time_ns()
    records = list(result.traces())
    assert result.spans_sent > 10_000
    assert len({r.trace_id for r in records}) == len(records)
    last = records[-50:]  # from the third round through the pool
    ids = {bytes.fromhex(r.trace_id) for r in last}
    found = read_back(gateway, ids, sum(r.spans for r in last))
    for record in last:
        spans = found[bytes.fromhex(record.trace_id)]
        assert len(spans) == record.spans
        # moved to the send time (give or take the estate's skewed clocks), not the build time
        assert all(before - 10e9 < s.start_time_unix_nano < after + 10e9 for s in spans)
