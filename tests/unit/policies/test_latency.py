import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.latency import Latency

from .helpers import MS, T0, span, view


@pytest.mark.parametrize(
    ("spans", "threshold", "expected"),
    [
        ([(0, 999)], 1000, NOT_SAMPLED),
        ([(0, 1000)], 1000, SAMPLED),  # lower bound inclusive without an upper bound
        ([(0, 400), (900, 1500)], 1000, SAMPLED),  # earliest start .. latest end
        ([(500, 900), (0, 200)], 900, SAMPLED),  # order does not hide an earlier start
        ([(0, 10)], 0, SAMPLED),
    ],
)
def test_lower_threshold(spans, threshold, expected):
    trace = view(*(span(start_ms=a, end_ms=b) for a, b in spans))
    assert Latency("l", threshold).evaluate(trace) is expected


def test_upper_threshold_is_exclusive_below_inclusive_above():
    policy = Latency("l", 1000, 2000)
    assert policy.evaluate(view(span(end_ms=1000))) is NOT_SAMPLED
    assert policy.evaluate(view(span(end_ms=1001))) is SAMPLED
    assert policy.evaluate(view(span(end_ms=2000))) is SAMPLED
    assert policy.evaluate(view(span(end_ms=2001))) is NOT_SAMPLED


def test_milliseconds_are_truncated():
    policy = Latency("l", 1000)
    trace = view(span(start_ns=T0, end_ns=T0 + 1000 * MS - 1))
    assert policy.evaluate(trace) is NOT_SAMPLED


def test_prefix_quirk_with_upper_bound():
    """The collector checks after every span: an in-range prefix samples the trace even if
    later spans take the whole trace above the upper bound."""
    policy = Latency("l", 1000, 5000)
    trace = view(span(start_ms=0, end_ms=2000), span(start_ms=0, end_ms=10_000))
    assert policy.evaluate(trace) is SAMPLED
    trace = view(span(start_ms=0, end_ms=10_000), span(start_ms=0, end_ms=2000))
    assert policy.evaluate(trace) is NOT_SAMPLED


def test_zero_timestamps_count_as_unset():
    policy = Latency("l", 5)
    trace = view(span(start_ns=0, end_ns=T0), span(start_ns=T0, end_ns=T0 + 10 * MS))
    assert policy.evaluate(trace) is SAMPLED  # start 0 replaced by the next span's start


def test_empty_trace_is_not_sampled():
    assert Latency("l", 0).evaluate(view()) is NOT_SAMPLED


@given(
    st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 10**6)), min_size=1, max_size=8),
    st.integers(0, 2_000_000),
)
def test_without_upper_bound_matches_whole_trace_duration(pairs, threshold_ms):
    spans = [span(start_ns=T0 + a * 1000, end_ns=T0 + a * 1000 + d * 1000) for a, d in pairs]
    first = min(s.start_time_unix_nano for s in spans)
    last = max(s.end_time_unix_nano for s in spans)
    expected = SAMPLED if (last - first) // MS >= threshold_ms else NOT_SAMPLED
    assert Latency("l", threshold_ms).evaluate(view(*spans)) is expected
