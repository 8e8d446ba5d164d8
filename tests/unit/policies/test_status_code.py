import pytest

from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.status_code import StatusCode

from .helpers import span, view

UNSET, OK, ERROR = 0, 1, 2


@pytest.mark.parametrize(
    ("codes", "span_codes", "expected"),
    [
        (["ERROR"], [UNSET, OK], NOT_SAMPLED),
        (["ERROR"], [UNSET, ERROR], SAMPLED),
        (["OK", "ERROR"], [OK], SAMPLED),
        (["UNSET"], [UNSET], SAMPLED),
        (["UNSET"], [], NOT_SAMPLED),
    ],
)
def test_any_span_with_listed_code(codes, span_codes, expected):
    trace = view(*(span(status=c) for c in span_codes))
    assert StatusCode("s", codes).evaluate(trace) is expected


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="at least one"):
        StatusCode("s", [])
    with pytest.raises(ValueError, match="supported: OK, ERROR, UNSET"):
        StatusCode("s", ["error"])
