from pipeline.policies.boolean_attribute import BooleanAttribute
from pipeline.policies.decision import INVERT_NOT_SAMPLED, INVERT_SAMPLED, NOT_SAMPLED, SAMPLED

from .helpers import span, view


def test_matches_value_on_span_or_resource():
    policy = BooleanAttribute("b", "app.force_sample", True)
    assert policy.evaluate(view(span(attrs={"app.force_sample": True}))) is SAMPLED
    assert policy.evaluate(view(span(attrs={"app.force_sample": False}))) is NOT_SAMPLED
    assert policy.evaluate(view(span(), resource={"app.force_sample": True})) is SAMPLED
    assert policy.evaluate(view(span())) is NOT_SAMPLED


def test_false_also_matches_non_bool_values():
    policy = BooleanAttribute("b", "k", False)
    assert policy.evaluate(view(span(attrs={"k": "yes"}))) is SAMPLED  # Bool() of "yes" is false
    assert policy.evaluate(view(span())) is NOT_SAMPLED


def test_invert_match():
    policy = BooleanAttribute("b", "app.do_not_sample", True, invert_match=True)
    assert policy.evaluate(view(span(attrs={"app.do_not_sample": True}))) is INVERT_NOT_SAMPLED
    assert policy.evaluate(view(span())) is INVERT_SAMPLED
