import pytest

from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.trace_state import TraceState, parse_tracestate

from .helpers import span, view


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1,b=2", {"a": "1", "b": "2"}),
        ("  a=1 ,\tb=2\t", {"a": "1", "b": "2"}),
        ("a=1,,b=2", {"a": "1", "b": "2"}),
        ("tenant@sys=x", {"tenant@sys": "x"}),
        ("A=1", None),  # keys are lower case
        ("a", None),
        ("a=1,a=2", None),  # duplicate
        ("a=x=y", None),  # "=" is not allowed in a value
        ("a=", None),
        (",".join(f"k{i}=v" for i in range(33)), None),  # more than 32 members
    ],
)
def test_parse(raw, expected):
    assert parse_tracestate(raw) == expected


def test_policy():
    policy = TraceState("t", "vendor", ["gold", "silver"])
    assert policy.evaluate(view(span(trace_state="vendor=gold"))) is SAMPLED
    assert policy.evaluate(view(span(trace_state="x=1,vendor=silver"))) is SAMPLED
    assert policy.evaluate(view(span(trace_state="vendor=bronze"))) is NOT_SAMPLED
    assert policy.evaluate(view(span(trace_state="Vendor=gold"))) is NOT_SAMPLED  # invalid
    assert policy.evaluate(view(span(), span(trace_state="vendor=gold"))) is SAMPLED


def test_too_long_values_are_ignored():
    policy = TraceState("t", "k", ["x" * 255, "y" * 254])  # len(key) + len(value) < 256 only
    assert policy.evaluate(view(span(trace_state="k=" + "x" * 255))) is NOT_SAMPLED
    assert policy.evaluate(view(span(trace_state="k=" + "y" * 254))) is SAMPLED
