"""The adaptive policies' gauges on the worker's /metrics."""

import random

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.policies.config import load_policy_text
from pipeline.policies.engine import PolicyEngine
from pipeline.sampler.metrics import ADAPTIVE_OPERATIONS_EXPOSED, AdaptiveCollector
from tests.unit.policies.helpers import FakeClock
from tests.unit.policies.test_adaptive import POLICIES, trace_of


def test_the_worker_exposes_target_kept_offered_and_the_busiest_probabilities():
    clock = FakeClock()
    rng = random.Random(3)
    engine = PolicyEngine(load_policy_text(POLICIES), clock=clock)
    for second in range(3):
        clock.advance(1.0)
        for n in range(ADAPTIVE_OPERATIONS_EXPOSED + 20):  # more operations than exposed
            engine.evaluate(trace_of(rng, "api", f"GET /{n}", 2, error=n == 0 and second))
    registry = CollectorRegistry()
    registry.register(AdaptiveCollector(lambda: engine))
    text = generate_latest(registry).decode()
    assert 'spansieve_adaptive_target_spans_per_second{policy="adaptive"} 300.0' in text
    assert 'spansieve_adaptive_offered_spans_per_second{policy="adaptive"}' in text
    assert 'spansieve_adaptive_kept_spans_per_second{policy="adaptive"}' in text
    assert text.count("spansieve_adaptive_probability{") == ADAPTIVE_OPERATIONS_EXPOSED
