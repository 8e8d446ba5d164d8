"""Rules that decide before decision_wait: root wait, max age, overflow, trace size."""

from __future__ import annotations

import os
import random

import pytest

from pipeline.config.settings import Settings
from pipeline.local.run import wait_until
from tests.integration.kafka_helpers import read_spans
from tests.integration.sampling_helpers import (
    make_span,
    post,
    request_of,
    sampling_pipeline,
    worker_metrics,
)

pytestmark = pytest.mark.integration

# decision_wait alone would hold every trace for a minute: anything kept sooner was
# decided by one of the other rules.
POLICIES = """\
decision_wait: 60s
decision_wait_after_root_received: 1s
max_trace_age: 5s
num_traces: 20
maximum_trace_size_bytes: 4000
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"""


@pytest.fixture(scope="module")
def pipeline(pipeline_settings: Settings, tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    with sampling_pipeline(pipeline_settings, folder, POLICIES) as running:
        yield running


def kept(gateway: Settings, trace_ids: set[bytes], expected: int, timeout: float):
    found = read_spans(gateway, trace_ids, expected, topic="sampled", timeout=timeout)
    return {span.trace_id for _, span in found.values()}


def test_root_received_shortens_the_wait(pipeline):
    gateway, _ = pipeline
    trace_id = os.urandom(16)
    root = make_span(trace_id, name="root", error=True)
    post(gateway, request_of({"api": [root, make_span(trace_id, root.span_id)]}))
    assert kept(gateway, {trace_id}, expected=2, timeout=20) == {trace_id}


def test_max_trace_age_caps_a_rootless_trace(pipeline):
    gateway, _ = pipeline
    trace_id = os.urandom(16)
    post(gateway, request_of({"api": [make_span(trace_id, os.urandom(8), error=True)]}))
    assert kept(gateway, {trace_id}, expected=1, timeout=30) == {trace_id}


def test_overflow_decides_the_oldest_early(pipeline):
    gateway, [(worker, _)] = pipeline
    rng = random.Random(12)
    trace_ids = [rng.randbytes(16) for _ in range(60)]  # three times num_traces, no roots
    post(gateway, request_of({"api": [make_span(t, os.urandom(8), error=True) for t in trace_ids]}))
    assert wait_until(
        lambda: worker_metrics(worker).get("spansieve_sampler_early_decisions_total", 0) >= 40,
        "early decisions",
        20,
    )
    # Decided early, still by the policies: every one of them is kept, none is lost.
    assert kept(gateway, set(trace_ids), expected=60, timeout=30) == set(trace_ids)


def test_a_trace_over_the_size_limit_is_dropped_with_its_late_spans(pipeline):
    gateway, [(worker, _)] = pipeline
    trace_id = os.urandom(16)
    root = make_span(trace_id, name="root" * 200, error=True)  # about 800 bytes each
    spans = [root] + [make_span(trace_id, root.span_id, "child" * 200) for _ in range(5)]
    post(gateway, request_of({"api": spans}))
    assert wait_until(
        lambda: worker_metrics(worker).get("spansieve_sampler_traces_oversized_total", 0) >= 1,
        "oversized trace dropped",
        20,
    )
    post(gateway, request_of({"api": [make_span(trace_id, root.span_id, error=True)]}))
    late = 'spansieve_sampler_late_spans_total{decision="not_sampled"}'
    assert wait_until(lambda: worker_metrics(worker).get(late, 0) >= 1, "late span dropped", 20)
    # A small error trace sent afterwards is kept; the oversized one never reached Kafka.
    control = os.urandom(16)
    post(gateway, request_of({"api": [make_span(control, name="root", error=True)]}))
    assert kept(gateway, {trace_id, control}, expected=1, timeout=20) == {control}
