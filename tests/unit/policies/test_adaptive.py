import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config.yaml_file import ConfigError
from pipeline.policies.adaptive import Adaptive, root_operation
from pipeline.policies.adaptive_rates import AdaptiveRates, allocate
from pipeline.policies.config import load_policy_text
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.engine import PolicyEngine
from pipeline.policies.trace import TraceView

from .helpers import FakeClock, span, traces

POLICIES = """\
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: adaptive
    type: adaptive
    adaptive: {target_spans_per_second: 300, interval: 10s, floor_traces_per_minute: 6}
"""


def trace_of(rng: random.Random, service: str, name: str, spans: int, error: bool = False):
    root = span(name, 0, 5, status=2 if error else 0)
    children = [span(f"{name}/child", 1, 2) for _ in range(spans - 1)]
    for child in children:
        child.parent_span_id = b"\x01" * 8
    data = traces(({"service.name": service}, [root, *children]))
    return TraceView(data, rng.randbytes(16))


# --- allocation ---------------------------------------------------------------------


def test_water_filling_gives_small_operations_all_and_splits_the_rest():
    p = allocate(100.0, {("a", "x"): 10.0, ("a", "y"): 200.0, ("b", "z"): 400.0})
    assert p[("a", "x")] == 1.0  # needs less than a third: keeps everything
    assert p[("a", "y")] == pytest.approx(45.0 / 200.0)  # (100 - 10) / 2 each
    assert p[("b", "z")] == pytest.approx(45.0 / 400.0)


@given(
    st.floats(min_value=0, max_value=1e6),
    st.dictionaries(
        st.tuples(st.text(max_size=3), st.text(max_size=3)),
        st.floats(min_value=0.001, max_value=1e5),
        max_size=20,
    ),
)
def test_allocation_spends_the_budget_or_keeps_everything(budget, demand):
    p = allocate(budget, demand)
    assert set(p) == set(demand)
    assert all(0 <= v <= 1 for v in p.values())
    kept = sum(p[op] * need for op, need in demand.items())
    assert kept == pytest.approx(min(budget, sum(demand.values())), rel=1e-6, abs=1e-6)


# --- the policy in the engine --------------------------------------------------------


def run(engine: PolicyEngine, clock: FakeClock, rng, seconds: int, scale: float, kept: list):
    """``seconds`` of traffic (x ``scale``): checkout 100 traces/s of 5 spans, search
    40/s of 1 span, 2 % of each with an error; kept spans (and errors) per second."""
    for _ in range(seconds):
        clock.advance(1.0)
        spans_kept = errors_kept = errors = 0
        for service, name, per_second, size in (
            ("checkout", "POST /orders", 100, 5),
            ("search", "GET /search", 40, 1),
        ):
            for _ in range(round(per_second * scale)):
                error = rng.random() < 0.02
                trace = trace_of(rng, service, name, size, error)
                decision = engine.evaluate(trace)
                errors += error
                if decision.sampled:
                    spans_kept += size
                    errors_kept += error
        kept.append((spans_kept, errors, errors_kept))


def per_interval(kept: list, interval: int = 10) -> list[float]:
    """Kept spans a second, averaged over each interval."""
    return [
        sum(k[0] for k in kept[i : i + interval]) / interval
        for i in range(0, len(kept) - interval + 1, interval)
    ]


def test_the_kept_volume_returns_to_the_target_after_traffic_doubles_and_halves():
    """540 spans/s offered, target 300: then x2, then x0.5 (back to 540). From the third
    interval after each step every interval is within 10 % of the target, and no error
    trace is ever dropped. (The first second after a start keeps 0.1 % of the rest.)"""
    clock = FakeClock()
    rng = random.Random(11)
    engine = PolicyEngine(load_policy_text(POLICIES), clock=clock)
    phases = []
    for scale in (1.0, 2.0, 1.0):
        kept: list = []
        run(engine, clock, rng, 60, scale, kept)
        phases.append(kept)
        intervals = per_interval(kept)
        for rate in intervals[2:]:
            assert 270 <= rate <= 330, (scale, intervals)
        assert all(errors == errors_kept for _, errors, errors_kept in kept)


def test_errors_count_against_the_target_first():
    clock = FakeClock()
    rates = AdaptiveRates(100.0, 10.0, 0.0, clock)
    for _ in range(10):
        rates.observe(("a", "x"), 8, kept_by_other=True)  # 8 spans/s kept by others
        rates.observe(("a", "x"), 10, kept_by_other=False)
        rates.observe(("a", "y"), 100, kept_by_other=False)
    clock.advance(1.0)
    rates.advance()  # the first interval is one second long
    assert rates.last_must == 80.0
    # budget 100 - 80 = 20: x (100 spans/s) and y (1000 spans/s) get 10 each
    assert rates.probability(("a", "x")) == pytest.approx(0.1)
    assert rates.probability(("a", "y")) == pytest.approx(0.01)


def test_a_rare_operation_keeps_its_floor():
    clock = FakeClock()
    rates = AdaptiveRates(10.0, 10.0, floor_traces_per_minute=6, clock=clock)
    for _ in range(1000):
        rates.observe(("a", "busy"), 10, kept_by_other=False)
    rates.observe(("a", "rare"), 1000, kept_by_other=False)  # one huge trace
    clock.advance(10.0)
    rates.advance()
    # 0.1 traces/s of "rare": the floor of 6 a minute keeps every one of them
    assert rates.probability(("a", "rare")) == 1.0
    assert rates.probability(("a", "busy")) < 0.1


def test_the_target_is_shared_by_the_live_workers():
    clock = FakeClock()
    rates = AdaptiveRates(100.0, 10.0, 0.0, clock, workers=lambda: 4)
    for _ in range(100):
        rates.observe(("a", "x"), 10, kept_by_other=False)
    clock.advance(1.0)
    rates.advance()
    assert rates.probability(("a", "x")) == pytest.approx(25.0 / 1000.0)


def test_the_same_trace_gets_the_same_decision_on_every_worker():
    clock = FakeClock()
    rng = random.Random(5)
    workers = [Adaptive("adaptive", AdaptiveRates(50.0, 10.0, 0.0, clock)) for _ in range(2)]
    for worker in workers:
        worker.rates.probabilities = {("api", "GET /"): 0.3}
        worker.rates._started = clock()
        worker.rates._length = 10.0
    decisions = [[], []]
    for _ in range(500):
        trace = trace_of(rng, "api", "GET /", 1)
        for i, worker in enumerate(workers):
            decisions[i].append(worker.evaluate(trace))
    assert decisions[0] == decisions[1]
    assert 0.25 < decisions[0].count(SAMPLED) / 500 < 0.35
    assert NOT_SAMPLED in decisions[0]


def test_the_root_operation_is_the_root_spans_or_else_the_first_spans():
    rng = random.Random(1)
    assert root_operation(trace_of(rng, "api", "GET /", 3)) == ("api", "GET /")
    child = span("child")
    child.parent_span_id = b"\x02" * 8
    orphan = TraceView(traces(({"service.name": "db"}, [child])), b"\x00" * 16)
    assert root_operation(orphan) == ("db", "child")


def test_adaptive_is_refused_inside_another_policy():
    with pytest.raises(ConfigError, match="adaptive"):
        load_policy_text(
            "policies:\n"
            "  - name: both\n"
            "    type: and\n"
            "    and:\n"
            "      and_sub_policy:\n"
            "        - name: a\n"
            "          type: adaptive\n"
            "          adaptive: {target_spans_per_second: 5}\n"
        )
