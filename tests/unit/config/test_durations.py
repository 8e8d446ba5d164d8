"""Go durations: the one grammar (pipeline.config.durations) and the callers built on it.

The callers keep their own rules around the grammar: config files (policies, topologies)
also take a plain number of SECONDS and refuse negative values, except a topology's clock
skews; the query's minDuration/maxDuration refuse negative values. Where they take the same
text they must agree exactly.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from pipeline.config.durations import (
    MAX_NANOS,
    format_go_duration,
    nanos_from_seconds,
    parse_go_duration,
    to_micros,
    to_seconds,
)
from pipeline.config.models import Duration, parse_duration
from pipeline.loadgen.topology import SignedDuration
from pipeline.query.params import ParamError, duration_param

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("1.2s", 1_200_000_000),  # exact, not 1 199 999 999 as a float would give
        ("100ms", 100_000_000),
        ("1m30s", 90 * S),
        ("500us", 500_000),
        ("500\u00b5s", 500_000),  # micro sign
        ("500\u03bcs", 500_000),  # Greek mu
        ("1h", 3600 * S),
        ("7ns", 7),
        ("1h2m3.004005006s", 3723 * S + 4_005_006),
        ("1.s", S),
        (".5s", S // 2),
        ("1.0000000009s", S),  # below a nanosecond: truncated, as in Go
        ("+2s", 2 * S),
        ("-1.5s", -1_500_000_000),
        ("2562047h47m16.854775807s", MAX_NANOS),  # Go's largest duration
    ],
)
def test_go_durations(text: str, nanos: int):
    assert parse_go_duration(text) == nanos


@pytest.mark.parametrize(
    "text",
    ["", "1", "s", "1x", "1.5.3s", "1 s", "--1s", ".s", "1sec", "2562048h", "\uff11s", "1_0s"],
)
def test_go_duration_errors(text: str):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(text)


parts = st.integers(min_value=0, max_value=10**6)


@given(hours=parts, minutes=parts, seconds=parts, millis=parts, micros=parts, nanos=parts)
def test_go_duration_components_add_up(hours, minutes, seconds, millis, micros, nanos):
    text = f"{hours}h{minutes}m{seconds}s{millis}ms{micros}us{nanos}ns"
    expected = ((hours * 60 + minutes) * 60 + seconds) * S + millis * 10**6 + micros * 1000 + nanos
    assert parse_go_duration(text) == expected


@given(st.integers(min_value=0, max_value=MAX_NANOS))
def test_go_duration_round_trip(nanos: int):
    """Go prints durations like 1h2m3.000000004s; every such form reads back exactly."""
    hours, rest = divmod(nanos, 3600 * S)
    minutes, rest = divmod(rest, 60 * S)
    seconds, fraction = divmod(rest, S)
    text = f"{hours}h{minutes}m{seconds}.{fraction:09d}".rstrip("0").rstrip(".") + "s"
    assert parse_go_duration(text) == nanos
    assert parse_go_duration(f"{nanos}ns") == nanos


# ------------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0s"),
        (7, "7ns"),
        (1_500, "1.5\u00b5s"),
        (100_000_000, "100ms"),
        (1_500_000_000, "1.5s"),
        (90 * S, "1m30s"),
        (2 * 3600 * S, "2h0m0s"),
        (3723 * S + 4_005_006, "1h2m3.004005006s"),
        (-1_500_000_000, "-1.5s"),
        (MAX_NANOS, "2562047h47m16.854775807s"),
    ],
)
def test_format_is_gos_duration_string(nanos: int, text: str):
    assert format_go_duration(nanos) == text


@given(st.integers(min_value=-MAX_NANOS, max_value=MAX_NANOS))
def test_format_then_parse_round_trip(nanos: int):
    assert parse_go_duration(format_go_duration(nanos)) == nanos


# Go duration texts: an optional sign, then 1-4 components such as "12h", "1.5s", ".25ms", "3.us".
_numbers = st.one_of(
    st.integers(min_value=0, max_value=10**7).map(str),
    st.tuples(
        st.integers(min_value=0, max_value=10**4), st.text("0123456789", min_size=1, max_size=12)
    ).map(lambda p: f"{p[0]}.{p[1]}"),
    st.text("0123456789", min_size=1, max_size=12).map(lambda f: f".{f}"),
    st.integers(min_value=0, max_value=999).map(lambda n: f"{n}."),
)
_units = st.sampled_from(["ns", "us", "\u00b5s", "\u03bcs", "ms", "s", "m", "h"])
_components = st.lists(st.tuples(_numbers, _units).map("".join), min_size=1, max_size=4).map(
    "".join
)
_go_durations = st.one_of(
    st.tuples(st.sampled_from(["", "+", "-"]), _components).map("".join),
    st.sampled_from(["0", "+0", "-0"]),
)


@given(_go_durations)
def test_parse_format_parse_is_stable(text: str):
    try:
        nanos = parse_go_duration(text)
    except ValueError as exc:
        assert "longer than Go's longest" in str(exc)
        return
    assert parse_go_duration(format_go_duration(nanos)) == nanos


@given(_go_durations)
def test_the_callers_agree_on_every_duration_text(text: str):
    """Config files (policies, topologies) and the query read the same text the same way."""
    try:
        nanos = parse_go_duration(text)
    except ValueError:
        for read in (parse_duration, TypeAdapter(SignedDuration).validate_python):
            with pytest.raises(ValueError, match="invalid duration"):
                read(text)
        with pytest.raises(ParamError, match="invalid duration"):
            duration_param("minDuration", text)
        return
    seconds = to_seconds(nanos)
    assert TypeAdapter(SignedDuration).validate_python(text) == seconds
    if nanos >= 0:
        assert parse_duration(text) == seconds
        assert TypeAdapter(Duration).validate_python(text) == seconds
        assert duration_param("minDuration", text) == nanos
    else:
        with pytest.raises(ValueError, match=">= 0"):
            parse_duration(text)
        with pytest.raises(ParamError, match="must not be negative"):
            duration_param("maxDuration", text)


_not_durations = st.text(
    alphabet=st.sampled_from(list("0123456789.+- smhnuµμx_")), max_size=12
).filter(lambda t: not _parses(t))


def _parses(text: str) -> bool:
    try:
        parse_go_duration(text)
    except ValueError:
        return False
    return True


@given(_not_durations)
def test_the_callers_refuse_the_same_texts(text: str):
    with pytest.raises(ValueError):
        parse_duration(text)
    with pytest.raises(ValueError):
        TypeAdapter(SignedDuration).validate_python(text)
    with pytest.raises(ParamError):
        duration_param("minDuration", text)


# ------------------------------------------------------------------- callers' own rules


@pytest.mark.parametrize(("value", "seconds"), [(45, 45.0), (0.25, 0.25), (0, 0.0)])
def test_config_files_take_plain_numbers_as_seconds(value, seconds):
    assert parse_duration(value) == seconds
    assert TypeAdapter(SignedDuration).validate_python(-value) == -seconds


@pytest.mark.parametrize("value", [-3, -0.5, math.inf, math.nan, 10**400, True, None, [1], "30"])
def test_config_files_refuse(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_signed_config_durations_still_refuse_infinities_and_words():
    read = TypeAdapter(SignedDuration).validate_python
    assert read("-120ms") == -0.12
    for value in (-math.inf, math.nan, "-soon", "--1s", True):
        with pytest.raises(ValueError):
            read(value)


def test_config_duration_errors_name_the_text_and_the_form():
    with pytest.raises(ValueError) as caught:
        parse_duration("soon")
    assert "invalid duration 'soon'" in str(caught.value)
    assert 'a Go duration like "30s"' in str(caught.value)


def test_fractions_are_exact_and_truncated_once():
    assert parse_go_duration("0.1s") == 100_000_000
    assert to_seconds(parse_go_duration("300ms")) == 0.3
    assert parse_go_duration("1.5ns") == 1
    assert parse_go_duration("0.5ns0.5ns") == 1  # added up, then truncated
    assert parse_go_duration("-1.9ns") == -1  # toward zero


def test_conversions():
    assert to_seconds(1_500_000_000) == 1.5
    assert to_micros(1_999) == 1 and to_micros(-1_999) == -1
    assert nanos_from_seconds(0.1) == 100_000_000
    assert nanos_from_seconds(2) == 2 * S
    assert nanos_from_seconds(1e-10) == 0


@given(st.integers(min_value=-MAX_NANOS, max_value=MAX_NANOS))
def test_seconds_and_back_within_float_precision(nanos: int):
    assert abs(nanos_from_seconds(to_seconds(nanos)) - nanos) <= max(1, abs(nanos) * 2**-52)
