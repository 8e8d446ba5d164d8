import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.policies.config import load_policy_text
from pipeline.policies.decision import (
    DROPPED,
    ERROR,
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
    combine,
)
from pipeline.policies.engine import PolicyEngine

from .helpers import FakeClock, Fixed, span, view

NON_DROP = [SAMPLED, NOT_SAMPLED, INVERT_SAMPLED, INVERT_NOT_SAMPLED, ERROR]
DROP = [DROPPED, NOT_SAMPLED, ERROR]


def reference(items, sample_on_first_match):
    """The collector's makeDecision, written plainly: (keep?, decision of the keeper)."""
    ordered = [d for is_drop, d, _ in items if is_drop] + [
        d for is_drop, d, _ in items if not is_drop
    ]
    seen = []
    for d in ordered:
        seen.append(d)
        if d == DROPPED:
            break
        if sample_on_first_match and d == SAMPLED:
            break
    if DROPPED in seen:
        return False
    if INVERT_NOT_SAMPLED in seen:
        return False
    if SAMPLED in seen:
        return True
    return INVERT_SAMPLED in seen and NOT_SAMPLED not in seen


policy_lists = st.lists(
    st.one_of(
        st.tuples(st.just(True), st.sampled_from(DROP), st.booleans()),
        st.tuples(st.just(False), st.sampled_from(NON_DROP), st.booleans()),
    ),
    max_size=8,
)


def engine_for(items, sample_on_first_match=False):
    stubs = [
        (Fixed(f"p{i}", d, stateful=stateful), is_drop)
        for i, (is_drop, d, stateful) in enumerate(items)
    ]
    engine = PolicyEngine.from_evaluators(stubs, sample_on_first_match=sample_on_first_match)
    return engine, [s for s, _ in stubs]


@settings(max_examples=500)
@given(policy_lists, st.booleans())
def test_precedence_matches_reference(items, first_match):
    engine, _ = engine_for(items, first_match)
    result = engine.evaluate(view(span()))
    assert result.sampled == reference(items, first_match)
    assert result.final in (SAMPLED, NOT_SAMPLED, DROPPED)
    assert result.sampled == (result.final is SAMPLED)


@settings(max_examples=300)
@given(policy_lists)
def test_stateful_policies_run_whenever_the_collector_runs_them(items):
    engine, stubs = engine_for(items)
    engine.evaluate(view(span()))
    ordered = [s for s, (is_drop, _, _) in zip(stubs, items, strict=True) if is_drop] + [
        s for s, (is_drop, _, _) in zip(stubs, items, strict=True) if not is_drop
    ]
    reached = True  # the collector evaluates every policy until a Dropped
    for stub in ordered:
        if stub.stateful:
            assert stub.calls == (1 if reached else 0), stub.name
        if stub.decision is DROPPED:
            reached = False


@given(st.lists(st.sampled_from([*NON_DROP, DROPPED])))
def test_combine_is_the_precedence_table(decisions):
    expected = reference([(False, d, False) for d in decisions], False)
    assert (combine(decisions) is SAMPLED) == expected


def test_deciding_policy_names():
    e, _ = engine_for(
        [(False, NOT_SAMPLED, False), (False, SAMPLED, False), (False, SAMPLED, False)]
    )
    r = e.evaluate(view())
    assert (r.sampled, r.policy) == (True, "p1")
    e, _ = engine_for([(False, SAMPLED, False), (True, DROPPED, False)])
    r = e.evaluate(view())
    assert (r.sampled, r.policy, r.final) == (False, "p1", DROPPED)
    assert r.per_policy == {"p1": DROPPED}  # drop policies first; evaluation stops there
    e, _ = engine_for([(False, INVERT_SAMPLED, False), (False, INVERT_NOT_SAMPLED, False)])
    r = e.evaluate(view())
    assert (r.sampled, r.policy) == (False, "p1")
    e, _ = engine_for([(False, INVERT_SAMPLED, False)])
    assert e.evaluate(view()).policy == "p0"
    e, _ = engine_for([(False, NOT_SAMPLED, False)])
    assert e.evaluate(view()).policy is None


