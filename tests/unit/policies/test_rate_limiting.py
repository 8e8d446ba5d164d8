from pipeline.policies.config import load_policy_text
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.limiter import TokenBucket
from pipeline.policies.rate_limiting import RateLimiting
from pipeline.policies.registry import build_policy

from .helpers import FakeClock, span, view


def spans(n):
    return view(*(span() for _ in range(n)))


def test_burst_is_twice_the_rate_and_refills_continuously():
    clock = FakeClock()
    policy = RateLimiting("r", spans_per_second=10, clock=clock)
    assert policy.evaluate(spans(20)) is SAMPLED  # full bucket: burst 20
    assert policy.evaluate(spans(1)) is NOT_SAMPLED
    clock.advance(0.5)  # +5 tokens
    assert policy.evaluate(spans(6)) is NOT_SAMPLED
    assert policy.evaluate(spans(5)) is SAMPLED
    clock.advance(100)
    assert policy.evaluate(spans(21)) is NOT_SAMPLED  # bigger than the burst: never
    assert policy.evaluate(spans(20)) is SAMPLED


def test_explicit_burst_capacity():
    clock = FakeClock()
    policy = RateLimiting("r", spans_per_second=10, burst_capacity=3, clock=clock)
    assert policy.evaluate(spans(3)) is SAMPLED
    assert policy.evaluate(spans(1)) is NOT_SAMPLED
    clock.advance(0.1)
    assert policy.evaluate(spans(1)) is SAMPLED


def test_refusals_do_not_consume():
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    assert not bucket.allow(3)
    assert bucket.allow(2)


def test_clock_going_back_refills_nothing():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=10, clock=clock)
    assert bucket.allow(10)
    clock.advance(-5)
    assert not bucket.allow(1)
    clock.advance(5.05)  # refills count from the last grant (1000 s), as Go's limiter
    assert not bucket.allow(1)
    clock.advance(0.1)
    assert bucket.allow(1)


def test_zero_rate_spends_the_burst_once():
    clock = FakeClock()
    bucket = TokenBucket(rate=0, burst=3, clock=clock)
    assert bucket.allow(2)
    clock.advance(1000)
    assert not bucket.allow(2)
    assert bucket.allow(1)
    assert RateLimiting("r", 0, clock=clock).evaluate(spans(1)) is NOT_SAMPLED


class FleetState:
    """A SharedState whose budgets are plain buckets, recording what was asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, float, int]] = []

    def budget(self, policy: str, kind: str, rate: float, burst: int):
        self.asked.append((policy, kind, rate, burst))
        return TokenBucket(rate, burst, FakeClock())

    def percentile_exchange(self, policy, slot_seconds, slots):  # pragma: no cover
        raise AssertionError("not a percentile policy")


FLEET_POLICIES = """\
policies:
  - name: spans
    type: rate_limiting
    rate_limiting: {spans_per_second: 100, scope: fleet}
  - name: bytes
    type: bytes_limiting
    bytes_limiting: {bytes_per_second: 5000, burst_capacity: 6000, scope: fleet}
  - name: own
    type: rate_limiting
    rate_limiting: {spans_per_second: 100}
"""


def test_scope_fleet_takes_the_shared_budget_and_worker_keeps_its_own():
    config = load_policy_text(FLEET_POLICIES)
    shared = FleetState()
    built = [build_policy(p, FakeClock(), shared) for p in config.policies]
    assert shared.asked == [("spans", "spans", 100, 200), ("bytes", "bytes", 5000, 6000)]
    assert isinstance(built[2].bucket, TokenBucket)  # scope worker: never asks
    # Without shared state (policies check, a lone worker) fleet falls back to its own.
    alone = build_policy(config.policies[0], FakeClock())
    assert isinstance(alone.bucket, TokenBucket)
