import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config.yaml_file import ConfigError
from pipeline.policies.adaptive import Adaptive, root_operation
from pipeline.policies.adaptive_rates import (
    HEAD_MIN_PROBABILITY,
    AdaptiveRates,
    Allotment,
    Traffic,
    allocate,
    head_rates,
    water_fill,
)
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


# --- the fleet: pooled slots and head-sampling rates ---------------------------------


class PoolByHand:
    """An exchange the test drives: it holds the rates; the test ends the slots."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rates: AdaptiveRates | None = None

    def attach(self, rates: AdaptiveRates) -> None:
        self.rates = rates


def test_workers_that_pool_their_traffic_hold_the_same_probabilities_for_the_whole_target():
    """Two workers see different shares of the traffic; from the pooled slot both
    compute the probabilities of the whole target, not of their own share."""
    clock = FakeClock(1_000.0)  # a slot boundary for a 10 s interval
    exchanges = [PoolByHand(clock), PoolByHand(clock)]
    workers = [AdaptiveRates(100.0, 10.0, 0.0, exchange=e, workers=lambda: 2) for e in exchanges]
    assert all(e.rates is w for e, w in zip(exchanges, workers, strict=True))
    for i, worker in enumerate(workers):
        for _ in range(300 * (i + 1)):  # 300 and 600 traces of 10 spans in the slot
            worker.observe(("a", "x"), 10, kept_by_other=False)
        worker.observe(("a", "err"), 50, kept_by_other=True, kept=True)
    clock.advance(10.0)
    taken = [worker.take_slot() for worker in workers]
    assert [seconds for _, seconds in taken] == [10.0, 10.0]
    fleet = Traffic()
    for own, _ in taken:
        fleet.add(own)
    assert fleet.rest[("a", "x")] == [900, 9000] and fleet.must_spans == 100
    for worker, (own, seconds) in zip(workers, taken, strict=True):
        allotment = worker.apply_slot(own, seconds, fleet)
        assert worker.pooled
        assert allotment is not None and allotment.demand == {("a", "x"): 900.0}
    # 100 - 10 must = 90 of 900 spans/s, the same on both workers
    assert [w.probability(("a", "x")) for w in workers] == [pytest.approx(0.1)] * 2


def test_a_worker_without_the_pool_aims_at_its_share_of_the_target():
    clock = FakeClock(1_000.0)
    rates = AdaptiveRates(100.0, 10.0, 0.0, exchange=PoolByHand(clock), workers=lambda: 2)
    for _ in range(100):
        rates.observe(("a", "x"), 10, kept_by_other=False)
    clock.advance(10.0)
    own, seconds = rates.take_slot()
    rates.apply_slot(own, seconds, None)  # Redis failed: own counts, target / 2
    assert not rates.pooled
    assert rates.probability(("a", "x")) == pytest.approx(50.0 / 100.0)


def test_an_exchange_drives_the_slots_so_decisions_never_end_them():
    clock = FakeClock(1_000.0)
    rates = AdaptiveRates(100.0, 10.0, 0.0, exchange=PoolByHand(clock))
    rates.observe(("a", "x"), 10, kept_by_other=False)
    clock.advance(25.0)
    rates.probability(("a", "x"))  # learns the first second, leaves the slot to the pool
    own, seconds = rates.take_slot()  # every slot that has ended: 1 000 to 1 020
    assert own.rest == {("a", "x"): [1, 10]} and seconds == 20.0


# --- counted in the slot a decision fell due in --------------------------------------


def test_a_trace_counts_in_the_slot_its_decision_fell_due_in():
    clock = FakeClock(1_000.0)
    rates = AdaptiveRates(100.0, 10.0, 0.0, exchange=PoolByHand(clock), decision_lag=1.5)
    clock.advance(11.0)  # slot 100 ended a second ago; its last traces are being decided
    rates.observe(("a", "late"), 1, kept_by_other=False, due=1_009.5)
    rates.observe(("a", "next"), 1, kept_by_other=False, due=1_010.5)
    own, seconds = rates.take_slot(100)
    assert set(own.rest) == {("a", "late")} and seconds == 10.0
    # a trace due in a slot already taken (a backlog) counts in the oldest open one
    rates.observe(("a", "backlog"), 1, kept_by_other=False, due=900.0)
    clock.advance(10.0)
    own, seconds = rates.take_slot(101)
    assert set(own.rest) == {("a", "next"), ("a", "backlog")} and seconds == 10.0


@pytest.mark.parametrize("phase", [0.0, 0.001, 0.5, 0.999])
def test_slots_count_the_same_traffic_whichever_ticks_decide_it(phase):
    """100 traces a second, decided in ticks once a second, ``phase`` after the whole
    second: each 2 s slot counts exactly its 200 traces. Counted by decision time a slot
    would hold one to three ticks (100 to 300 traces) when ticks fall on its edges."""
    interval, lag = 2.0, 1.5
    clock = FakeClock(1_000.0)
    rates = AdaptiveRates(100.0, interval, 0.0, exchange=PoolByHand(clock), decision_lag=lag)
    pending = [1_000.0 + i / 100 for i in range(3_000)]  # 30 s of due times
    ticks = [(1_000.0 + second + phase, "tick") for second in range(1, 31)]
    takes = [(1_000.0 + end + lag, "take") for end in range(2, 30, 2)]
    counted = []
    for clock.now, event in sorted(ticks + takes):
        if event == "tick":  # decides every trace due by now
            while pending and pending[0] <= clock.now:
                rates.observe(("a", "x"), 1, kept_by_other=False, due=pending.pop(0))
        else:  # the exchange takes the slot that ended ``lag`` ago
            own, _ = rates.take_slot(round((clock.now - lag) / interval) - 1)
            counted.append(own.rest.get(("a", "x"), [0, 0])[0])
    assert len(counted) == 14 and all(count == 200 for count in counted), counted


def test_water_filling_gives_each_operation_its_room():
    room = water_fill(100.0, {("a", "x"): 10.0, ("a", "y"): 200.0, ("b", "z"): 400.0})
    assert room[("a", "x")] == pytest.approx(100.0 / 3 / 10.0)  # could take a third
    assert room[("a", "y")] == pytest.approx(45.0 / 200.0)
    assert room[("b", "z")] == pytest.approx(45.0 / 400.0)


def test_head_rates_move_from_what_sdks_were_served():
    x, y, new = ("a", "x"), ("a", "y"), ("a", "new")
    allotment = Allotment({x: 400.0, y: 10.0, new: 100.0}, {x: 0.125, y: 5.0, new: 0.5}, 0.2)
    rates = head_rates({x: 0.5, y: 0.1}, allotment)
    assert rates[x] == pytest.approx(0.5 * 0.125**0.5)  # half the way down (in log)
    assert rates[y] == pytest.approx(0.2)  # rises, at most twice a step
    assert rates[new] == pytest.approx(0.5**0.5)  # never served: from 1
    assert head_rates({x: 0.7}, Allotment({x: 1.0}, {x: 50.0}, 1.0))[x] == 1.0
    assert head_rates({x: 1e-9}, allotment)[x] == HEAD_MIN_PROBABILITY


@given(
    st.floats(min_value=0, max_value=1e5),
    st.dictionaries(
        st.tuples(st.text(max_size=2), st.text(max_size=2)),
        st.tuples(st.floats(min_value=0.01, max_value=1e4), st.floats(0, 1)),
        max_size=10,
    ),
)
def test_head_rates_settle_where_the_sampler_keeps_its_budget(budget, operations):
    """Served rates fed back through the SDKs: the traffic reaching the sampler shrinks
    to what water-filling the raw traffic would keep, and stays there."""
    raw = {op: need for op, (need, _) in operations.items()}
    served = {op: max(HEAD_MIN_PROBABILITY, start) for op, (_, start) in operations.items()}
    for _ in range(60):
        arriving = {op: raw[op] * served[op] for op in raw}
        served = head_rates(served, Allotment(arriving, water_fill(budget, arriving), 1.0))
    expected = allocate(budget, raw)
    for op in raw:
        assert raw[op] * served[op] == pytest.approx(
            raw[op] * expected[op], rel=0.02, abs=raw[op] * HEAD_MIN_PROBABILITY * 2 + 1e-9
        )


def test_a_long_salt_is_accepted_and_decides_apart_from_its_prefix():
    clock = FakeClock()
    long, prefix = "s" * 80, "s" * 64
    policies = [
        Adaptive("a", AdaptiveRates(50.0, 10.0, 0.0, clock), salt) for salt in (long, prefix)
    ]
    rng = random.Random(2)
    decisions = [[], []]
    for _ in range(200):
        trace = trace_of(rng, "api", "GET /", 1)
        for i, policy in enumerate(policies):
            policy.rates.probabilities = {("api", "GET /"): 0.5}
            decisions[i].append(policy.evaluate(trace))
    assert decisions[0] != decisions[1]
