import pytest

from pipeline.policies.decision import INVERT_NOT_SAMPLED, INVERT_SAMPLED, NOT_SAMPLED, SAMPLED
from pipeline.policies.numeric_attribute import NumericAttribute

from .helpers import span, view


@pytest.mark.parametrize(
    ("low", "high", "value", "expected"),
    [
        (400, 599, 500, SAMPLED),
        (400, 599, 400, SAMPLED),
        (400, 599, 599, SAMPLED),
        (400, 599, 600, NOT_SAMPLED),
        (500, 0, 10**12, SAMPLED),  # max 0 = no upper bound
        (0, 10, -(10**12), SAMPLED),  # min 0 = no lower bound
    ],
)
def test_range_on_span_attribute(low, high, value, expected):
    policy = NumericAttribute("n", "http.response.status_code", low, high)
    assert policy.evaluate(view(span(attrs={"http.response.status_code": value}))) is expected


def test_resource_attribute_and_absent_key():
    policy = NumericAttribute("n", "k", 1, 5)
    assert policy.evaluate(view(span(), resource={"k": 3})) is SAMPLED
    assert policy.evaluate(view(span())) is NOT_SAMPLED


def test_non_int_values_read_as_zero():
    policy = NumericAttribute("n", "k", -5, 5)
    assert policy.evaluate(view(span(attrs={"k": "500"}))) is SAMPLED  # Int() of a string is 0
    assert policy.evaluate(view(span(attrs={"k": 3.7}))) is SAMPLED
    assert NumericAttribute("n", "k", 1, 5).evaluate(view(span(attrs={"k": 3.7}))) is (NOT_SAMPLED)


def test_invert_match():
    policy = NumericAttribute("n", "k", 1, 5, invert_match=True)
    assert policy.evaluate(view(span(attrs={"k": 3}))) is INVERT_NOT_SAMPLED
    assert policy.evaluate(view(span(attrs={"k": 9}))) is INVERT_SAMPLED
    assert policy.evaluate(view(span())) is INVERT_SAMPLED


def test_needs_a_bound():
    with pytest.raises(ValueError, match="min_value or max_value"):
        NumericAttribute("n", "k", 0, 0)
