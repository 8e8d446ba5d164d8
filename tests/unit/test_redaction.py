"""PII redaction: config loading, per-key behaviour, built-in patterns, summaries, properties."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.gateway.redaction import (
    BUILTIN_PATTERNS,
    RedactionConfig,
    RedactionConfigError,
    RedactionStats,
    Redactor,
    load_redaction_config,
)
from pipeline.gateway.redaction_config import BuiltinName
from pipeline.wire.otlp import set_any_value

REPO = Path(__file__).resolve().parents[2]
ALL_BUILTINS = ["credit_card", "email", "us_ssn", "bearer_token"]


# --------------------------------------------------------------------------------- helpers


def _get(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_get(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _get(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def fill(attributes, values: dict) -> None:
    for key, value in values.items():
        set_any_value(attributes.add(key=key).value, value)


def as_dict(attributes) -> dict:
    return {kv.key: _get(kv.value) for kv in attributes}


def request_with(
    span: dict | None = None,
    resource: dict | None = None,
    scope: dict | None = None,
    event: dict | None = None,
    link: dict | None = None,
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    fill(resource_spans.resource.attributes, resource or {})
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "lib"
    fill(scope_spans.scope.attributes, scope or {})
    the_span = scope_spans.spans.add(name="op")
    the_span.trace_id = b"\x01" * 16
    the_span.span_id = b"\x02" * 8
    fill(the_span.attributes, span or {})
    if event is not None:
        fill(the_span.events.add(name="ev").attributes, event)
    if link is not None:
        the_link = the_span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8)
        fill(the_link.attributes, link)
    return request


def span_of(request):
    return request.resource_spans[0].scope_spans[0].spans[0]


def redact_span(span: dict, **config) -> tuple[dict, RedactionStats]:
    request = request_with(span=span)
    stats = Redactor(RedactionConfig(**config)).redact_request(request)
    return as_dict(span_of(request).attributes), stats


def scrub(text: str, **config) -> str:
    config.setdefault("allow_all_keys", True)
    attrs, _ = redact_span({"v": text}, **config)
    return attrs["v"]


def luhn_ok(number: str) -> bool:
    """Independent Luhn implementation for the tests."""
    digits = [int(c) for c in number][::-1]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


def write(tmp_path: Path, text: str, name: str = "redaction.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ keys


def test_default_config_keeps_only_allowed_keys():
    attrs, stats = redact_span(
        {"id": "1", "name": "n", "secret": "s", "other": 5}, allowed_keys=["id", "name"]
    )
    assert attrs == {"id": "1", "name": "n"}
    assert stats == RedactionStats(redacted_keys=2, masked_values=0)


def test_empty_allowed_keys_fails_closed():
    attrs, stats = redact_span({"a": "1", "b": 2})
    assert attrs == {}
    assert stats.redacted_keys == 2


def test_allow_all_keys_keeps_everything():
    attrs, stats = redact_span({"a": "1", "b": 2}, allow_all_keys=True)
    assert attrs == {"a": "1", "b": 2}
    assert stats == RedactionStats(0, 0)


def test_ignored_keys_are_allowed_and_never_touched():
    attrs, stats = redact_span(
        {"safe": "bob@example.com token", "kept": "bob@example.com", "gone": "x"},
        allowed_keys=["kept"],
        ignored_keys=["safe"],
        blocked_key_patterns=["safe"],
        blocked_values=["token"],
        builtin_patterns=["email"],
    )
    assert attrs == {"safe": "bob@example.com token", "kept": "****"}
    assert stats == RedactionStats(redacted_keys=1, masked_values=1)


def test_blocked_key_pattern_masks_whole_value_of_any_type():
    attrs, stats = redact_span(
        {
            "db.password": "hunter2",
            "api_key_id": 12345,
            "x-token": ["a", "b"],
            "TOKEN_ok": True,
            "plain": "hunter2",
        },
        allow_all_keys=True,
        blocked_key_patterns=["password", "api_key", "(?i)token"],
    )
    assert attrs == {
        "db.password": "****",
        "api_key_id": "****",
        "x-token": "****",
        "TOKEN_ok": "****",
        "plain": "hunter2",
    }
    assert stats == RedactionStats(0, 4)


def test_blocked_key_patterns_search_anywhere_in_the_key():
    attrs, _ = redact_span(
        {"my.token.value": "t", "tok": "t"},
        allow_all_keys=True,
        blocked_key_patterns=["token"],
    )
    assert attrs == {"my.token.value": "****", "tok": "t"}


def test_removal_happens_before_value_checks():
    attrs, stats = redact_span(
        {"notes": "card 4111111111111111", "cc": "4111111111111111"},
        allowed_keys=["notes"],
        builtin_patterns=["credit_card"],
    )
    assert attrs == {"notes": "card ****"}
    assert stats == RedactionStats(redacted_keys=1, masked_values=1)


# ---------------------------------------------------------------------------------- values


def test_blocked_values_mask_only_the_matching_parts():
    assert scrub("a 4111 b 42 c", blocked_values=["[0-9]+"]) == "a **** b **** c"
    assert scrub("nothing here", blocked_values=["[0-9]+"]) == "nothing here"


def test_several_blocked_values_in_one_string():
    out = scrub("alpha beta gamma", blocked_values=["alpha", "gamma"])
    assert out == "**** beta ****"


def test_non_string_values_are_not_value_masked():
    attrs, stats = redact_span(
        {"n": 4111111111111111, "f": 1.5, "b": True, "raw": b"4111111111111111"},
        allow_all_keys=True,
        builtin_patterns=["credit_card"],
        blocked_values=["1"],
    )
    assert attrs == {"n": 4111111111111111, "f": 1.5, "b": True, "raw": b"4111111111111111"}
    assert stats.masked_values == 0


def test_strings_inside_arrays_and_kvlists_are_masked():
    attrs, stats = redact_span(
        {
            "emails": ["a@b.io", "plain", 7, ["c@d.io"]],
            "map": {"inner": "x e@f.io", "n": 1},
        },
        allow_all_keys=True,
        builtin_patterns=["email"],
    )
    assert attrs == {
        "emails": ["****", "plain", 7, ["****"]],
        "map": {"inner": "x ****", "n": 1},
    }
    assert stats.masked_values == 2


def test_allowed_values_win_over_blocked_values_and_blocked_keys():
    config = {
        "allow_all_keys": True,
        "blocked_values": ["mycompany\\.com"],
        "allowed_values": ["support\\.mycompany\\.com"],
        "blocked_key_patterns": ["email"],
    }
    attrs, stats = redact_span(
        {
            "a": "mail support.mycompany.com",
            "b": "mail sales.mycompany.com",
            "user.email": "support.mycompany.com",
            "owner.email": "bob@elsewhere.org",
        },
        **config,
    )
    assert attrs == {
        "a": "mail support.mycompany.com",
        "b": "mail sales.****",
        "user.email": "support.mycompany.com",
        "owner.email": "****",
    }
    assert stats.masked_values == 2


def test_allowed_values_do_not_keep_removed_keys():
    attrs, _ = redact_span({"x": "ok"}, allowed_values=["ok"])
    assert attrs == {}


@pytest.mark.parametrize(
    ("function", "digest"),
    [("md5", hashlib.md5), ("sha1", hashlib.sha1), ("sha3", hashlib.sha3_256)],
)
def test_hash_function_replaces_matches_by_hex_digest(function, digest):
    out = scrub("ids 123 and 45", blocked_values=["[0-9]+"], hash_function=function)
    expected = f"ids {digest(b'123').hexdigest()} and {digest(b'45').hexdigest()}"
    assert out == expected
    attrs, _ = redact_span(
        {"password": "hunter2", "pin": 1234},
        allow_all_keys=True,
        blocked_key_patterns=["password", "pin"],
        hash_function=function,
    )
    assert attrs["password"] == digest(b"hunter2").hexdigest()
    assert attrs["pin"] == digest(b"1234").hexdigest()


def test_hash_of_builtin_match_covers_only_the_match():
    out = scrub("Bearer abc.def", builtin_patterns=["bearer_token"], hash_function="sha1")
    assert out == "Bearer " + hashlib.sha1(b"abc.def").hexdigest()


# -------------------------------------------------------------------------------- builtins


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5500 0000 0000 0004",
        "378282246310005",  # Amex, 15 digits
        "6011-1111-1111-1117",
        "4222222222222",  # 13 digits
        "6304000000000000018",  # 19 digits (Maestro-style)
    ],
)
def test_luhn_valid_card_numbers_are_masked(number):
    assert luhn_ok(number.replace(" ", "").replace("-", ""))
    assert scrub(f"paid with {number}.", builtin_patterns=["credit_card"]) == "paid with ****."


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",  # Luhn fails
        "4111 1111 1111 1112",
        "1234567812345678",
        "411111111111",  # 12 digits: too short
        "41111111111111111113",  # 20 digits: too long
        "4111  1111 1111 1111",  # double separator
    ],
)
def test_luhn_invalid_or_malformed_card_numbers_are_kept(number):
    text = f"order {number} ok"
    assert scrub(text, builtin_patterns=["credit_card"]) == text


def test_card_followed_by_another_digit_group_is_still_found():
    out = scrub("4111 1111 1111 1111 7", builtin_patterns=["credit_card"])
    assert out == "**** 7"


def test_invalid_card_candidate_does_not_hide_other_patterns():
    # A card candidate that fails Luhn neither hides a later pattern at the same start ...
    text = "123-45-6789-0000"
    assert not luhn_ok("1234567890000")
    out = scrub(text, builtin_patterns=["credit_card", "us_ssn"])
    assert out == "****-0000"
    # ... nor a match that starts inside it.
    out = scrub("4111111111111112", builtin_patterns=["credit_card"], blocked_values=["1112"])
    assert out == "411111111111****"


@given(body=st.text(alphabet="0123456789", min_size=12, max_size=18))
@settings(max_examples=300)
def test_digit_runs_masked_exactly_when_luhn_holds(body):
    for number in (with_check_digit(body), body + "0", body + "5"):
        text = f"card: {number};"
        expected = "card: ****;" if luhn_ok(number) else text
        assert scrub(text, builtin_patterns=["credit_card"]) == expected


@given(
    body=st.text(alphabet="0123456789", min_size=12, max_size=18),
    separator=st.sampled_from([" ", "-"]),
)
def test_grouped_valid_cards_are_masked(body, separator):
    number = with_check_digit(body)
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    assert scrub(f"card: {grouped};", builtin_patterns=["credit_card"]) == "card: ****;"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("contact bob.smith+tag@mail.example.co.uk now", "contact **** now"),
        ("a@b.io,c_d@e-f.org", "****,****"),
        ("not an email: bob@localhost", "not an email: bob@localhost"),
        ("at sign alone @ here", "at sign alone @ here"),
    ],
)
def test_email(text, expected):
    assert scrub(text, builtin_patterns=["email"]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssn 123-45-6789.", "ssn ****."),
        ("ssn 078-05-1120", "ssn ****"),
        ("ssn 000-12-3456", "ssn 000-12-3456"),
        ("ssn 666-12-3456", "ssn 666-12-3456"),
        ("ssn 900-12-3456", "ssn 900-12-3456"),
        ("ssn 999-12-3456", "ssn 999-12-3456"),
        ("ssn 123-00-4567", "ssn 123-00-4567"),
        ("ssn 123-45-0000", "ssn 123-45-0000"),
        ("id 1123-45-6789", "id 1123-45-6789"),
        ("phone 123-456-7890", "phone 123-456-7890"),
    ],
)
def test_us_ssn(text, expected):
    assert scrub(text, builtin_patterns=["us_ssn"]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bearer eyJhbGciOi.eyJzdWIi.SflKxw-_=", "Bearer ****"),
        ("Authorization: bearer abc123~+/== trailing", "Authorization: bearer **** trailing"),
        ("BEARER\tTOKEN", "BEARER\t****"),
        ("the bearer of bad news", "the bearer **** bad news"),
        ("Bearer", "Bearer"),
        ("unbearer x", "unbearer x"),
    ],
)
def test_bearer_token_masks_only_the_token(text, expected):
    assert scrub(text, builtin_patterns=["bearer_token"]) == expected


def test_all_builtins_together():
    text = "u=bob@x.org ssn=123-45-6789 cc=4111111111111111 auth=Bearer tok.en"
    out = scrub(text, builtin_patterns=ALL_BUILTINS)
    assert out == "u=**** ssn=**** cc=**** auth=Bearer ****"


# --------------------------------------------------------------------------------- summary


SUMMARY_INPUT = {"keep": "mail a@b.io", "drop1": "x", "drop2": "y", "safe": "c@d.io", "ok": "z"}
SUMMARY_CONFIG = {
    "allowed_keys": ["keep", "ok"],
    "ignored_keys": ["safe"],
    "builtin_patterns": ["email"],
}


def test_summary_debug_lists_keys_and_counts():
    attrs, _ = redact_span(SUMMARY_INPUT, summary="debug", **SUMMARY_CONFIG)
    assert attrs == {
        "keep": "mail ****",
        "safe": "c@d.io",
        "ok": "z",
        "redaction.redacted.keys": "drop1,drop2",
        "redaction.redacted.count": 2,
        "redaction.masked.keys": "keep",
        "redaction.masked.count": 1,
        "redaction.ignored.count": 1,
    }


def test_summary_info_has_only_counts():
    attrs, _ = redact_span(SUMMARY_INPUT, summary="info", **SUMMARY_CONFIG)
    assert {k: v for k, v in attrs.items() if k.startswith("redaction.")} == {
        "redaction.redacted.count": 2,
        "redaction.masked.count": 1,
        "redaction.ignored.count": 1,
    }


@pytest.mark.parametrize("level", [None, "silent"])
def test_summary_silent_is_the_default_and_adds_nothing(level):
    config = dict(SUMMARY_CONFIG, **({"summary": level} if level else {}))
    attrs, stats = redact_span(SUMMARY_INPUT, **config)
    assert not [k for k in attrs if k.startswith("redaction.")]
    assert stats == RedactionStats(redacted_keys=2, masked_values=1)


def test_summary_reports_allowed_values_and_nothing_when_nothing_happened():
    attrs, _ = redact_span(
        {"a": "x@ok.io", "b": "plain"},
        allow_all_keys=True,
        builtin_patterns=["email"],
        allowed_values=["@ok\\.io$"],
        summary="debug",
    )
    assert attrs == {
        "a": "x@ok.io",
        "b": "plain",
        "redaction.allowed.keys": "a",
        "redaction.allowed.count": 1,
    }
    attrs, _ = redact_span({"b": "plain"}, allow_all_keys=True, summary="debug")
    assert attrs == {"b": "plain"}


def test_summary_merges_with_an_upstream_summary():
    attrs, _ = redact_span(
        {
            "redaction.masked.keys": "zeta",
            "redaction.masked.count": 1,
            "note": "a@b.io",
        },
        builtin_patterns=["email"],
        summary="debug",
    )
    # The summary keys survive even though allowed_keys is empty.
    assert attrs == {
        "redaction.masked.keys": "zeta",
        "redaction.masked.count": 1,
        "redaction.redacted.keys": "note",
        "redaction.redacted.count": 1,
    }
    attrs, _ = redact_span(
        {"redaction.masked.keys": "zeta", "redaction.masked.count": 1, "note": "a@b.io"},
        allow_all_keys=True,
        builtin_patterns=["email"],
        summary="debug",
    )
    assert attrs == {
        "redaction.masked.keys": "note,zeta",
        "redaction.masked.count": 2,
        "note": "****",
    }


# ------------------------------------------------------------------------ all attribute maps


def test_resource_scope_event_and_link_attributes_are_redacted():
    pii = {"mail": "to a@b.io", "password": "pw", "drop": "x"}
    request = request_with(span=pii, resource=pii, scope=pii, event=pii, link=pii)
    stats = Redactor(
        RedactionConfig(
            allowed_keys=["mail", "password"],
            blocked_key_patterns=["password"],
            builtin_patterns=["email"],
            summary="info",
        )
    ).redact_request(request)
    expected = {
        "mail": "to ****",
        "password": "****",
        "redaction.redacted.count": 1,
        "redaction.masked.count": 2,
    }
    resource_spans = request.resource_spans[0]
    span = span_of(request)
    assert as_dict(resource_spans.resource.attributes) == expected
    assert as_dict(resource_spans.scope_spans[0].scope.attributes) == expected
    assert as_dict(span.attributes) == expected
    assert as_dict(span.events[0].attributes) == expected
    assert as_dict(span.links[0].attributes) == expected
    assert stats == RedactionStats(redacted_keys=5, masked_values=10)


def test_noop_config_leaves_request_byte_identical():
    request = request_with(span={"a": "a@b.io 4111111111111111"}, event={"b": 1})
    before = request.SerializeToString()
    stats = Redactor(RedactionConfig(allow_all_keys=True)).redact_request(request)
    assert request.SerializeToString() == before
    assert stats == RedactionStats(0, 0)


def test_unset_resource_and_scope_stay_unset():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="s")
    fill(span.attributes, {"a": "x"})
    Redactor(RedactionConfig(allow_all_keys=True, blocked_values=["x"])).redact_request(request)
    assert not request.resource_spans[0].HasField("resource")
    assert not request.resource_spans[0].scope_spans[0].HasField("scope")
    assert as_dict(span.attributes) == {"a": "****"}


def test_repeated_values_are_masked_every_time():
    redactor = Redactor(RedactionConfig(allow_all_keys=True, builtin_patterns=["email"]))
    for _ in range(3):
        request = request_with(span={"a": "to x@y.io", "b": "GET"}, event={"a": "to x@y.io"})
        stats = redactor.redact_request(request)
        assert as_dict(span_of(request).attributes) == {"a": "to ****", "b": "GET"}
        assert as_dict(span_of(request).events[0].attributes) == {"a": "to ****"}
        assert stats == RedactionStats(0, 2)


def test_long_values_are_scanned_whole():
    text = "x" * 5000 + " a@b.io " + "4111111111111111 " * 3 + "y" * 5000
    out = scrub(text, builtin_patterns=ALL_BUILTINS)
    assert out == "x" * 5000 + " **** " + "**** " * 3 + "y" * 5000


def test_many_spans_share_the_key_cache():
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for number in range(50):
        fill(spans.add().attributes, {"user": f"u{number}@x.io", "drop": "d", "n": number})
    stats = Redactor(
        RedactionConfig(allowed_keys=["user", "n"], builtin_patterns=["email"])
    ).redact_request(request)
    assert stats == RedactionStats(redacted_keys=50, masked_values=50)
    assert all(as_dict(s.attributes) == {"user": "****", "n": i} for i, s in enumerate(spans))


# ---------------------------------------------------------------------------------- config


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError):
        RedactionConfig(allow_all_keys=True, redact_everything=True)
    with pytest.raises(ValueError):
        RedactionConfig(summary="loud")
    with pytest.raises(ValueError):
        RedactionConfig(hash_function="sha256")
    with pytest.raises(ValueError):
        RedactionConfig(builtin_patterns=["iban"])
    with pytest.raises(ValueError, match="matches the empty string"):
        RedactionConfig(blocked_values=["x*"])
    with pytest.raises(ValueError, match="backreference"):
        RedactionConfig(blocked_values=["(a)\\1"])


def test_re2_style_patterns_are_accepted():
    config = RedactionConfig(
        allow_all_keys=True,
        blocked_key_patterns=["(?i)secret"],
        blocked_values=["(?P<n>x)y", "(?<m>q)r", "(?i)zz", "end\\z", "(?x) t h e  # verbose"],
    )
    attrs, _ = redact_span({"MY_SECRET": "s", "v": "xy qr ZZ the end"}, **config.model_dump())
    assert attrs == {"MY_SECRET": "****", "v": "**** **** **** **** ****"}


def test_load_bare_mapping(tmp_path):
    path = write(
        tmp_path,
        """
        allow_all_keys: true
        blocked_values: ["[0-9]{4}"]
        builtin_patterns: [email, us_ssn]
        summary: info
        allowed_keys:
        """,
    )
    config = load_redaction_config(path)
    assert config.allow_all_keys is True
    assert config.blocked_values == ["[0-9]{4}"]
    assert config.builtin_patterns == ["email", "us_ssn"]
    assert config.allowed_keys == []
    assert config.summary == "info"


def test_load_collector_config_shape(tmp_path):
    path = write(
        tmp_path,
        """
        receivers:
          otlp:
            protocols: {grpc: {}}
        processors:
          batch: {}
          redaction/pii:
            allow_all_keys: true
            blocked_key_patterns: [".*token.*"]
            summary: debug
          redaction:
            allow_all_keys: false
        service:
          pipelines:
            traces:
              receivers: [otlp]
              processors: [redaction/pii, batch]
        """,
    )
    config = load_redaction_config(path)
    assert config.allow_all_keys is True
    assert config.blocked_key_patterns == [".*token.*"]
    assert config.summary == "debug"


def test_collector_redaction_without_keys_means_collector_defaults(tmp_path):
    path = write(tmp_path, "processors:\n  redaction:\n")
    assert load_redaction_config(path) == RedactionConfig()


def test_error_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        """
        # PII settings
        allow_all_keys: true
        blocked_values:
          - "[0-9]+"
          - "(unclosed"
        summary: loud
        """,
        name="pii-redaction.yaml",
    )
    with pytest.raises(RedactionConfigError) as caught:
        load_redaction_config(path)
    message = str(caught.value)
    assert "pii-redaction.yaml" in message
    assert f"{path}:5:5: blocked_values[1]: " in message
    assert "invalid regular expression" in message
    assert f"{path}:6:10: summary: " in message
    assert "debug" in message and "info" in message and "silent" in message
    assert caught.value.line == 5
    assert caught.value.field == "blocked_values[1]"


def test_error_for_unknown_key_in_collector_config(tmp_path):
    path = write(
        tmp_path,
        """
        processors:
          redaction/pii:
            allow_all_keys: true
            redact_all_types: true
        """,
    )
    with pytest.raises(RedactionConfigError) as caught:
        load_redaction_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{path}:4:" in message
    assert "processors.redaction/pii.redact_all_types" in message
    assert "unknown key" in message and "allowed_keys" in message


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("allow_all_keys: true\nsummary: [debug\n", 3, "invalid YAML"),
        ("- a\n- b\n", 1, "expected a mapping"),
        ("processors:\n  batch: {}\n", 1, "'redaction'"),
        ("allow_all_keys: maybe\n", 1, "true or false"),
        ("builtin_patterns:\n  - email\n  - iban\n", 3, "credit_card"),
        ("summary: info\nsummary: debug\n", 2, "duplicate key 'summary'"),
    ],
)
def test_more_config_errors(tmp_path, text, line, needle):
    path = write(tmp_path, text)
    with pytest.raises(RedactionConfigError) as caught:
        load_redaction_config(path)
    message = str(caught.value)
    assert f"{path.name}:{line}:" in message
    assert needle in message
    assert path.name in message


def test_empty_or_missing_file_is_an_error(tmp_path):
    with pytest.raises(RedactionConfigError, match="empty"):
        load_redaction_config(write(tmp_path, "# nothing\n"))
    with pytest.raises(RedactionConfigError, match="cannot read"):
        load_redaction_config(tmp_path / "absent.yaml")


def test_the_names_a_file_may_give_are_the_builtin_patterns():
    assert list(get_args(BuiltinName)) == list(BUILTIN_PATTERNS)


def test_problems_of_a_file_are_listed_one_a_line_topmost_first(tmp_path):
    path = write(tmp_path, "summary: loud\nallowed_keys: [a, 5]\nhash_function: sha256\n")
    with pytest.raises(RedactionConfigError) as caught:
        load_redaction_config(path)
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (1, "summary"),
        (2, "allowed_keys[1]"),
        (3, "hash_function"),
    ]
    assert str(caught.value).splitlines()[2] == (
        f"{path}:3:16: hash_function: expected 'none', 'md5', 'sha1' or 'sha3', got 'sha256'"
    )


def test_example_topology_file_loads_and_redacts():
    config = load_redaction_config(REPO / "topologies" / "redaction-example.yaml")
    assert set(config.builtin_patterns) == set(ALL_BUILTINS)
    attrs, _ = redact_span(
        {
            "service.name": "checkout",
            "db.password": "pw",
            "note": "card 4111-1111-1111-1111 for jo@corp.io",
            "contact": "help@example.com",
        },
        **config.model_dump(),
    )
    assert attrs["service.name"] == "checkout"
    assert attrs["db.password"] == "****"
    assert attrs["note"] == "card **** for ****"
    assert attrs["contact"] == "help@example.com"
    assert attrs["redaction.masked.count"] == 2


# ------------------------------------------------------------------------------- properties

# Patterns and values over letters g-z (and spaces): neither "****" nor a hex digest can
# complete a match, so the property is exact.
_LETTERS = "ghijklmnopqrstuvwxyz"
_atoms = st.one_of(
    st.text(alphabet=_LETTERS, min_size=1, max_size=3).map(re.escape),
    st.sampled_from(["[g-k]", "[p-t]+", "[u-z]{2}", "(?:gh|ij)", "m?n"]),
)
_patterns = st.lists(_atoms, min_size=1, max_size=3).map("".join)
_values = st.text(alphabet=_LETTERS + " ", max_size=40)


@given(
    values=st.lists(_values, min_size=1, max_size=6),
    blocked=st.lists(_patterns, min_size=1, max_size=4),
    allowed=st.lists(_patterns, max_size=2),
    hash_function=st.sampled_from(["none", "md5", "sha3"]),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_no_blocked_match_survives_unless_allowed(values, blocked, allowed, hash_function):
    span = {f"k{i}": value for i, value in enumerate(values)}
    attrs, stats = redact_span(
        span,
        allow_all_keys=True,
        blocked_values=blocked,
        allowed_values=allowed,
        hash_function=hash_function,
    )
    blocked_rx = [re.compile(p) for p in blocked]
    allowed_rx = [re.compile(p) for p in allowed]
    masked = 0
    for key, original in span.items():
        out = attrs[key]
        if any(rx.search(original) for rx in allowed_rx):
            assert out == original
            continue
        assert not any(rx.search(out) for rx in blocked_rx), (original, out)
        if out != original:
            masked += 1
        # Unmasked text is kept in order.
        kept = re.sub(r"\*\*\*\*|[0-9a-f]{32,}", "", out)
        assert set(kept) <= set(original)
    assert stats.masked_values == masked


_cards = st.text(alphabet="0123456789", min_size=12, max_size=18).map(with_check_digit)
_pieces = st.one_of(
    _cards.map(lambda n: ("card", n)),
    st.sampled_from(["bob@example.com", "x.y+z@mail.co"]).map(lambda e: ("email", e)),
    st.sampled_from(["123-45-6789", "501-01-2345"]).map(lambda s: ("ssn", s)),
    st.text(alphabet="abcdefgh", min_size=1, max_size=8).map(lambda w: ("word", w)),
)


@given(pieces=st.lists(_pieces, min_size=1, max_size=8))
@settings(max_examples=200)
def test_builtin_pii_never_survives(pieces):
    text = "; ".join(value for _, value in pieces)
    out = scrub(text, builtin_patterns=ALL_BUILTINS)
    for kind, value in pieces:
        if kind == "word":
            assert value in out
        else:
            assert value not in out
