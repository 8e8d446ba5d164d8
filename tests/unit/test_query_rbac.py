"""RBAC's pure parts: the roles and tokens files, how roles combine, who a request is,
placeholders, and the query server's exposure rule."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.config.listen import ExposureError, check_exposure
from pipeline.config.settings import Settings
from pipeline.config.yaml_file import ConfigError
from pipeline.query.rbac.access import Access, ServiceMatcher
from pipeline.query.rbac.authenticate import Authenticator, authenticator, parse_networks
from pipeline.query.rbac.placeholders import HIDDEN, mark_jaeger_trace, masked
from pipeline.query.rbac.roles import RolesFile, load_roles, load_tokens, token_digest

ROLES = """\
roles:
  payments:
    services: ["payment*", checkout]
    actions: [search, read_trace]
    groups: [team-pay]
  metrics-all:
    services: ["*"]
    actions: [metrics]
    users: [carol]
anonymous: [metrics-all]
"""


def roles_file(tmp_path: Path, text: str = ROLES) -> Path:
    path = tmp_path / "roles.yaml"
    path.write_text(text)
    return path


def test_roles_load(tmp_path: Path):
    roles = load_roles(roles_file(tmp_path))
    assert set(roles.roles) == {"payments", "metrics-all"}
    assert roles.roles["payments"].allowed_actions() == {"search", "read_trace"}
    assert roles.anonymous == ["metrics-all"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "roles:\n  a:\n    services: [x]\n    actions: [delete]\n",
            r"roles.yaml:4:.*roles.a.actions\[0\]",
        ),
        ("roles:\n  a:\n    services: []\n    actions: [search]\n", r"roles.yaml:3:.*services"),
        ("roles:\n  a:\n    services: [x]\n    actions: [search]\n    team: y\n", "unknown key"),
        ("roles:\n  a:\n    services: [x]\n    actions: [search]\nanonymous: [b]\n", "not defined"),
        ("", "the file is empty"),
    ],
)
def test_roles_errors_name_file_line_and_field(tmp_path: Path, text: str, where: str):
    with pytest.raises(ConfigError, match=where):
        load_roles(roles_file(tmp_path, text))


def test_tokens_file(tmp_path: Path):
    digest = hashlib.sha256(b"hidden").hexdigest()
    path = tmp_path / "tokens"
    path.write_text(
        f"# comment\nplain  alice  payments,metrics-all\nsha256:{digest} bob payments\n"
    )
    tokens = load_tokens(path, {"payments", "metrics-all"})
    assert tokens[token_digest("plain")].roles == ("payments", "metrics-all")
    assert tokens[token_digest("hidden")].name == "bob"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("only-token\n", "tokens:1:1: expected 'TOKEN NAME ROLE"),
        ("tok alice nosuch\n", "tokens:1:11: unknown role 'nosuch'"),
        ("tok alice payments\ntok bob payments\n", "tokens:2:1: the same token is listed twice"),
    ],
)
def test_tokens_errors(tmp_path: Path, line: str, message: str):
    path = tmp_path / "tokens"
    path.write_text(line)
    with pytest.raises(ConfigError, match=message):
        load_tokens(path, {"payments"})


def test_service_matcher_globs_and_cache():
    matcher = ServiceMatcher(["payment*", "checkout"])
    assert matcher("payment-eu") and matcher("checkout")
    assert not matcher("checkout2") and not matcher("Payment")
    assert not ServiceMatcher([])
    assert ServiceMatcher(["*"]).everything


def test_roles_combine_per_action_not_across(tmp_path: Path):
    roles = load_roles(roles_file(tmp_path)).roles
    access = Access.of_roles("carol", ["payments", "metrics-all", "unknown"], roles)
    assert access.roles == ("payments", "metrics-all")
    assert access.sees("search")("payment") and not access.sees("search")("cart")
    assert access.sees("metrics")("cart")  # metrics-all covers every service, for metrics
    assert not access.may("sampling")
    assert access.sees_any()("cart")
    assert not access.unrestricted
    assert Access.everything().unrestricted


def make_authenticator(tmp_path: Path) -> Authenticator:
    roles = load_roles(roles_file(tmp_path))
    path = tmp_path / "tokens"
    path.write_text("good alice payments\n")
    tokens = load_tokens(path, set(roles.roles))
    return Authenticator(roles, tokens, parse_networks("10.0.0.0/8, ::1"))


def test_authenticate_paths(tmp_path: Path):
    auth = make_authenticator(tmp_path)
    token = auth.authenticate({"authorization": "Bearer good"}, "192.0.2.1")
    assert token.access is not None and token.access.principal == "alice"
    assert auth.authenticate({"authorization": "Bearer bad"}, None).access is None
    assert "scheme" in auth.authenticate({"authorization": "Basic x"}, None).problem
    sso = {"x-forwarded-user": "dave", "x-forwarded-groups": "dev,team-pay"}
    trusted = auth.authenticate(sso, "10.1.2.3").access
    assert trusted is not None and trusted.principal == "dave" and trusted.roles == ("payments",)
    carol = auth.authenticate({"x-forwarded-user": "carol"}, "::1").access
    assert carol is not None and carol.roles == ("metrics-all",)
    # From outside the trusted networks the headers count for nothing: anonymous roles.
    untrusted = auth.authenticate(sso, "192.0.2.1").access
    assert untrusted is not None and untrusted.principal == "anonymous"


def test_no_credentials_without_anonymous_roles(tmp_path: Path):
    roles = RolesFile.model_validate({"roles": {"a": {"services": ["x"], "actions": ["*"]}}})
    outcome = Authenticator(roles, {}).authenticate({}, "127.0.0.1")
    assert outcome.access is None and "credentials required" in outcome.problem


def test_bad_trusted_proxy():
    with pytest.raises(ValueError, match="query_trusted_proxies: 'nope'"):
        parse_networks("10.0.0.0/8,nope")


def test_tokens_need_roles(tmp_path: Path):
    assert authenticator(Settings()) is None
    with pytest.raises(ValueError, match="need query_roles"):
        authenticator(Settings(query_tokens_file=tmp_path / "t"))


def test_placeholders_keep_timing_only():
    doc = {
        "traceId": "t",
        "spanId": "s",
        "parentSpanId": "p",
        "startTime": "2026-01-01T00:00:00.000000000Z",
        "endTime": "2026-01-01T00:00:01.000000000Z",
        "durationInNanos": 10**9,
        "serviceName": "secret-svc",
        "name": "secret op",
        "kind": "SPAN_KIND_SERVER",
        "status": {"code": 2},
        "span.attributes.user@id": "42",
        "events": [{"name": "e"}],
        "links": [{"traceId": "u", "spanId": "v", "attributes": {"k": 1}}],
    }
    shown, hidden = masked([doc, {**doc, "serviceName": "ok"}], lambda s: s == "ok")
    assert hidden == 1
    assert shown[0] == {
        "traceId": "t",
        "spanId": "s",
        "parentSpanId": "p",
        "startTime": doc["startTime"],
        "endTime": doc["endTime"],
        "durationInNanos": 10**9,
        "serviceName": HIDDEN,
        "name": HIDDEN,
        "links": [{"traceId": "u", "spanId": "v"}],
    }
    assert shown[1]["serviceName"] == "ok"
    trace = {
        "spans": [{"processID": "p1", "warnings": None}, {"processID": "p2", "warnings": None}],
        "processes": {"p1": {"serviceName": HIDDEN}, "p2": {"serviceName": "ok"}},
    }
    marked = mark_jaeger_trace(trace, 1)
    assert marked["spans"][0]["warnings"] and marked["spans"][1]["warnings"] is None
    assert "1 span of services outside your role" in marked["warnings"][0]


def test_query_exposure_rule(tmp_path: Path):
    cert, key = tmp_path / "c", tmp_path / "k"

    def check(host: str, **kwargs) -> None:
        options = {"authenticated": False, "cert": None, "key": None, "allow_insecure": False}
        check_exposure("query", host, authentication="RBAC roles", **{**options, **kwargs})

    check("127.0.0.1")
    with pytest.raises(ExposureError, match="RBAC roles and TLS are not configured"):
        check("0.0.0.0")
    with pytest.raises(ExposureError, match="--query-allow-insecure"):
        check("0.0.0.0", authenticated=True)
    check("0.0.0.0", authenticated=True, cert=cert, key=key)
    check("0.0.0.0", allow_insecure=True)
    with pytest.raises(ExposureError, match="SPANSIEVE_QUERY_TLS_CERT"):
        check("127.0.0.1", cert=cert)
