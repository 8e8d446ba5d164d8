"""Tail sampling with YAML policies against real Kafka: whole traces, late spans, shares."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from confluent_kafka import Consumer, Producer

from pipeline.config.settings import Settings
from pipeline.local.run import wait_until
from pipeline.policies.probabilistic import is_sampled
from tests.integration.kafka_helpers import read_spans
from tests.integration.sampling_helpers import (
    POLICIES,
    decided_total,
    make_span,
    post,
    request_of,
    sampling_pipeline,
    worker_metrics,
)

pytestmark = pytest.mark.integration


def unsampled_trace_id(rng: random.Random) -> bytes:
    """A trace id the 10 % probabilistic policy does not keep (so only other rules can)."""
    while True:
        trace_id = rng.randbytes(16)
        if not is_sampled(trace_id, 10):
            return trace_id


@pytest.fixture(scope="module")
def pipeline(pipeline_settings: Settings, tmp_path_factory):
    with sampling_pipeline(pipeline_settings, tmp_path_factory.mktemp("sampling")) as running:
        yield running


def kept_spans(settings: Settings, trace_ids: set[bytes], expected: int):
    return read_spans(settings, trace_ids, expected, topic="sampled", timeout=30)


def policy_of(span) -> str:
    return next(kv.value.string_value for kv in span.attributes if kv.key == "sampling.policy")


def test_traces_split_over_requests_and_services_are_decided_whole(pipeline):
    gateway, _ = pipeline
    rng = random.Random(1)
    traces = {unsampled_trace_id(rng): n % 3 == 0 for n in range(30)}  # every third fails
    spans = {}
    for trace_id, failing in traces.items():
        root = make_span(trace_id, name="GET /")
        spans[trace_id] = [root] + [
            make_span(trace_id, root.span_id, f"step{n}", start_ms=n, error=failing and n == 7)
            for n in range(8)
        ]
    # Three services export at different times; each request mixes many traces.
    for service, part in (("frontend", slice(0, 3)), ("cart", slice(3, 6)), ("db", slice(6, 9))):
        post(gateway, request_of({service: [s for t in traces for s in spans[t][part]]}))

    failing = {t for t, f in traces.items() if f}
    found = kept_spans(gateway, set(traces), expected=9 * len(failing))
    assert {span.trace_id for _, span in found.values()} == failing
    for trace_id in failing:
        stored = {sid for sid, (_, span) in found.items() if span.trace_id == trace_id}
        assert stored == {span.span_id for span in spans[trace_id]}
    assert {policy_of(span) for _, span in found.values()} == {"errors"}


def test_latency_rule_keeps_slow_traces_only(pipeline):
    gateway, _ = pipeline
    rng = random.Random(2)
    slow, fast = unsampled_trace_id(rng), unsampled_trace_id(rng)
    post(
        gateway,
        request_of(
            {
                "api": [make_span(slow, duration_ms=1500), make_span(fast, duration_ms=500)],
            }
        ),
    )
    found = kept_spans(gateway, {slow, fast}, expected=1)
    assert [(span.trace_id, policy_of(span)) for _, span in found.values()] == [(slow, "slow")]


def test_late_spans_follow_the_decision(pipeline):
    gateway, [(worker, _)] = pipeline
    rng = random.Random(3)
    kept, dropped = unsampled_trace_id(rng), unsampled_trace_id(rng)
    post(gateway, request_of({"api": [make_span(kept, error=True), make_span(dropped)]}))
    assert kept_spans(gateway, {kept}, expected=1)
    assert wait_until(lambda: decided_total(worker) >= 2, "decisions", 30)

    late_before = worker_metrics(worker).get("spansieve_sampler_late_spans_total:sum", 0)
    late_kept, late_dropped = make_span(kept, name="late"), make_span(dropped, name="late")
    post(gateway, request_of({"api": [late_kept, late_dropped]}))
    found = kept_spans(gateway, {kept, dropped}, expected=2)
    assert late_kept.span_id in found
    assert policy_of(found[late_kept.span_id][1]) == "errors"
    assert {span.trace_id for _, span in found.values()} == {kept}
    assert wait_until(
        lambda: (
            worker_metrics(worker).get("spansieve_sampler_late_spans_total:sum", 0)
            >= late_before + 2
        ),
        "late spans counted",
        15,
    )


def test_probabilistic_share_matches_the_collector_hash(pipeline):
    gateway, [(worker, _)] = pipeline
    rng = random.Random(4)
    trace_ids = [rng.randbytes(16) for _ in range(10_000)]
    before = decided_total(worker)
    for start in range(0, len(trace_ids), 500):
        post(gateway, request_of({"bulk": [make_span(t) for t in trace_ids[start : start + 500]]}))
    predicted = {t for t in trace_ids if is_sampled(t, 10)}
    assert 850 < len(predicted) < 1150  # 10 % of 10 000 within about 5 sigma

    assert wait_until(lambda: decided_total(worker) >= before + 10_000, "10 000 decisions", 120)
    found = kept_spans(gateway, set(trace_ids), expected=len(predicted))
    assert {span.trace_id for _, span in found.values()} == predicted
    assert {policy_of(span) for _, span in found.values()} == {"sample-10pct"}


def test_policy_file_hot_reload_and_rejection(pipeline):
    gateway, [(worker, process)] = pipeline
    policy_file = gateway.policies
    rng = random.Random(5)

    policy_file.write_text(POLICIES.replace("sampling_percentage: 10", "sampling_percentage: 100"))
    os.utime(policy_file)
    assert wait_until(
        lambda: (
            worker_metrics(worker).get(
                'spansieve_sampler_policy_reloads_total{result="applied"}', 0
            )
            >= 1
        ),
        "reload applied",
        15,
    )
    everything = unsampled_trace_id(rng)
    post(gateway, request_of({"api": [make_span(everything)]}))
    [(_, span)] = kept_spans(gateway, {everything}, expected=1).values()
    assert policy_of(span) == "sample-10pct"

    policy_file.write_text("policies:\n  - name: broken\n    type: no_such_policy\n")
    assert wait_until(
        lambda: (
            worker_metrics(worker).get(
                'spansieve_sampler_policy_reloads_total{result="rejected"}', 0
            )
            >= 1
        ),
        "reload rejected",
        15,
    )
    still = unsampled_trace_id(rng)
    post(gateway, request_of({"api": [make_span(still)]}))
    assert kept_spans(gateway, {still}, expected=1)  # the 100 % policy is still in force

    # SIGHUP reloads even when the file's modification time says nothing changed.
    applied = 'spansieve_sampler_policy_reloads_total{result="applied"}'
    before = worker_metrics(worker).get(applied, 0)
    unchanged = policy_file.stat()
    policy_file.write_text(POLICIES)
    os.utime(policy_file, ns=(unchanged.st_atime_ns, unchanged.st_mtime_ns))
    time.sleep(2)  # two ticks: the file watch alone would not notice
    assert worker_metrics(worker).get(applied, 0) == before
    process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: worker_metrics(worker).get(applied, 0) > before, "SIGHUP", 15)


def test_poison_message_goes_to_the_dlq_and_sampling_goes_on(pipeline):
    gateway, [(worker, _)] = pipeline
    producer = Producer({"bootstrap.servers": gateway.kafka_bootstrap})
    producer.produce(gateway.topic("spans"), b"\x0a\xff\xff not protobuf", partition=0)
    producer.flush(10)
    assert wait_until(
        lambda: worker_metrics(worker).get("spansieve_sampler_malformed_messages_total", 0) >= 1,
        "poison counted",
        20,
    )
    consumer = Consumer(
        {
            "bootstrap.servers": gateway.kafka_bootstrap,
            "group.id": f"dlq-{os.getpid()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([gateway.topic("dlq")])
    messages = []
    deadline = time.monotonic() + 20
    while not messages and time.monotonic() < deadline:
        messages = [m for m in consumer.consume(10, timeout=1) if not m.error()]
    consumer.close()
    assert messages and messages[0].value() == b"\x0a\xff\xff not protobuf"
    assert dict(messages[0].headers())["reason"].startswith(b"malformed")

    after = unsampled_trace_id(random.Random(6))
    post(gateway, request_of({"api": [make_span(after, error=True)]}))
    assert kept_spans(gateway, {after}, expected=1)
