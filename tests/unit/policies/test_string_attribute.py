import pytest

from pipeline.policies.decision import INVERT_NOT_SAMPLED, INVERT_SAMPLED, NOT_SAMPLED, SAMPLED
from pipeline.policies.string_attribute import StringAttribute
from pipeline.policies.trace import TraceView

from .helpers import span, traces, view


def test_exact_match_on_span_or_resource():
    policy = StringAttribute("s", "http.route", ["/healthz", "/ready"])
    assert policy.evaluate(view(span(attrs={"http.route": "/ready"}))) is SAMPLED
    assert policy.evaluate(view(span(attrs={"http.route": "/api"}))) is NOT_SAMPLED
    assert policy.evaluate(view(span(), resource={"http.route": "/healthz"})) is SAMPLED
    assert policy.evaluate(view(span(attrs={"other": "/healthz"}))) is NOT_SAMPLED


def test_exact_is_not_substring_and_regex_is_unanchored():
    exact = StringAttribute("s", "k", ["/health"])
    regex = StringAttribute("s", "k", ["/health"], enabled_regex_matching=True)
    trace = view(span(attrs={"k": "/healthz"}))
    assert exact.evaluate(trace) is NOT_SAMPLED
    assert regex.evaluate(trace) is SAMPLED
    anchored = StringAttribute("s", "k", ["^/health$"], enabled_regex_matching=True)
    assert anchored.evaluate(trace) is NOT_SAMPLED


def test_regex_cache_gives_same_answers():
    policy = StringAttribute("s", "k", ["^v[0-9]+$"], enabled_regex_matching=True, cache_max_size=2)
    for value, expected in [("v1", SAMPLED), ("x", NOT_SAMPLED), ("v22", SAMPLED)] * 3:
        assert policy.evaluate(view(span(attrs={"k": value}))) is expected


def test_non_string_values_read_as_empty_string():
    # a span attribute that is not a string is skipped; a resource one is tested as ""
    policy = StringAttribute("s", "k", [".*"], enabled_regex_matching=True)
    assert policy.evaluate(view(span(attrs={"k": 5}))) is NOT_SAMPLED
    assert policy.evaluate(view(span(), resource={"k": 5})) is SAMPLED
    exact = StringAttribute("s", "k", ["", "5"])
    assert exact.evaluate(view(span(attrs={"k": 5}), resource={"k": 5})) is NOT_SAMPLED


def test_invert_match():
    policy = StringAttribute("s", "service.name", ["checkout"], invert_match=True)
    assert policy.evaluate(view(span(), resource={"service.name": "cart"})) is INVERT_SAMPLED
    assert policy.evaluate(view(span())) is INVERT_SAMPLED  # key absent: inverted sample
    assert policy.evaluate(view(span(), resource={"service.name": "checkout"})) is (
        INVERT_NOT_SAMPLED
    )
    assert policy.evaluate(view(span(attrs={"service.name": "checkout"}))) is (INVERT_NOT_SAMPLED)


def test_first_duplicate_key_wins():
    policy = StringAttribute("s", "k", ["b"])
    assert policy.evaluate(view(span(attrs=[("k", "a"), ("k", "b")]))) is NOT_SAMPLED


def test_several_resources():
    td = traces(({"x": "1"}, [span()]), ({"k": "v"}, []))
    assert StringAttribute("s", "k", ["v"]).evaluate(TraceView(td, b"t" * 16)) is SAMPLED


@pytest.mark.parametrize("raw_given", [True, False])
def test_prefilter_does_not_change_answers(raw_given):
    td = traces(({"service.name": "a"}, [span(attrs={"k": "needle"})]))
    raw = td.SerializeToString() if raw_given else None
    for values, expected in [(["needle"], SAMPLED), (["hay"], NOT_SAMPLED)]:
        trace = TraceView(td, b"t" * 16, raw=raw)
        assert StringAttribute("s", "k", values).evaluate(trace) is expected
