from pipeline.policies.always_sample import AlwaysSample
from pipeline.policies.composite import Composite, allocations
from pipeline.policies.config import load_policy_text
from pipeline.policies.decision import (
    ERROR,
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
)
from pipeline.policies.registry import build_policy
from pipeline.policies.status_code import StatusCode

from .helpers import FakeClock, Fixed, span, view
from .test_rate_limiting import FleetState


def spans(n, status=0):
    return view(*(span(status=status) for _ in range(n)))


def test_allocations():
    # percent of the total; sub-policies without an entry (or with 0) get an equal share
    assert allocations(1000, ["a", "b", "c"], {"a": 50, "b": 25}) == [500, 250, 333]
    assert allocations(100, ["a", "b"], {"a": 0}) == [50, 50]
    assert allocations(10, ["a", "b", "c"], {"a": 33}) == [3, 3, 3]


def test_first_sampling_subpolicy_decides_within_its_budget():
    clock = FakeClock(1000.2)
    policy = Composite(
        "c",
        100,
        [StatusCode("errors", ["ERROR"]), AlwaysSample("rest")],
        {"errors": 50, "rest": 25},
        clock,
    )
    assert policy.evaluate(spans(30, status=2)) is SAMPLED
    assert policy.last_sub == "errors"
    assert policy.evaluate(spans(20, status=2)) is SAMPLED  # 50 of 50
    # over budget: NotSampled, no fall-through to "rest"
    assert policy.evaluate(spans(1, status=2)) is NOT_SAMPLED
    assert policy.last_sub is None
    assert policy.evaluate(spans(25)) is SAMPLED
    assert policy.last_sub == "rest"
    assert policy.evaluate(spans(1)) is NOT_SAMPLED
    clock.advance(0.8)  # next whole second: counters reset
    assert policy.evaluate(spans(1)) is SAMPLED
    assert policy.evaluate(spans(50, status=2)) is SAMPLED


def test_refused_trace_leaves_room_for_a_smaller_one():
    policy = Composite("c", 10, [AlwaysSample("a")], {"a": 100}, FakeClock())
    assert policy.evaluate(spans(8)) is SAMPLED
    assert policy.evaluate(spans(3)) is NOT_SAMPLED
    assert policy.evaluate(spans(2)) is SAMPLED


def test_total_cap_is_checked_per_subpolicy():
    """The collector compares max_total with the deciding sub-policy's own counter."""
    clock = FakeClock()
    policy = Composite(
        "c", 10, [StatusCode("e", ["ERROR"]), AlwaysSample("a")], {"e": 100, "a": 100}, clock
    )
    assert policy.evaluate(spans(10, status=2)) is SAMPLED
    assert policy.evaluate(spans(10)) is SAMPLED  # 20 spans this second in total


def test_inverted_and_other_decisions():
    clock = FakeClock()
    subs = [Fixed("x", INVERT_NOT_SAMPLED), Fixed("y", INVERT_SAMPLED)]
    policy = Composite("c", 10, subs, {}, clock)
    assert policy.evaluate(spans(1)) is SAMPLED
    assert policy.last_sub == "y"
    assert Composite("c", 10, [Fixed("e", ERROR)], {}, clock).evaluate(spans(1)) is ERROR
    assert Composite("c", 10, [Fixed("n", NOT_SAMPLED)], {}, clock).evaluate(spans(1)) is (
        NOT_SAMPLED
    )


def test_built_from_config_with_and_subpolicy():
    from pipeline.policies.config import load_policy_text
    from pipeline.policies.engine import PolicyEngine

    config = load_policy_text(
        """
policies:
  - name: budget
    type: composite
    composite:
      max_total_spans_per_second: 3
      policy_order: [checkout-errors, rest]
      composite_sub_policy:
        - name: checkout-errors
          type: and
          and:
            and_sub_policy:
              - {name: svc, type: string_attribute,
                 string_attribute: {key: service.name, values: [checkout]}}
              - {name: err, type: status_code, status_code: {status_codes: [ERROR]}}
        - {name: rest, type: always_sample}
      rate_allocation: [{policy: checkout-errors, percent: 100}]
"""
    )
    engine = PolicyEngine(config, FakeClock())
    r = engine.evaluate(view(span(status=2), resource={"service.name": "checkout"}))
    assert (r.sampled, r.policy) == (True, "budget/checkout-errors")
    r = engine.evaluate(view(span(status=2), resource={"service.name": "cart"}))
    assert (r.sampled, r.policy) == (True, "budget/rest")  # "rest" gets the equal share: 1
    r = engine.evaluate(view(span(), resource={"service.name": "cart"}))
    assert not r.sampled  # "rest" spent its 1 span this second


def test_scope_fleet_gives_each_sub_policy_a_fleet_bucket_of_its_allocation():
    config = load_policy_text(
        "policies:\n"
        "  - name: c\n"
        "    type: composite\n"
        "    composite:\n"
        "      max_total_spans_per_second: 100\n"
        "      scope: fleet\n"
        "      composite_sub_policy:\n"
        "        - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n"
        "        - {name: rest, type: always_sample}\n"
        "      rate_allocation: [{policy: errors, percent: 60}]\n"
    )
    shared = FleetState()
    policy = build_policy(config.policies[0], FakeClock(), shared)
    assert shared.asked == [("c/errors", "spans", 60, 60), ("c/rest", "spans", 50, 50)]
    assert policy.evaluate(spans(60, status=2)) is SAMPLED
    assert policy.last_sub == "errors"
    assert policy.evaluate(spans(1, status=2)) is NOT_SAMPLED  # the fleet's bucket is empty
    assert policy.evaluate(spans(50)) is SAMPLED  # the other sub-policy's is not
    assert policy.evaluate(spans(1)) is NOT_SAMPLED
