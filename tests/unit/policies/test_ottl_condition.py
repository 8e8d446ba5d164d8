import pytest

from pipeline.policies import ottl
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED
from pipeline.policies.ottl_condition import OTTLCondition

from .helpers import span, view

SERVER, CLIENT = 2, 3


def ev(condition, *spans, resource=None, context="span"):
    if context == "span":
        policy = OTTLCondition("o", span=[condition])
    else:
        policy = OTTLCondition("o", spanevent=[condition])
    return policy.evaluate(view(*spans, resource=resource))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('name == "GET /x"', SAMPLED),
        ('span.name != "GET /x"', NOT_SAMPLED),
        ("kind == SPAN_KIND_SERVER", SAMPLED),
        ("kind == SPAN_KIND_CLIENT", NOT_SAMPLED),
        ("status.code == STATUS_CODE_ERROR", SAMPLED),
        ('status.message == "boom"', SAMPLED),
        ("duration > 1500000000", SAMPLED),  # 2 s in ns
        ("duration >= 2000000000 and duration < 2000000001", SAMPLED),
        ('attributes["http.response.status_code"] >= 500', SAMPLED),
        ('attributes["http.response.status_code"] >= 500.5', SAMPLED),  # int vs float
        ('attributes["http.response.status_code"] > 503', NOT_SAMPLED),
        ('attributes["ratio"] < 1', SAMPLED),
        ('attributes["flag"] == true', SAMPLED),
        ('attributes["missing"] == nil', SAMPLED),
        ('attributes["missing"] != nil', NOT_SAMPLED),
        ('attributes["missing"] >= nil', SAMPLED),  # nil == nil also for <=, >=
        ('attributes["http.route"] != nil', SAMPLED),
        ('attributes["http.route"] > 5', NOT_SAMPLED),  # mixed types: false ...
        ('attributes["http.route"] != 5', SAMPLED),  # ... except !=
        ('attributes["http.route"] < "/b"', SAMPLED),  # strings order lexicographically
        ('resource.attributes["service.name"] == "cart"', SAMPLED),
        ('attributes["service.name"] == "cart"', NOT_SAMPLED),  # span attrs only
        ('attributes["list"] == attributes["list"]', SAMPLED),
        ('attributes["map"] != nil', SAMPLED),
        ("not (kind == SPAN_KIND_SERVER)", NOT_SAMPLED),
        ("kind == SPAN_KIND_CLIENT or status.code == 2", SAMPLED),
        ('kind == SPAN_KIND_SERVER and (name == "x" or name == "GET /x")', SAMPLED),
        ("true", SAMPLED),
        ("false or not true", NOT_SAMPLED),
        ('"a" < "b"', SAMPLED),
        ("1 == 1.0", SAMPLED),
        ("true > false", SAMPLED),
        ('attributes["bytes"] == nil', NOT_SAMPLED),
        ('attributes["esc"] == "a\\"b\\u00e9"', SAMPLED),
    ],
)
def test_span_conditions(condition, expected):
    s = span(
        name="GET /x",
        kind=SERVER,
        status=2,
        message="boom",
        start_ms=0,
        end_ms=2000,
        attrs={
            "http.response.status_code": 503,
            "ratio": 0.5,
            "flag": True,
            "http.route": "/a",
            "list": [1, "x"],
            "map": {"a": 1},
            "bytes": b"\x00",
            "esc": 'a"b\u00e9',
        },
    )
    assert ev(condition, s, resource={"service.name": "cart"}) is expected


def test_any_span_matches():
    spans = [span(name="a"), span(name="b", kind=CLIENT)]
    assert ev("kind == SPAN_KIND_CLIENT", *spans) is SAMPLED
    assert ev('name == "c"', *spans) is NOT_SAMPLED


def test_conditions_are_ored():
    policy = OTTLCondition("o", span=['name == "a"', 'name == "b"'])
    assert policy.evaluate(view(span(name="b"))) is SAMPLED
    assert policy.evaluate(view(span(name="c"))) is NOT_SAMPLED


def test_span_event_conditions():
    s = span(events=[("exception", {"exception.type": "ValueError"}), ("log", {})])
    assert ev('name == "exception"', s, context="spanevent") is SAMPLED
    assert ev('attributes["exception.type"] == "ValueError"', s, context="spanevent") is SAMPLED
    assert ev('spanevent.name == "retry"', s, context="spanevent") is NOT_SAMPLED
    assert ev('span.name == "op" and name == "log"', s, context="spanevent") is SAMPLED
    assert ev('name == "exception"', span(), context="spanevent") is NOT_SAMPLED


