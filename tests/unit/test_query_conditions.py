"""The ``where`` grammar and its OpenSearch clauses: what parses to what, which filter
each comparison becomes, and that every mistake is a ``ParamError`` naming the position.

The real cluster's answers to these clauses are ``tests/integration/test_query_conditions.py``'s.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.config.durations import format_go_duration
from pipeline.query.conditions import (
    DERIVED_TAGS,
    FIELDS,
    MAX_COMPARISONS,
    OPERATORS,
    AnyOf,
    Comparison,
    Condition,
    comparison_clause,
    format_where,
    parse_where,
    withheld_keys,
)
from pipeline.query.params import ParamError
from pipeline.query.search import tag_clause
from pipeline.query.v3 import parse_search

S = 1_000_000_000


def one(text: str) -> Condition:
    [condition] = parse_where([text])
    return condition


def clause(text: str) -> dict:
    return one(text).clause()


# --- parsing ------------------------------------------------------------------------------


def test_the_example_parses_clause_by_clause():
    text = (
        "http.response.status_code>=500 service.version!=1.2 "
        '(http.route=~"/api/.*" OR db.system=redis) trace.duration>2s trace.spans>=10 '
        "trace.error=true"
    )
    assert parse_where([text]) == (
        Comparison("http.response.status_code", ">=", "500"),
        Comparison("service.version", "!=", "1.2"),
        AnyOf((Comparison("http.route", "=~", "/api/.*"), Comparison("db.system", "=", "redis"))),
        Comparison("trace.duration", ">", "2s"),
        Comparison("trace.spans", ">=", "10"),
        Comparison("trace.error", "=", "true"),
    )


def test_operators_spaces_and_quotes():
    for op in OPERATORS:
        assert one(f"k{op}1") == Comparison("k", op, "1")
        assert one(f"k {op}  1") == Comparison("k", op, "1")  # spaces around the operator
    assert one('msg="a \\"quoted\\" (b) = c"') == Comparison("msg", "=", 'a "quoted" (b) = c')
    assert one('path="C:\\\\dir"') == Comparison("path", "=", "C:\\dir")
    # Other backslashes stay, so regexes keep their escapes.
    assert one('http.route=~"/v\\d+/.*\\.json"') == Comparison(
        "http.route", "=~", "/v\\d+/.*\\.json"
    )
    assert one('"key with spaces"=""') == Comparison("key with spaces", "=", "")
    assert one("(a=1)") == Comparison("a", "=", "1")  # a group of one is that comparison
    assert one("( a=1 or b=2 )") == AnyOf((Comparison("a", "=", "1"), Comparison("b", "=", "2")))
    assert parse_where(["", "  "]) == ()
    assert parse_where(["a=1", "", "\tb=2\n"]) == (
        Comparison("a", "=", "1"),
        Comparison("b", "=", "2"),
    )


def test_conditions_are_hashable_and_print_back():
    conditions = parse_where(['(a=~"x y" OR "OR"=1) b!=2 trace.duration>=1.5m'])
    assert hash(conditions) == hash(parse_where([format_where(conditions)]))
    assert format_where(conditions) == '(a=~"x y" OR "OR"=1) b!=2 trace.duration>=1.5m'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '(http.route "/x")',
            r"^where: at 13: expected an operator \(=, !=, =~, !~, >, >=, <, <=\) "
            r'after "http\.route"$',
        ),
        ("a=1 AND b=2", r'^where: at 9: expected an operator .* after "AND"; clauses separated by'),
        ("a=1 OR b=2", r'^where: at 8: .* after "OR"; .*OR goes inside parentheses'),
        ("a=", r"^where: at 3: expected a value after =, not the end$"),
        ("=1", r'^where: at 1: expected a key such as .*, not "="$'),
        ('""=1', r"^where: at 1: a key must not be empty$"),
        ('a="x', r"^where: at 3: unclosed quote$"),
        ("a=1)", r'^where: at 4: unmatched "\)"$'),
        ("a=1 )", r'^where: at 5: unmatched "\)"$'),
        ("a=1(b=2)", r'^where: at 4: expected a space before the next clause, not "\("$'),
        ('a="1"b=2', r'^where: at 6: expected a space before the next clause, not "b"$'),
        ("(a=1", r'^where: at 5: expected OR or "\)" to close the group opened at 1$'),
        ("(a=1 b=2)", r'^where: at 6: expected OR or "\)" after a comparison in a group$'),
        ("(a=1 OR)", r'^where: at 8: expected a space and a comparison after OR, not "\)"$'),
        ("(a=1 OR (b=2))", r"^where: at 9: expected a key .*\(groups do not nest\)$"),
        ("()", r'^where: at 2: expected a key .*, not "\)"$'),
        ("x>abc", r'^where: at 3: expected a number after >, not "abc"$'),
        ("x<=inf", r'^where: at 4: expected a number after <=, not "inf"$'),
        ("x>1_000", r"^where: at 3: expected a number"),
        ("duration>fast", r"^where: at 10: expected a duration such as 2s, 150ms or 1\.5m after >"),
        ("trace.duration>=-1s", r"^where: at 17: expected a duration"),
        ("trace.duration>2000", r"^where: at 16: expected a duration"),
        ("trace.duration=~1s", r"^where: at 15: =~ does not apply to trace\.duration; use =, !="),
        ("trace.spans>1.5", r'^where: at 13: expected a whole number after >, not "1\.5"$'),
        ("trace.error=yes", r'^where: at 13: expected true or false after =, not "yes"$'),
        ("trace.error>0", r"^where: at 12: > does not apply to trace\.error; use =, !=$"),
        ("trace.root.status_code=BAD", r"^where: at 24: expected one of UNSET, OK, ERROR"),
        (
            "trace.foo=1",
            r'^where: at 1: unknown trace key "trace\.foo"; use one of trace\.duration',
        ),
        ("name>1", r"^where: at 5: > does not apply to name; use =, !=, =~, !~$"),
        ("span.kind=sideways", r"^where: at 11: expected one of server, client"),
        ("span.kind=~serv.*", r"^where: at 10: =~ does not apply to span\.kind; use = or !=$"),
        ("otel.status_code!=BAD", r"^where: at 19: expected one of UNSET, OK, ERROR"),
        ("error=maybe", r'^where: at 7: expected one of true, false after =, not "maybe"$'),
    ],
)
def test_mistakes_name_the_position_and_what_was_expected(text: str, message: str):
    with pytest.raises(ParamError, match=message) as raised:
        parse_where([text])
    assert raised.value.param == "where"


def test_repeated_values_and_other_parameter_names():
    with pytest.raises(ParamError, match=r"^where: at 3 of value 2: expected an operator"):
        parse_where(["a=1", "b c=1"])
    with pytest.raises(ParamError, match=r"^query\.where: at 3: "):
        parse_where(["a=", "  "], "query.where")
    too_many = " ".join(f"k{i}=1" for i in range(MAX_COMPARISONS + 1))
    with pytest.raises(ParamError, match=rf"^where: {MAX_COMPARISONS + 1} comparisons; at most"):
        parse_where([too_many])
    parse_where([" ".join(f"k{i}=1" for i in range(MAX_COMPARISONS))])


# --- clauses ------------------------------------------------------------------------------


def test_attribute_comparisons_cover_span_and_resource_attributes():
    assert clause("db.system=redis") == tag_clause("db.system", "redis")
    assert clause("http.route=~/api/.*") == {
        "bool": {
            "should": [
                {"regexp": {"span.attributes.http@route": {"value": "/api/.*"}}},
                {"regexp": {"resource.attributes.http@route": {"value": "/api/.*"}}},
            ],
            "minimum_should_match": 1,
        }
    }
    assert clause("http.response.status_code>=500") == {
        "bool": {
            "should": [
                {"range": {"span.attributes.http@response@status_code.num": {"gte": 500.0}}},
                {"range": {"resource.attributes.http@response@status_code.num": {"gte": 500.0}}},
            ],
            "minimum_should_match": 1,
        }
    }
    ranges = {op: clause(f"x{op}-1.5e3")["bool"]["should"][0]["range"] for op in (">", "<", "<=")}
    assert ranges == {
        ">": {"span.attributes.x.num": {"gt": -1500.0}},
        "<": {"span.attributes.x.num": {"lt": -1500.0}},
        "<=": {"span.attributes.x.num": {"lte": -1500.0}},
    }


def test_negations_are_must_not_of_the_positive_clause():
    assert clause("service.version!=1.2") == {
        "bool": {"must_not": [tag_clause("service.version", "1.2")]}
    }
    assert clause("http.route!~/health.*") == {
        "bool": {"must_not": [clause("http.route=~/health.*")]}
    }
    assert clause("trace.root.name!=GET") == {
        "bool": {"must_not": [{"term": {"traceGroup": "GET"}}]}
    }


def test_span_fields_and_derived_tags():
    assert clause("name=~GET.*") == {"regexp": {"name": {"value": "GET.*"}}}
    assert clause("span.name=charge") == {"term": {"name": "charge"}}
    assert clause("duration>150ms") == {"range": {"durationInNanos": {"gt": 150_000_000}}}
    assert clause("duration<=1.5m") == {"range": {"durationInNanos": {"lte": 90 * S}}}
    assert clause("error=true") == tag_clause("error", "true")
    assert clause("span.kind!=Client") == {
        "bool": {"must_not": [{"term": {"kind": "SPAN_KIND_CLIENT"}}]}
    }
    assert clause("otel.status_code=error") == {"term": {"status.code": 2}}
    assert clause('otel.status_description=~"card.*"') == {
        "regexp": {"status.message": {"value": "card.*"}}
    }
    assert clause("otel.scope.name=io.opentelemetry.jdbc") == tag_clause(
        "otel.scope.name", "io.opentelemetry.jdbc"
    )


def test_trace_level_comparisons_use_the_trace_fields():
    assert clause("trace.duration>2s") == {"range": {"traceFields.durationInNanos": {"gt": 2 * S}}}
    assert clause("trace.error=TRUE") == {"term": {"traceFields.error": True}}
    assert clause("trace.error!=true") == {
        "bool": {"must_not": [{"term": {"traceFields.error": True}}]}
    }
    assert clause("trace.spans>=10") == {"range": {"traceFields.spanCount": {"gte": 10}}}
    assert clause("trace.services=payment") == {"term": {"traceFields.services": "payment"}}
    assert clause("trace.root.name=~GET.*") == {"regexp": {"traceGroup": {"value": "GET.*"}}}
    assert clause("trace.root.duration<1s") == {
        "range": {"traceGroupFields.durationInNanos": {"lt": S}}
    }
    assert clause("trace.root.status_code=ERROR") == {"term": {"traceGroupFields.statusCode": 2}}


def test_or_groups_are_one_should_clause():
    group = one("(db.system=redis OR trace.error=true OR duration>1s)")
    assert group.clause() == {
        "bool": {
            "should": [
                tag_clause("db.system", "redis"),
                {"term": {"traceFields.error": True}},
                {"range": {"durationInNanos": {"gt": S}}},
            ],
            "minimum_should_match": 1,
        }
    }


def test_keys_that_would_reveal_what_rbac_withholds():
    conditions = parse_where(
        ["trace.duration>1s (trace.services=pay OR a=1) trace.spans>2 trace.services!=x"]
    )
    assert withheld_keys(conditions) == ["trace.services"]
    assert withheld_keys(parse_where(["trace.root.duration>1s duration>1s name=x"])) == []


def test_v3_reads_query_where():
    search = parse_search([("query.where", "trace.error=true"), ("where", "ignored")], 100)
    assert search.query.conditions == (Comparison("trace.error", "=", "true"),)
    with pytest.raises(ParamError, match=r"^query\.where: at 1: unknown trace key"):
        parse_search([("query.where", "trace.x=1")], 100)


# --- properties ---------------------------------------------------------------------------

GRAMMAR_TEXT = st.text(alphabet='ab.=!<>~()" \\\tORor159smtrace.duration', max_size=40)
ATTRIBUTE_KEYS = st.text(min_size=1, max_size=12).filter(
    lambda key: key not in FIELDS and key not in DERIVED_TAGS and not key.startswith("trace.")
)
NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
DURATIONS = st.integers(0, 10**15).map(format_go_duration)


def _comparisons() -> st.SearchStrategy[Comparison]:
    texts = st.text(max_size=12)
    attributes = st.one_of(
        st.builds(Comparison, ATTRIBUTE_KEYS, st.sampled_from(["=", "!=", "=~", "!~"]), texts),
        st.builds(Comparison, ATTRIBUTE_KEYS, st.sampled_from([">", ">=", "<", "<="]), NUMBERS),
    )
    fields = st.one_of(
        st.builds(
            Comparison,
            st.sampled_from(["name", "trace.root.name", "trace.services"]),
            st.sampled_from(["=", "!=", "=~", "!~"]),
            texts,
        ),
        st.builds(
            Comparison,
            st.sampled_from(["duration", "trace.duration", "trace.root.duration"]),
            st.sampled_from(OPERATORS).filter(lambda op: "~" not in op),
            DURATIONS,
        ),
        st.builds(
            Comparison,
            st.just("trace.error"),
            st.sampled_from(["=", "!="]),
            st.sampled_from(["true", "false"]),
        ),
        st.builds(
            Comparison,
            st.just("span.kind"),
            st.sampled_from(["=", "!="]),
            st.sampled_from(["server", "CLIENT"]),
        ),
    )
    return st.one_of(attributes, fields)


CONDITIONS = st.lists(
    st.one_of(
        _comparisons(),
        st.lists(_comparisons(), min_size=2, max_size=3).map(lambda c: AnyOf(tuple(c))),
    ),
    max_size=4,
)


@given(st.one_of(st.text(max_size=60), GRAMMAR_TEXT))
@example('(a=1 OR "b\\"=2')
@example("trace.duration>9999999999h")
def test_any_text_parses_or_is_a_param_error(text: str):
    try:
        conditions = parse_where([text])
    except ParamError as exc:
        assert str(exc).startswith("where: ")
        return
    orjson.dumps([condition.clause() for condition in conditions])
    assert parse_where([format_where(conditions)]) == conditions


@given(CONDITIONS)
def test_printed_conditions_parse_back_to_themselves(conditions: list[Condition]):
    assert parse_where([format_where(conditions)]) == tuple(conditions)


@given(_comparisons())
def test_negation_is_the_must_not_of_the_positive(comparison: Comparison):
    positive = {"!=": "=", "!~": "=~"}.get(comparison.op)
    if positive is not None:
        expected = comparison_clause(comparison.key, positive, comparison.value)
        assert comparison.clause() == {"bool": {"must_not": [expected]}}
