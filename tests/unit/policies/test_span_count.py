import pytest

from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.span_count import SpanCount

from .helpers import span, view


@pytest.mark.parametrize(
    ("low", "high", "n", "expected"),
    [
        (2, 5, 1, NOT_SAMPLED),
        (2, 5, 2, SAMPLED),
        (2, 5, 5, SAMPLED),
        (2, 5, 6, NOT_SAMPLED),
        (3, 0, 100, SAMPLED),  # max 0 = unbounded
        (0, 0, 0, SAMPLED),
    ],
)
def test_inclusive_bounds(low, high, n, expected):
    assert SpanCount("c", low, high).evaluate(view(*(span() for _ in range(n)))) is expected
