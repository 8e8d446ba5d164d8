"""``where`` against the shared OpenSearch: each operator, OR groups, negation and the
trace-level keys find exactly the traces they should, through a real `spansieve query`.

The store is ``test_query``'s private one (its five traces) plus three traces of this
module's, so every expectation is checked against all eight.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opensearchpy import OpenSearch
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.config.settings import Settings
from pipeline.sink.bulk import Doc, bulk_body
from pipeline.sink.documents import encoded_documents
from pipeline.store.indices import store_names
from tests.integration.conftest import running_query
from tests.integration.test_query import TRACES, data, errors, private_store
from tests.integration.trace_builder import TraceBuilder

pytestmark = pytest.mark.integration


def build_more() -> dict[str, TraceBuilder]:
    """Traces after ``TRACES`` (which end by 6 s): an API call that failed on redis, one
    that worked on mysql, a 3 s import of 12 spans."""
    api_error = TraceBuilder(6_000)
    api_error.span(
        "frontend",
        "GET /api/orders",
        ms=250,
        error=True,
        attributes={"http.route": "/api/orders", "http.response.status_code": 503},
        resource={"service.version": "1.3"},
    )
    api_error.span(
        "orders",
        "HGET",
        "GET /api/orders",
        Span.SPAN_KIND_CLIENT,
        at=5,
        ms=200,
        error=True,
        attributes={"db.system": "redis"},
    )
    api_ok = TraceBuilder(7_000)
    api_ok.span(
        "frontend",
        "GET /api/users",
        ms=80,
        attributes={"http.route": "/api/users", "http.response.status_code": 200},
        resource={"service.version": "1.2"},
    )
    api_ok.span(
        "users",
        "SELECT users",
        "GET /api/users",
        Span.SPAN_KIND_CLIENT,
        at=2,
        ms=30,
        attributes={"db.system": "mysql"},
    )
    big = TraceBuilder(8_000)
    big.span("importer", "import", kind=Span.SPAN_KIND_INTERNAL, ms=3_000)
    for chunk in range(11):
        big.span(
            "importer",
            "chunk",
            "import",
            Span.SPAN_KIND_INTERNAL,
            key=f"chunk-{chunk}",
            at=chunk * 200,
            ms=150,
            attributes={"chunk": chunk},
        )
    return {"api_error": api_error, "api_ok": api_ok, "big": big}


MORE = build_more()
ALL = {**TRACES, **MORE}
NAMES = {trace.hex: name for name, trace in ALL.items()}
# Most recent first, as searches answer.
NEWEST_FIRST = [
    "big",
    "api_ok",
    "api_error",
    "nightly",
    "search",
    "checkout",
    "cart_slow",
    "cart_fast",
]


@pytest.fixture(scope="module")
def api(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[httpx.Client]:
    """`spansieve query` over a private store of ``TRACES`` and ``MORE``."""
    state = tmp_path_factory.mktemp("conditions")
    with private_store(stack, opensearch, state) as settings:
        docs = [
            Doc(*encoded) for trace in MORE.values() for encoded in encoded_documents(trace.data)
        ]
        alias = store_names(settings).span_alias
        answer = opensearch.bulk(body=bulk_body(docs), index=alias, refresh="true")
        assert not answer["errors"], answer
        with running_query(settings) as client:
            yield client


def where(api: httpx.Client, *expressions: str, **params: Any) -> list[str]:
    """Names of the traces ``/api/traces`` finds for these ``where`` values, in order."""
    traces = data(api.get("/api/traces", params={"where": list(expressions), **params}))
    for trace in traces:
        assert len(trace["spans"]) == ALL[NAMES[trace["traceID"]]].count()
    return [NAMES[trace["traceID"]] for trace in traces]


def but(*names: str) -> list[str]:
    return [name for name in NEWEST_FIRST if name not in names]


def test_equality_regex_and_their_negations(api: httpx.Client):
    assert where(api, "db.system=redis") == ["api_error"]
    assert where(api, 'http.route=~"/api/.*"') == ["api_ok", "api_error"]
    assert where(api, "http.route=~/api") == []  # the regex must match the whole value
    assert where(api, "name=~GET.*") == ["api_ok", "api_error", "search", "cart_slow", "cart_fast"]
    assert where(api, "span.name=charge") == ["checkout"]
    # Resource attributes too, as text or as the number.
    assert where(api, "service.version=1.2") == ["api_ok"]
    assert where(api, 'service.version=~"1\\.[0-9]"') == ["api_ok", "api_error"]
    assert where(api, "deployment.environment=prod") == ["checkout"]
    # Negations: spans without the attribute match them too.
    frontend = {"service": "frontend"}
    assert where(api, 'http.route!~"/api/.*"', **frontend) == but(
        "big", "api_ok", "api_error", "nightly"
    )
    assert where(api, "http.response.status_code!=200", **frontend) == [
        "api_error",
        "search",
        "checkout",
    ]
    assert where(api, "db.system!=redis", service="orders") == []


def test_numeric_comparisons(api: httpx.Client):
    status = "http.response.status_code"
    assert where(api, f"{status}>=500") == ["api_error"]
    assert where(api, f"{status}>200") == ["api_error", "search"]
    assert where(api, f"{status}<=200") == ["api_ok", "cart_slow", "cart_fast"]
    assert where(api, f"{status}<200") == []
    assert where(api, f"{status}=201.0") == ["search"]
    assert where(api, f"{status}>200 {status}<300") == ["search"]
    assert where(api, "chunk>=9.5") == ["big"]
    assert where(api, "chunk>10") == []


def test_span_fields_and_derived_tags(api: httpx.Client):
    assert where(api, "duration>1s") == ["big", "nightly"]
    assert where(api, "duration>=150ms duration<200ms") == ["big"]  # the chunks
    assert where(api, "span.kind=client") == ["api_ok", "api_error", "cart_slow", "cart_fast"]
    assert where(api, "error=true") == ["api_error", "checkout"]
    assert where(api, "otel.status_code=ERROR", service="payment") == ["checkout"]
    assert where(api, 'otel.status_description=~"card.*"') == ["api_error", "checkout"]


def test_one_span_must_hold_every_span_level_condition(api: httpx.Client):
    assert where(api, "db.system=redis", service="orders") == ["api_error"]
    assert where(api, "db.system=redis", service="frontend") == []
    assert where(api, "db.system=redis http.route=/api/orders") == []
    assert where(api, "duration>100ms", tag="db.system:redis") == ["api_error"]
    assert where(api, "duration>200ms", tag="db.system:redis") == []
    assert where(api, "db.system=redis", "duration>=200ms") == ["api_error"]  # repeated where


def test_or_groups(api: httpx.Client):
    assert where(api, "(db.system=redis OR db.system=mysql)") == ["api_ok", "api_error"]
    assert where(api, "(db.system=postgresql OR region=eu)") == [
        "nightly",
        "cart_slow",
        "cart_fast",
    ]
    assert where(api, "(trace.error=true OR name=step)") == ["api_error", "nightly", "checkout"]
    assert where(api, "(http.route=~/api/.* OR http.response.status_code>=201) error!=true") == [
        "api_ok",
        "search",
    ]


def test_trace_level_conditions(api: httpx.Client):
    assert where(api, "trace.duration>2s") == ["big"]
    assert where(api, "trace.duration>=2s") == ["big", "nightly"]
    assert where(api, "trace.duration>200ms", service="cart") == ["cart_slow"]
    assert where(api, "trace.spans>=10") == ["big"]
    assert where(api, "trace.spans=2") == ["api_ok", "api_error", "nightly", "search", "checkout"]
    assert where(api, "trace.error=true") == ["api_error", "checkout"]
    assert where(api, "trace.error!=true") == but("api_error", "checkout")
    assert where(api, "trace.error=false", service="frontend") == [
        "api_ok",
        "search",
        "cart_slow",
        "cart_fast",
    ]
    assert where(api, "trace.services=payment") == ["checkout"]
    assert where(api, "trace.services!=frontend") == ["big", "nightly"]
    assert where(api, "trace.services=~or.*") == ["api_error"]
    assert where(api, 'trace.root.name=~"GET /api/.*"') == ["api_ok", "api_error"]
    assert where(api, "trace.root.name!=import trace.root.duration>=2s") == ["nightly"]
    assert where(api, "trace.root.duration<100ms") == ["api_ok", "cart_fast"]
    assert where(api, "trace.root.status_code=ERROR") == ["api_error"]
    assert where(api, "trace.root.status_code=unset") == but("api_error")


def test_v3_search_reads_query_where(api: httpx.Client):
    reply = api.get("/api/v3/traces", params={"query.where": "trace.error=true"})
    assert reply.status_code == 200, reply.text
    found = {
        span["traceId"]
        for resource in reply.json()["result"]["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    }
    assert found == {MORE["api_error"].hex, TRACES["checkout"].hex}
    bad = api.get("/api/v3/trace-summaries", params={"query.where": "trace.x=1"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith(
        'query.where: at 1: unknown trace key "trace.x"'
    )


def test_mistakes_are_bad_requests(api: httpx.Client):
    [problem] = errors(api.get("/api/traces", params={"where": '(http.route "/x")'}), 400)
    assert problem["msg"] == (
        'where: at 13: expected an operator (=, !=, =~, !~, >, >=, <, <=) after "http.route"'
    )
    [problem] = errors(api.get("/api/traces", params={"where": "duration>fast"}), 400)
    assert problem["msg"].startswith("where: at 10: expected a duration")
    # OpenSearch judges its regex syntax; what it cannot read is the client's mistake too.
    [problem] = errors(api.get("/api/traces", params={"where": 'http.route=~"(x"'}), 400)
    assert problem["msg"].startswith('where: OpenSearch cannot read the regex of http.route=~"(x"')
    v3 = api.get("/api/v3/traces", params={"query.where": "name=~a{2,1}"})
    assert v3.status_code == 400
    assert "invalid repetition range" in v3.json()["error"]["message"]
