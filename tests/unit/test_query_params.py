"""Query-string parsing of the Jaeger API: Go durations, tags, trace ids, limits, windows."""

from __future__ import annotations

import pytest

from pipeline.query.conditions import format_where
from pipeline.query.params import (
    ParamError,
    TraceQuery,
    duration_param,
    go_bool,
    normalize_trace_id,
    parse_dependencies_window,
    parse_tags,
    parse_trace_query,
    raw_param,
    span_kind_param,
)

S = 1_000_000_000


def test_duration_parameters_name_themselves():
    with pytest.raises(ParamError, match=r"^minDuration: invalid duration '1\.2'.*Go duration"):
        duration_param("minDuration", "1.2")
    with pytest.raises(ParamError, match="maxDuration: duration '-1s' must not be negative"):
        duration_param("maxDuration", "-1s")


def test_tags_from_json_and_pairs():
    tags = parse_tags(
        ['{"http.method":"GET","http.status_code":200,"retry":true,"ratio":0.5}'],
        ["db.system:postgresql", "http.url:http://x:8080/a", "empty:"],
    )
    assert tags == (
        ("http.method", "GET"),
        ("http.status_code", "200"),
        ("retry", "true"),
        ("ratio", "0.5"),
        ("db.system", "postgresql"),
        ("http.url", "http://x:8080/a"),  # split at the first colon only
        ("empty", ""),
    )
    assert parse_tags([""], []) == ()


@pytest.mark.parametrize(
    ("tags_json", "pairs", "message"),
    [
        (["[1,2]"], [], "tags: must be a JSON object"),
        (['"GET"'], [], "tags: must be a JSON object"),
        (["{bad"], [], "tags: not valid JSON"),
        (['{"a":{"b":1}}'], [], "tags: the value of 'a' must be a string, number or bool"),
        (['{"a":null}'], [], "tags: the value of 'a'"),
        ([], ["no-colon"], "tag: 'no-colon' is not of the form key:value"),
        ([], [":value"], "tag: ':value' is not of the form key:value"),
        ([], ["span.kind:sideways"], "tags: unknown span kind 'sideways'"),
        (['{"otel.status_code":"BAD"}'], [], "otel.status_code must be one of UNSET, OK, ERROR"),
    ],
)
def test_tag_errors(tags_json, pairs, message):
    with pytest.raises(ParamError) as raised:
        parse_tags(tags_json, pairs)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("a3ce929d0e0e4736", "0000000000000000a3ce929d0e0e4736"),  # 64-bit id
        ("1", "0" * 31 + "1"),
        (" 00ff ", "0" * 28 + "00ff"),
    ],
)
def test_trace_ids_are_normalized(text: str, normalized: str):
    assert normalize_trace_id(text) == normalized


@pytest.mark.parametrize("text", ["", "xyz", "4bf92f35-77b3", "0x12", "a" * 33])
def test_bad_trace_ids(text: str):
    with pytest.raises(ParamError, match=r"^traceID: "):
        normalize_trace_id(text)


def test_span_kinds():
    assert span_kind_param("spanKind", "Server") == "SPAN_KIND_SERVER"
    assert span_kind_param("spanKind", "") is None
    assert span_kind_param("spanKind", None) is None
    with pytest.raises(ParamError, match="spanKind: unknown span kind 'edge'"):
        span_kind_param("spanKind", "edge")


def test_trace_query_defaults_and_conversions():
    assert parse_trace_query([], max_traces=1500) == TraceQuery()
    query = parse_trace_query(
        [
            ("service", "cart"),
            ("operation", ""),  # Jaeger's UI sends empty parameters
            ("tags", '{"a":"1"}'),
            ("tag", "b:2"),
            ("start", "1700000000000000"),
            ("end", "1700000060000000"),
            ("minDuration", "1.5ms"),
            ("maxDuration", "2s"),
            ("limit", "50"),
        ],
        max_traces=1500,
    )
    assert query == TraceQuery(
        service="cart",
        operation=None,
        tags=(("a", "1"), ("b", "2")),
        start=1_700_000_000_000_000_000,
        end=1_700_000_060_000_000_000,
        min_duration=1_500_000,
        max_duration=2 * S,
        limit=50,
    )