@pytest.mark.parametrize(
    ("condition", "message", "column"),
    [
        ('IsMatch(name, "x")', "functions/converters", 1),
        ('name == "a" + "b"', "math expressions", 13),
        ("name == 0x01", "byte literals", 9),
        ('attributes["a"]["b"] == 1', "nested indexing", 16),
        ("trace_id == nil", "unsupported path 'trace_id'", 1),
        ("SPAN_KIND_SERVERS == kind", "unknown enum 'SPAN_KIND_SERVERS'", 1),
        ('name == "a', "unterminated string", 9),
        ("name", "expected a comparison operator", 5),
        ("name == ", "expected a value", 9),
        ("(name == 1", "expected ')'", 11),
        ("name == 1 name == 2", "unexpected 'name'", 11),
        ("", "empty condition", 1),
        ("attributes == 1", "unsupported path 'attributes'", 1),
        ('name == "\\q"', "unsupported escape", 10),
        ("name == [1]", "list and map literals", 9),
    ],
)
def test_rejected_with_position(condition, message, column):
    with pytest.raises(ottl.OTTLError) as err:
        ottl.compile_condition(condition)
    assert message in str(err.value)
    assert err.value.pos + 1 == column


def test_event_context_paths_are_checked():
    with pytest.raises(ottl.OTTLError, match="spanevent context"):
        ottl.compile_condition("kind == 1", "spanevent")
    ottl.compile_condition("span.kind == 1", "spanevent")


def test_attribute_keys_are_reported():
    policy = OTTLCondition(
        "o",
        span=['attributes["a"] == 1 or resource.attributes["r"] == 2'],
        spanevent=['span.attributes["b"] == 1 and attributes["event-only"] == 1'],
    )
    assert policy.attribute_keys() == (frozenset({"a", "b"}), frozenset({"r"}))


def test_error_mode_and_empty_rejected():
    with pytest.raises(ValueError, match="error_mode"):
        OTTLCondition("o", span=["true"], error_mode="explode")
    with pytest.raises(ValueError, match="at least one"):
        OTTLCondition("o")


# --------------------------------------------------------------------------- error_mode

FAILING = "duration > 0"  # fails once compare is made to raise on ">"
MATCHING = 'name == "op"'


@pytest.fixture
def failing_compare(monkeypatch):
    """Make ottl.compare raise for ">" (the subset itself never fails at run time)."""
    real = ottl.compare

    def flaky(a, b, op):
        if op == ">":
            raise TypeError("cannot compare")
        return real(a, b, op)

    monkeypatch.setattr(ottl, "compare", flaky)


def test_error_mode_propagate_makes_the_policy_fail(failing_compare):
    from pipeline.policies.decision import ERROR
    from pipeline.policies.engine import PolicyEngine

    policy = OTTLCondition("o", span=[FAILING, MATCHING])  # propagate is the default
    assert policy.error_mode == "propagate"
    with pytest.raises(TypeError, match="cannot compare"):
        policy.evaluate(view(span()))
    result = PolicyEngine.from_evaluators([(policy, False)]).evaluate(view(span()))
    assert (result.sampled, result.per_policy) == (False, {"o": ERROR})


@pytest.mark.parametrize("mode", ["ignore", "silent"])
def test_error_mode_ignore_and_silent_count_the_condition_as_false(mode, failing_compare, caplog):
    policy = OTTLCondition("o", span=[FAILING, MATCHING], error_mode=mode)
    with caplog.at_level("WARNING", logger="pipeline.policies.ottl_condition"):
        assert policy.evaluate(view(span())) is SAMPLED  # the next condition still runs
        only_failing = OTTLCondition("f", spanevent=[f"span.{FAILING}"], error_mode=mode)
        assert only_failing.evaluate(view(span(events=[("e", {})]))) is NOT_SAMPLED
    logged = [r.getMessage() for r in caplog.records]
    if mode == "ignore":
        assert len(logged) == 2
        expected = "policy o: condition 'duration > 0' failed (TypeError: cannot compare)"
        assert expected in logged[0]
        assert "counted as false (error_mode: ignore)" in logged[0]
    else:
        assert logged == []


@pytest.mark.parametrize("mode", ["propagate", "ignore", "silent"])
def test_error_modes_decide_alike_when_nothing_fails(mode):
    conditions = [
        'attributes["http.route"] > 5',  # a type mismatch is false, not an error
        'attributes["missing"] < "x"',
        "status.code == STATUS_CODE_ERROR",
    ]
    policy = OTTLCondition("o", span=conditions, error_mode=mode)
    assert policy.evaluate(view(span(attrs={"http.route": "/a"}))) is NOT_SAMPLED
    assert policy.evaluate(view(span(attrs={"http.route": "/a"}, status=2))) is SAMPLED


def test_compare_never_raises():
    """Why error_mode has nothing to act on in the subset: compare answers every mix."""
    values = [
        None,
        True,
        False,
        0,
        -3,
        2**63 - 1,
        1.5,
        float("nan"),
        float("inf"),
        "",
        "a",
        b"",
        b"\x00",
        [],
        [1, "a"],
        {},
        {"k": [1.0]},
    ]
    for a in values:
        for b in values:
            for op in ("==", "!=", "<", "<=", ">", ">="):
                assert isinstance(ottl.compare(a, b, op), bool), (a, b, op)


def test_error_mode_is_validated_by_the_config():
    from pipeline.policies.config import PolicyConfigError, load_policy_text

    with pytest.raises(PolicyConfigError, match="'propagate', 'ignore' or 'silent'"):
        load_policy_text(
            "policies: [{name: o, type: ottl_condition, "
            "ottl_condition: {error_mode: IGNORE, span: [true]}}]"
        )