def test_lazy_skips_stateless_after_the_outcome_is_known():
    e, stubs = engine_for(
        [(False, SAMPLED, False), (False, NOT_SAMPLED, False), (False, NOT_SAMPLED, True)]
    )
    r = e.evaluate(view())
    assert r.sampled
    assert [s.calls for s in stubs] == [1, 0, 1]
    assert set(r.per_policy) == {"p0", "p2"}


def test_a_later_inverter_is_still_evaluated():
    e, stubs = engine_for(
        [(False, SAMPLED, False), (False, NOT_SAMPLED, False), (False, INVERT_NOT_SAMPLED, False)]
    )
    r = e.evaluate(view())
    assert not r.sampled and r.policy == "p2"
    assert [s.calls for s in stubs] == [1, 1, 1]


def test_sample_on_first_match_stops():
    e, stubs = engine_for(
        [(False, SAMPLED, False), (False, INVERT_NOT_SAMPLED, True)], sample_on_first_match=True
    )
    assert e.evaluate(view()).sampled
    assert stubs[1].calls == 0


def test_a_crashing_policy_counts_as_error():
    class Boom(Fixed):
        def evaluate(self, trace):
            raise RuntimeError("boom")

    e = PolicyEngine.from_evaluators([(Boom("b", SAMPLED), False), (Fixed("s", SAMPLED), False)])
    r = e.evaluate(view())
    assert r.sampled and r.per_policy["b"] is ERROR


DEFAULTISH = """
policies:
  - {name: drop-hc, type: drop, drop: {drop_sub_policy: [
      {name: hc, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}]}}
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 1000}}
  - name: budget
    type: composite
    composite:
      max_total_spans_per_second: 4
      composite_sub_policy:
        - {name: vip, type: boolean_attribute, boolean_attribute: {key: vip, value: true}}
      rate_allocation: [{policy: vip, percent: 100}]
  - {name: rate, type: rate_limiting, rate_limiting: {spans_per_second: 1}}
"""


def test_configured_engine_end_to_end():
    clock = FakeClock()
    engine = PolicyEngine(load_policy_text(DEFAULTISH), clock)
    healthz_error = view(span(attrs={"http.route": "/healthz"}, status=2))
    r = engine.evaluate(healthz_error)
    assert (r.sampled, r.policy, r.final) == (False, "drop-hc", DROPPED)
    r = engine.evaluate(view(span(status=2)))
    assert (r.sampled, r.policy) == (True, "errors")
    r = engine.evaluate(view(span(end_ms=1500)))
    assert (r.sampled, r.policy) == (True, "slow")
    r = engine.evaluate(view(span(attrs={"vip": True}), span()))
    assert (r.sampled, r.policy) == (True, "budget/vip")
    # rate_limiting is stateful, so it ran (and spent a token) for each of the 2 traces
    # above that reached it, although they were kept by other policies: its burst of 2 is
    # gone, exactly as in the collector
    r = engine.evaluate(view(span(attrs={"vip": True}), span(), span()))
    assert not r.sampled and r.policy is None  # budget: 2 + 3 > 4; rate: no tokens
    assert r.per_policy["rate"] is NOT_SAMPLED
    clock.advance(2.0)  # +2 tokens
    r = engine.evaluate(view(span(), span()))
    assert (r.sampled, r.policy) == (True, "rate")
    assert engine.attribute_keys == frozenset({"http.route", "vip"})


def test_engine_view_uses_only_needed_keys():
    engine = PolicyEngine(load_policy_text(DEFAULTISH), FakeClock())
    v = view(span(attrs={"vip": True, "other": 1}))
    engine.evaluate(v)
    assert set(v.span_attrs[0]) <= {"vip", "http.route"}


def test_many_random_traces_keep_precedence_with_real_policies():
    rng = random.Random(5)
    engine = PolicyEngine(load_policy_text(DEFAULTISH), FakeClock())
    for _ in range(200):
        s = span(
            attrs={"http.route": rng.choice(["/healthz", "/api"])},
            status=rng.choice([0, 2]),
            end_ms=rng.choice([10, 2000]),
        )
        r = engine.evaluate(view(s))
        assert r.sampled == (r.final is SAMPLED)
        if s.attributes[0].value.string_value == "/healthz":
            assert not r.sampled
        elif s.status.code == 2 or s.end_time_unix_nano - s.start_time_unix_nano >= 1e9:
            assert r.sampled
