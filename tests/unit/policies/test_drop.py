import pytest

from pipeline.policies.decision import (
    DROPPED,
    ERROR,
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
)
from pipeline.policies.drop import Drop
from pipeline.policies.string_attribute import StringAttribute

from .helpers import Fixed, span, view


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ([SAMPLED], DROPPED),
        ([SAMPLED, INVERT_SAMPLED], DROPPED),
        ([SAMPLED, NOT_SAMPLED], NOT_SAMPLED),
        ([INVERT_NOT_SAMPLED], NOT_SAMPLED),
        ([ERROR, SAMPLED], ERROR),
    ],
)
def test_drop(decisions, expected):
    subs = [Fixed(f"s{i}", d) for i, d in enumerate(decisions)]
    assert Drop("d", subs).evaluate(view()) is expected


def test_drop_health_checks():
    policy = Drop("drop", [StringAttribute("hc", "http.route", ["/healthz"])])
    assert policy.evaluate(view(span(attrs={"http.route": "/healthz"}))) is DROPPED
    assert policy.evaluate(view(span(attrs={"http.route": "/api"}))) is NOT_SAMPLED
