import pytest

from pipeline.policies.and_ import And
from pipeline.policies.decision import (
    DROPPED,
    ERROR,
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
)

from .helpers import Fixed, view


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ([SAMPLED, SAMPLED], SAMPLED),
        ([SAMPLED, INVERT_SAMPLED], SAMPLED),
        ([SAMPLED, NOT_SAMPLED], NOT_SAMPLED),
        ([INVERT_NOT_SAMPLED, SAMPLED], NOT_SAMPLED),
        ([SAMPLED, ERROR], ERROR),
        ([DROPPED], SAMPLED),  # anything but NotSampled / InvertNotSampled passes
    ],
)
def test_and(decisions, expected):
    subs = [Fixed(f"s{i}", d) for i, d in enumerate(decisions)]
    assert And("a", subs).evaluate(view()) is expected


def test_stops_at_first_not_sampled():
    subs = [Fixed("a", NOT_SAMPLED), Fixed("b", SAMPLED, stateful=True)]
    policy = And("and", subs)
    assert policy.stateful
    policy.evaluate(view())
    assert subs[1].calls == 0
