import pytest

from pipeline.policies.decision import (
    ERROR,
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
)
from pipeline.policies.not_ import Not
from pipeline.policies.status_code import StatusCode

from .helpers import Fixed, span, view


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (SAMPLED, NOT_SAMPLED),
        (NOT_SAMPLED, SAMPLED),
        (INVERT_SAMPLED, INVERT_SAMPLED),  # passes through, as the collector
        (INVERT_NOT_SAMPLED, INVERT_NOT_SAMPLED),
        (ERROR, ERROR),
    ],
)
def test_not(inner, expected):
    assert Not("n", Fixed("f", inner)).evaluate(view()) is expected


def test_not_error_status():
    policy = Not("no-errors", StatusCode("errors", ["ERROR"]))
    assert policy.evaluate(view(span(status=2))) is NOT_SAMPLED
    assert policy.evaluate(view(span(status=0))) is SAMPLED
