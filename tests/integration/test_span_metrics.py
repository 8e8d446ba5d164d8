"""Span metrics from a real worker (SPANSIEVE_SPAN_METRICS=true): exact calls per service
on the red-metrics topic, read with confluent-kafka and decoded with opentelemetry-proto."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.config.settings import Settings
from tests.integration.sampling_helpers import (
    BASE_NS,
    make_span,
    post,
    request_of,
    sampling_pipeline,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(pipeline_settings: Settings, tmp_path_factory):
    settings = pipeline_settings.model_copy(
        update={
            "span_metrics": True,
            "decision_wait": 2.0,
            "span_metrics_window": 2.0,
            "span_metrics_grace": 1.0,
        }
    )
    policies = "decision_wait: 2s\npolicies:\n  - {name: errors, type: status_code, " + (
        "status_code: {status_codes: [ERROR]}}\n"
    )
    folder = tmp_path_factory.mktemp("span-metrics")
    with sampling_pipeline(settings, folder, policies) as running:
        yield running


def calls_per_service(settings: Settings, seconds: float) -> tuple[Counter, list]:
    """Sum of traces.span.metrics.calls per service.name over the red-metrics topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    topic = settings.topic("red-metrics")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    calls: Counter = Counter()
    keys = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() or not message.value():
                    continue
                keys.append(message.key())
                request = ExportMetricsServiceRequest.FromString(message.value())
                for rm in request.resource_metrics:
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            if metric.name != "traces.span.metrics.calls":
                                continue
                            for point in metric.sum.data_points:
                                service = next(
                                    kv.value.string_value
                                    for kv in point.attributes
                                    if kv.key == "service.name"
                                )
                                calls[service] += point.as_int
    finally:
        consumer.close()
    return calls, keys


def test_red_metrics_topic_counts_every_span_once(pipeline):
    gateway, _ = pipeline
    rng = random.Random(12)
    shift = time.time_ns() - BASE_NS  # spans end now: windows close as event time moves on
    expected: Counter = Counter()
    for n in range(40):
        trace_id = rng.randbytes(16)
        root = make_span(trace_id, name="GET /")
        child = make_span(trace_id, root.span_id, "charge", start_ms=1, error=n % 4 == 0)
        extra = [make_span(trace_id, root.span_id, f"step{k}", start_ms=2) for k in range(n % 3)]
        for span in (root, child, *extra):
            span.start_time_unix_nano += shift
            span.end_time_unix_nano += shift
        post(gateway, request_of({"web": [root, *extra], "payments": [child]}))
        expected["web"] += 1 + len(extra)
        expected["payments"] += 1
    # decision_wait 2 s + window 2 s + grace 1 s, then ticks and Kafka: well within 30 s.
    deadline = time.monotonic() + 60
    calls: Counter = Counter()
    while time.monotonic() < deadline:
        calls, keys = calls_per_service(gateway, 3)
        if calls == expected:
            break
    assert calls == expected
    time.sleep(4)  # nothing counted twice later on
    calls, keys = calls_per_service(gateway, 3)
    assert calls == expected
    assert len(keys) == len(set(keys))