def test_trace_query_limits():
    assert parse_trace_query([("limit", "5000")], max_traces=1500).limit == 1500
    assert parse_trace_query([("limit", "0")], max_traces=1500).limit == 20
    for bad in ("ten", "1.5", "1e3", "1_000"):
        with pytest.raises(ParamError, match=f"^limit: '{bad}' is not an integer"):
            parse_trace_query([("limit", bad)], max_traces=1500)
    with pytest.raises(ParamError, match="limit: -1 must not be negative"):
        parse_trace_query([("limit", "-1")], max_traces=1500)


def test_trace_query_consistency():
    with pytest.raises(ParamError, match=r"^start: start is after end"):
        parse_trace_query([("start", "20"), ("end", "10")], max_traces=10)
    with pytest.raises(ParamError, match=r"^minDuration: minDuration is greater than maxDuration"):
        parse_trace_query([("minDuration", "2s"), ("maxDuration", "1s")], max_traces=10)
    with pytest.raises(ParamError, match=r"^end: "):
        parse_trace_query([("end", "yesterday")], max_traces=10)
    with pytest.raises(ParamError, match=r"^minDuration: invalid duration '1\.2'"):
        parse_trace_query([("minDuration", "1.2")], max_traces=10)


def test_where_conditions_in_a_search():
    query = parse_trace_query(
        [("where", "trace.error=true"), ("where", ""), ("where", "(a=1 OR b!=2)")], 10
    )
    assert format_where(query.conditions) == "trace.error=true (a=1 OR b!=2)"
    assert hash(query) == hash(parse_trace_query([("where", format_where(query.conditions))], 10))
    # Jaeger's tags keep their meaning: a "where" expression is no tag.
    assert parse_trace_query([("tag", "a:>1")], 10).tags == (("a", ">1"),)
    with pytest.raises(ParamError, match=r'^where: at 2 of value 2: expected an operator .* "a"'):
        parse_trace_query([("where", "a=1"), ("where", "a")], 10)


def test_trace_ids_in_a_search():
    query = parse_trace_query([("traceID", "AB"), ("traceID", "ab"), ("traceID", "c")], 10)
    assert query.trace_ids == ("0" * 30 + "ab", "0" * 31 + "c")


def test_dependencies_window():
    now = 1_700_000_000_000
    assert parse_dependencies_window([], now) == ((now - 86_400_000) * 10**6, now * 10**6)
    window = parse_dependencies_window([("endTs", "5000"), ("lookback", "1000")], now)
    assert window == (4000 * 10**6, 5000 * 10**6)
    assert parse_dependencies_window([("endTs", "5"), ("lookback", "10")], now) == (0, 5 * 10**6)
    with pytest.raises(ParamError, match=r"^endTs: 'soon' is not an integer"):
        parse_dependencies_window([("endTs", "soon")], now)
    with pytest.raises(ParamError, match=r"^lookback: -1 must not be negative"):
        parse_dependencies_window([("lookback", "-1")], now)


def test_raw_flag():
    assert raw_param([]) is False
    assert raw_param([("raw", "")]) is False
    assert raw_param([("raw", "true")]) is True
    assert raw_param([("raw", "1")]) is True
    assert raw_param([("raw", "FALSE")]) is False
    with pytest.raises(ParamError, match="raw: 'yes' is not true or false"):
        raw_param([("raw", "yes")])


def test_booleans_as_go_reads_them():
    for text in ("1", "t", "T", "TRUE", "true", "True"):
        assert go_bool("groupByOperation", text) is True
    for text in ("", "0", "f", "F", "FALSE", "false", "False"):
        assert go_bool("groupByOperation", text) is False
    with pytest.raises(ParamError, match=r"^groupByOperation: 'tRuE' is not a boolean"):
        go_bool("groupByOperation", "tRuE")


def test_durations_bound_the_span_when_an_operation_is_given_else_the_trace():
    def scope(*pairs: tuple[str, str]) -> bool:
        return parse_trace_query([("minDuration", "1ms"), *pairs], 100).span_durations

    assert scope() is False  # the whole trace's duration
    assert scope(("operation", "GET /cart")) is True  # that operation's span, as Jaeger
    assert scope(("operation", "GET /cart"), ("durationScope", "trace")) is False
    assert scope(("durationScope", "span")) is True
    with pytest.raises(ParamError, match=r"^durationScope: 'spans' is not one of span, trace"):
        scope(("durationScope", "spans"))
