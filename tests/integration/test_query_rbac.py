"""RBAC on the query API: each role against each endpoint, placeholders, proxy SSO, 401 and
403, the audit log, and TLS on the query port.

The five traces of ``test_query`` sit in a private store. Most checks run the app in this
process (``httpx.ASGITransport``, which also lets a test choose the client address the
proxy-header path depends on); TLS runs a real `spansieve query` process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.local.run import free_port
from pipeline.query.rbac.placeholders import HIDDEN
from tests.asgi import Request
from tests.integration.conftest import running_query, trusting
from tests.integration.test_query import TRACES, dependency_window, in_process, private_store

pytestmark = pytest.mark.integration

ROLES = """
roles:
  frontend-team:
    services: [frontend, "cart*"]
    actions: [search, read_trace, dependencies, metrics]
    users: [alice]
  cart-readers:
    services: ["cart*"]
    actions: [read_trace]
  sre:
    services: ["*"]
    actions: ["*"]
    groups: [platform]
  sdk:
    services: [frontend, cart]
    actions: [sampling]
anonymous: [sdk]
"""
TOKENS = """
# token        principal     roles
t-front        front-dev     frontend-team
t-cart         cart-reader   cart-readers
t-sre          sre-bot       sre
"""
PROXY = "10.0.0.7"  # the trusted reverse proxy
FRONT = {"Authorization": "Bearer t-front"}
CART = {"Authorization": "Bearer t-cart"}
SRE = {"Authorization": "Bearer t-sre"}
ALL_SERVICES = ["batch", "cart", "frontend", "payment", "search"]


def trace_id(name: str) -> str:
    return TRACES[name].trace_id.hex()


@pytest.fixture(scope="module")
def rbac_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rbac")
    roles, no_anonymous, tokens = folder / "roles.yaml", folder / "closed.yaml", folder / "tokens"
    roles.write_text(ROLES)
    no_anonymous.write_text(ROLES.replace("anonymous: [sdk]", ""))
    tokens.write_text(TOKENS)
    return {"roles": roles, "closed": no_anonymous, "tokens": tokens}


@pytest.fixture(scope="module")
def store(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    with private_store(stack, opensearch, tmp_path_factory.mktemp("rbac-store")) as settings:
        yield settings


@pytest.fixture(scope="module")
def secured(store: Settings, rbac_files: dict[str, Path]) -> Settings:
    return store.model_copy(
        update={
            "query_roles": rbac_files["roles"],
            "query_tokens_file": rbac_files["tokens"],
            "query_trusted_proxies": f"{PROXY}/32",
        }
    )


def call(
    settings: Settings, requests: list[Request], client: str = "127.0.0.1"
) -> list[httpx.Response]:
    """Each request against the app run in this process, seen as coming from ``client``."""
    return in_process(settings, *requests, client=(client, 40000))


def get(settings: Settings, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    [reply] = call(settings, [(path, params, headers)])
    return reply


def spans_by_id(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["spanID"]: span for span in trace["spans"]}


# --- who sees which services ---------------------------------------------------------------


def test_services_and_operations_list_only_the_roles_services(secured: Settings):
    lists = call(
        secured,
        [
            ("/api/services", {}, FRONT),
            ("/api/services", {}, CART),
            ("/api/services", {}, SRE),
            ("/api/v3/services", {}, FRONT),
            ("/api/services/frontend/operations", {}, FRONT),
            ("/api/services/payment/operations", {}, FRONT),
            ("/api/operations", {"service": "payment"}, CART),
            ("/api/v3/operations", {"service": "search"}, FRONT),
        ],
    )
    front, cart, sre, front_v3, own_ops, foreign_ops, foreign_v1, foreign_v3 = lists
    assert front.json()["data"] == ["cart", "frontend"]
    assert cart.json()["data"] == ["cart"]
    assert sre.json()["data"] == ALL_SERVICES
    assert front_v3.json() == {"services": ["cart", "frontend"]}
    assert "GET /cart" in own_ops.json()["data"]
    for refused in (foreign_ops, foreign_v1):
        assert refused.status_code == 403
        assert "may not see service" in refused.json()["errors"][0]["msg"]
    assert foreign_v3.status_code == 403
    assert foreign_v3.json()["error"]["httpCode"] == 403


def test_search_shows_foreign_spans_as_placeholders(secured: Settings):
    reply = get(secured, "/api/traces", FRONT, service="frontend", operation="POST /checkout")
    [trace] = reply.json()["data"]
    assert trace["traceID"] == trace_id("checkout")
    spans = spans_by_id(trace)
    charge = spans[TRACES["checkout"].ids["charge"].hex()]
    assert charge["operationName"] == HIDDEN
    assert trace["processes"][charge["processID"]] == {"serviceName": HIDDEN, "tags": []}
    assert charge["tags"] == [] and charge["logs"] == []
    # Timing and position are kept: the timeline still adds up.
    assert charge["duration"] == 390_000  # µs, as built in test_query
    assert charge["references"][0]["spanID"] == TRACES["checkout"].ids["POST /checkout"].hex()
    assert charge["warnings"] and "outside your role" in charge["warnings"][0]
    assert trace["warnings"] == [
        "1 span of services outside your role shown as placeholders "
        "(timing kept, names and attributes withheld)"
    ]
    root = spans[TRACES["checkout"].ids["POST /checkout"].hex()]
    assert root["operationName"] == "POST /checkout" and root["warnings"] is None


def test_search_refusals(secured: Settings):
    foreign, unnamed, no_search, v3_foreign = call(
        secured,
        [
            ("/api/traces", {"service": "payment"}, FRONT),
            ("/api/traces", {}, FRONT),
            ("/api/traces", {"service": "cart"}, CART),
            ("/api/v3/trace-summaries", {"query.service_name": "payment"}, FRONT),
        ],
    )
    assert foreign.status_code == 403
    assert unnamed.status_code == 403
    assert "choose a service" in unnamed.json()["errors"][0]["msg"]
    assert no_search.status_code == 403
    assert "lacks the action 'search'" in no_search.json()["errors"][0]["msg"]
    assert v3_foreign.status_code == 403 and "error" in v3_foreign.json()


def test_trace_level_conditions_that_would_tell_of_foreign_services(secured: Settings):
    told, timing, sre = call(
        secured,
        [
            ("/api/traces", {"service": "frontend", "where": "trace.services=payment"}, FRONT),
            ("/api/traces", {"service": "frontend", "where": "trace.duration>300ms"}, FRONT),
            ("/api/traces", {"service": "frontend", "where": "trace.services=payment"}, SRE),
        ],
    )
    assert told.status_code == 403
    assert "trace.services" in told.json()["errors"][0]["msg"]
    # Durations are no secret: placeholders keep their timing.
    assert {t["traceID"] for t in timing.json()["data"]} == {trace_id("checkout")}
    assert [t["traceID"] for t in sre.json()["data"]] == [trace_id("checkout")]


def test_trace_by_id_hides_what_the_role_cannot_read(secured: Settings):
    cart_view, none_visible, sre_view, lookup = call(
        secured,
        [
            (f"/api/traces/{trace_id('cart_fast')}", {}, CART),
            (f"/api/traces/{trace_id('checkout')}", {}, CART),
            (f"/api/traces/{trace_id('checkout')}", {}, SRE),
            ("/api/traces", {"traceID": [trace_id("cart_fast"), trace_id("nightly")]}, CART),
        ],
    )
    [trace] = cart_view.json()["data"]
    names = {span["operationName"] for span in trace["spans"]}
    assert names == {HIDDEN, "cart.get", "SELECT cart"}
    # A trace without a single readable span is not found: its existence stays unknown.
    assert none_visible.status_code == 404
    [full] = sre_view.json()["data"]
    assert full["warnings"] is None
    assert {p["serviceName"] for p in full["processes"].values()} == {"frontend", "payment"}
    body = lookup.json()
    assert [t["traceID"] for t in body["data"]] == [trace_id("cart_fast")]
    assert body["errors"] == [
        {"code": 404, "msg": "trace not found", "traceID": trace_id("nightly")}
    ]


def test_api_v3_masks_alike(secured: Settings):
    one, summaries = call(
        secured,
        [
            (f"/api/v3/traces/{trace_id('search')}", {}, FRONT),
            (
                "/api/v3/trace-summaries",
                {"query.service_name": "frontend", "query.operation_name": "GET /search"},
                FRONT,
            ),
        ],
    )
    body = one.json()
    services = {
        attribute["value"]["stringValue"]
        for resource in body["result"]["resourceSpans"]
        for attribute in resource["resource"]["attributes"]
        if attribute["key"] == "service.name"
    }
    assert services == {"frontend", HIDDEN}
    assert "outside your role" in body["warnings"][0]
    [summary] = summaries.json()["summaries"]
    assert summary["traceId"] == trace_id("search") or summary.get("traceID") == trace_id("search")
    assert "search" not in str(summary.get("services", ""))


def test_dependencies_keep_edges_between_visible_services(secured: Settings):
    window = dependency_window()
    front, sre = call(
        secured, [("/api/dependencies", window, FRONT), ("/api/dependencies", window, SRE)]
    )
    edges = {(d["parent"], d["child"]) for d in front.json()["data"]}
    assert edges == {("frontend", "cart"), ("cart", "cart")}
    everything = {(d["parent"], d["child"]) for d in sre.json()["data"]}
    assert {("frontend", "payment"), ("frontend", "search")} <= everything


def test_metrics_and_sampling_by_role(secured: Settings):
    calls = {"lookback": "3600000", "step": "60000"}
    own, foreign, cart_metrics, sdk, sdk_foreign = call(
        secured,
        [
            ("/api/metrics/calls", {**calls, "service": "frontend"}, FRONT),
            ("/api/metrics/calls", {**calls, "service": ["frontend", "payment"]}, FRONT),
            ("/api/metrics/calls", {**calls, "service": "cart"}, CART),
            ("/api/sampling", {"service": "frontend"}, {}),
            ("/api/sampling", {"service": "payment"}, {}),
        ],
    )
    assert own.status_code == 200
    assert foreign.status_code == 403 and "'payment'" in foreign.json()["errors"][0]["msg"]
    assert cart_metrics.status_code == 403  # cart-readers may read traces, not metrics
    assert sdk.status_code == 200 and "strategyType" in sdk.json()  # the anonymous role
    assert sdk_foreign.status_code == 403


# --- authentication ----------------------------------------------------------------------------


def test_credentials_missing_or_wrong(secured: Settings, rbac_files: dict[str, Path]):
    closed = secured.model_copy(update={"query_roles": rbac_files["closed"]})
    missing, v3_missing, health, page = call(
        closed,
        [
            ("/api/services", {}, {}),
            ("/api/v3/services", {}, {}),
            ("/healthz", {}, {}),
            ("/", {}, {}),
        ],
    )
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "credentials required" in missing.json()["errors"][0]["msg"]
    assert v3_missing.status_code == 401 and v3_missing.json()["error"]["httpCode"] == 401
    assert health.status_code == 200 and page.status_code == 200  # the page itself is public
    wrong, basic = call(
        secured,
        [
            ("/api/services", {}, {"Authorization": "Bearer nope"}),
            ("/api/services", {}, {"Authorization": "Basic YTpi"}),
        ],
    )
    # A wrong token never falls back to the anonymous roles.
    assert wrong.status_code == 401 and "not valid" in wrong.json()["errors"][0]["msg"]
    assert basic.status_code == 401 and "Bearer" in basic.json()["errors"][0]["msg"]


def test_hashed_tokens(secured: Settings, tmp_path: Path):
    import hashlib

    digest = hashlib.sha256(b"s3cret").hexdigest()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"sha256:{digest} hashed-user sre\n")
    hashed = secured.model_copy(update={"query_tokens_file": tokens})
    reply = get(hashed, "/api/services", {"Authorization": "Bearer s3cret"})
    assert reply.json()["data"] == ALL_SERVICES


def test_proxy_headers_only_from_trusted_addresses(secured: Settings, rbac_files: dict[str, Path]):
    alice = {"X-Forwarded-User": "alice"}
    bob = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": "dev, platform"}
    as_alice, as_bob = call(
        secured, [("/api/services", {}, alice), ("/api/services", {}, bob)], client=PROXY
    )
    assert as_alice.json()["data"] == ["cart", "frontend"]
    assert as_bob.json()["data"] == ALL_SERVICES
    closed = secured.model_copy(update={"query_roles": rbac_files["closed"]})
    [spoofed] = call(closed, [("/api/services", {}, bob)], client="10.0.0.8")
    assert spoofed.status_code == 401
    # With anonymous roles, an untrusted header earns only those (sdk: sampling alone).
    [anonymous] = call(secured, [("/api/traces", {"service": "frontend"}, bob)], client="10.0.0.8")
    assert anonymous.status_code == 403
    metrics = call(secured, [("/metrics", {}, {})])[0].text
    assert 'spansieve_query_auth_failures_total{reason="untrusted_proxy"}' in metrics


def test_audit_log_line_per_request(secured: Settings):
    with structlog.testing.capture_logs() as logs:
        call(
            secured,
            [
                ("/api/traces", {"service": "frontend", "limit": "1"}, FRONT),
                ("/api/traces", {"service": "payment"}, FRONT),
                ("/api/services", {}, {"Authorization": "Bearer nope"}),
            ],
        )
    audit = [entry for entry in logs if entry["event"] == "query request"]
    assert [(a["principal"], a["action"], a["services"], a["status"]) for a in audit] == [
        ("front-dev", "search", ["frontend"], 200),
        ("front-dev", "search", ["payment"], 403),
        (None, "list", [], 401),
    ]
    assert audit[0]["roles"] == ["frontend-team"] and audit[0]["path"] == "/api/traces"


def test_rbac_off_changes_nothing(store: Settings):
    reply = get(store, "/api/services", {})
    assert reply.json()["data"] == ALL_SERVICES


# --- TLS and the process --------------------------------------------------------------------


def test_tls_and_rbac_in_a_real_process(secured: Settings, pki: dict[str, Path]):
    settings = secured.model_copy(
        update={
            "query_port": free_port(),
            "query_tls_cert": pki["cert"],
            "query_tls_key": pki["key"],
        }
    )
    with running_query(settings, verify=trusting(pki)) as api:
        assert str(api.base_url).startswith("https://")
        assert api.get("/api/services", headers=SRE).json()["data"] == ALL_SERVICES
        assert api.get("/api/traces", params={"service": "payment"}).status_code == 403
        with pytest.raises(httpx.HTTPError):  # no plaintext on the TLS port
            httpx.get(f"http://127.0.0.1:{settings.query_port}/healthz", timeout=5)
