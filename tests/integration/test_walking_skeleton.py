"""A trace from the real OpenTelemetry SDK flows gateway -> Kafka -> worker -> OpenSearch."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from opensearchpy import OpenSearch

from pipeline.config.settings import SPAN_ALIAS, Settings
from pipeline.local.demo import send_demo_trace
from pipeline.local.run import wait_until
from pipeline.store.fields import status_of
from pipeline.store.indices import trace_span_count
from tests.integration.conftest import DECISION_WAIT

pytestmark = pytest.mark.integration

DEMO_SPANS = 5
VISIBLE_WITHIN = DECISION_WAIT + 30


def decided(settings: Settings, decision: str) -> float:
    """The worker's count of traces decided one way (from its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/metrics").text
    pattern = rf'spansieve_sampler_traces_decided_total{{decision="{decision}"[^}}]*}} (\S+)'
    return sum(float(value) for value in re.findall(pattern, text))


def test_error_trace_is_stored_whole(pipeline_settings: Settings, opensearch: OpenSearch):
    gateway = f"http://127.0.0.1:{pipeline_settings.gateway_http_port}"
    trace_id = send_demo_trace(gateway, fail=True)

    assert wait_until(
        lambda: trace_span_count(opensearch, trace_id) == DEMO_SPANS, "error trace", VISIBLE_WITHIN
    ), f"trace {trace_id} not stored whole within {VISIBLE_WITHIN}s"

    hits = opensearch.search(
        index=SPAN_ALIAS, body={"query": {"term": {"traceId": trace_id}}, "size": 50}
    )["hits"]["hits"]
    spans = [hit["_source"] for hit in hits]
    assert {span["serviceName"] for span in spans} == {"frontend", "checkout", "payments"}
    roots = [span for span in spans if span["parentSpanId"] == ""]
    assert [root["name"] for root in roots] == ["GET /checkout"]
    assert all(span["traceGroup"] == "GET /checkout" for span in spans)
    errors = [span for span in spans if status_of(span)[0] == 2]
    assert [(e["serviceName"], status_of(e)[1]) for e in errors] == [("payments", "card declined")]


def test_trace_without_error_is_dropped_at_zero_percent(
    pipeline_settings: Settings, opensearch: OpenSearch
):
    gateway = f"http://127.0.0.1:{pipeline_settings.gateway_http_port}"
    dropped_before = decided(pipeline_settings, "not_sampled")
    trace_id = send_demo_trace(gateway, fail=False)

    assert wait_until(
        lambda: decided(pipeline_settings, "not_sampled") > dropped_before,
        "decision",
        VISIBLE_WITHIN,
    ), "the error-free trace was never decided"
    time.sleep(3)  # longer than the index refresh interval
    assert trace_span_count(opensearch, trace_id) == 0
