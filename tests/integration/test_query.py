"""`spansieve query` against the shared OpenSearch: every endpoint, on a private alias.

Five traces are indexed directly (the sink's own encoder and ``_bulk`` body, no Kafka)
behind a private ``qtest-<random>-`` prefix; a real `spansieve query` process serves
them. The capped-dependencies and OpenSearch-down cases run the app in-process.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from opensearchpy import AsyncOpenSearch, OpenSearch
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.bench.metrics_scrape import scrape
from pipeline.cli import main
from pipeline.config.settings import Settings
from pipeline.local.run import free_port
from pipeline.query.app import query_app
from pipeline.sink.bulk import Doc, bulk_body
from pipeline.sink.documents import encoded_documents
from pipeline.store.indices import store_names
from pipeline.store.setup import ensure_store
from tests.asgi import Request, get_all_async
from tests.integration.conftest import running_query
from tests.integration.trace_builder import MS, T0, TraceBuilder

pytestmark = pytest.mark.integration


def cart_trace(start_ms: int, ms: int) -> TraceBuilder:
    trace = TraceBuilder(start_ms)
    trace.span("frontend", "GET /cart", ms=ms, attributes={"http.response.status_code": 200})
    trace.span("cart", "cart.get", "GET /cart", at=1, ms=ms - 2)
    trace.span(
        "cart",
        "SELECT cart",
        "cart.get",
        Span.SPAN_KIND_CLIENT,
        at=2,
        ms=1,
        attributes={"db.system": "postgresql"},
    )
    return trace


def build_traces() -> dict[str, TraceBuilder]:
    cart_fast, cart_slow = cart_trace(0, 50), cart_trace(1_000, 300)
    checkout = TraceBuilder(2_000)
    checkout.span("frontend", "POST /checkout", ms=400)
    checkout.span(
        "payment",
        "charge",
        "POST /checkout",
        at=5,
        ms=390,
        error=True,
        resource={"deployment.environment": "prod"},
    )
    search = TraceBuilder(3_000)
    search.span("frontend", "GET /search", ms=120, attributes={"http.response.status_code": 201})
    query = search.span("search", "query", "GET /search", at=10, ms=100)
    query.events.add(name="cache miss", time_unix_nano=search.start + 20 * MS)
    query.links.add(trace_id=cart_fast.trace_id, span_id=cart_fast.ids["GET /cart"])
    # A 64-bit style id (upper half zero): Jaeger clients may ask for it by 16 digits.
    nightly = TraceBuilder(4_000, bytes(8) + os.urandom(8))
    resource = {"region": "eu"}
    nightly.span("batch", "nightly", kind=Span.SPAN_KIND_INTERNAL, ms=2_000, resource=resource)
    nightly.span("batch", "step", "nightly", Span.SPAN_KIND_INTERNAL, at=1, ms=1_000)
    return {
        "cart_fast": cart_fast,
        "cart_slow": cart_slow,
        "checkout": checkout,
        "search": search,
        "nightly": nightly,
    }


TRACES = build_traces()


def index_traces(client: OpenSearch, alias: str) -> None:
    docs = [
        Doc(doc_id, routing, source)
        for trace in TRACES.values()
        for doc_id, routing, source in encoded_documents(trace.data)
    ]
    answer = client.bulk(body=bulk_body(docs), index=alias, refresh="true", require_alias=True)
    assert not answer["errors"], answer


def drop_store(client: OpenSearch, settings: Settings) -> None:
    prefix = settings.store_index_prefix
    assert prefix.startswith("qtest-"), "never drop the shared store"
    client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
    client.indices.delete_index_template(name=f"{prefix}*", ignore=404)


@contextmanager
def private_store(stack: Settings, opensearch: OpenSearch, state_dir: Path) -> Iterator[Settings]:
    """A store of its own (``qtest-<random>-``) holding ``TRACES``, dropped afterwards."""
    settings = stack.model_copy(
        update={
            "store_index_prefix": f"qtest-{uuid.uuid4().hex[:8]}-",
            "state_dir": state_dir,
            "query_port": free_port(),
        }
    )
    try:
        ensure_store(opensearch, settings)
        index_traces(opensearch, store_names(settings).span_alias)
        yield settings
    finally:
        drop_store(opensearch, settings)


@pytest.fixture(scope="module")
def store(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    with private_store(stack, opensearch, tmp_path_factory.mktemp("query")) as settings:
        yield settings


@pytest.fixture(scope="module")
def api(store: Settings) -> Iterator[httpx.Client]:
    """A `spansieve query` process over the private store."""
    with running_query(store) as client:
        yield client


def data(reply: httpx.Response, status: int = 200) -> Any:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"data", "total", "limit", "offset", "errors"}
    if status == 200:
        assert body["errors"] is None
    return body["data"]


def errors(reply: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["data"] is None
    return body["errors"]


def found(api: httpx.Client, **params: Any) -> list[str]:
    """Names (keys of TRACES) of the traces a search returns, in order; checks that each
    comes with all its spans."""
    by_id = {trace.hex: name for name, trace in TRACES.items()}
    traces = data(api.get("/api/traces", params=params))
    for trace in traces:
        assert len(trace["spans"]) == TRACES[by_id[trace["traceID"]]].count()
    return [by_id[trace["traceID"]] for trace in traces]


# --- services and operations -------------------------------------------------------------


def test_services(api: httpx.Client):
    services = ["batch", "cart", "frontend", "payment", "search"]
    assert data(api.get("/api/services")) == services
    assert api.get("/api/v3/services").json() == {"services": services}


def test_operations(api: httpx.Client):
    assert data(api.get("/api/services/cart/operations")) == ["SELECT cart", "cart.get"]
    assert data(api.get("/api/services/nobody/operations")) == []
    assert data(api.get("/api/operations", params={"service": "cart"})) == [
        {"name": "SELECT cart", "spanKind": "client"},
        {"name": "cart.get", "spanKind": "server"},
    ]
    client_ops = api.get("/api/operations", params={"service": "cart", "spanKind": "client"})
    assert data(client_ops) == [{"name": "SELECT cart", "spanKind": "client"}]
    v3 = api.get("/api/v3/operations", params={"service": "batch", "spanKind": ""})
    assert v3.json() == {
        "operations": [
            {"name": "nightly", "spanKind": "internal"},
            {"name": "step", "spanKind": "internal"},
        ]
    }


def test_operations_bad_parameters(api: httpx.Client):
    [problem] = errors(api.get("/api/operations"), 400)
    assert problem == {"code": 400, "msg": "service: is required"}
    reply = api.get("/api/operations", params={"service": "cart", "spanKind": "sideways"})
    assert "spanKind: unknown span kind 'sideways'" in errors(reply, 400)[0]["msg"]
    v3 = api.get("/api/v3/operations")
    assert v3.status_code == 400
    assert v3.json() == {"error": {"httpCode": 400, "message": "service: is required"}}


# --- trace search ------------------------------------------------------------------------


def test_search_most_recent_first_with_limit(api: httpx.Client):
    assert found(api, service="frontend") == ["search", "checkout", "cart_slow", "cart_fast"]
    assert found(api, service="frontend", limit=2) == ["search", "checkout"]
    assert found(api) == ["nightly", "search", "checkout", "cart_slow", "cart_fast"]
    assert found(api, service="cart", operation="cart.get") == ["cart_slow", "cart_fast"]


def test_durations_bound_the_whole_trace_or_the_operations_span(api: httpx.Client):
    # The SELECT span takes 1 ms; its trace 300 ms. With an operation, durations bound
    # that operation's span, as in Jaeger: nothing here; durationScope=trace asks for the
    # trace's duration instead.
    slow = {"service": "cart", "operation": "SELECT cart", "minDuration": "200ms"}
    assert found(api, **slow) == []
    assert found(api, **slow, durationScope="trace") == ["cart_slow"]
    assert found(api, service="cart", operation="SELECT cart", maxDuration="1ms") == [
        "cart_slow",
        "cart_fast",
    ]
    # cart.get lasts 298 ms in cart_slow, 48 ms in cart_fast
    assert found(api, service="cart", operation="cart.get", minDuration="100ms") == ["cart_slow"]
    # Without an operation, the whole trace's duration
    assert found(api, service="cart", minDuration="200ms") == ["cart_slow"]
    assert found(api, service="frontend", maxDuration="100ms") == ["cart_fast"]
    assert found(api, minDuration="0.1s", maxDuration="1.5s") == ["search", "checkout", "cart_slow"]
    assert found(api, minDuration="1.5s") == ["nightly"]


def test_tags_match_span_or_resource_attributes(api: httpx.Client):
    assert found(api, tag="db.system:postgresql") == ["cart_slow", "cart_fast"]
    assert found(api, tags='{"deployment.environment":"prod"}') == ["checkout"]  # resource
    assert found(api, tag="region:eu") == ["nightly"]
    assert found(api, tags='{"http.response.status_code":201}') == ["search"]  # int attribute
    both = {"tag": ["db.system:postgresql", "span.kind:client"], "service": "cart"}
    assert found(api, **both) == ["cart_slow", "cart_fast"]
    # Service, operation and tags must hold on one span, as in Jaeger.
    assert found(api, service="frontend", tag="db.system:postgresql") == []
    assert found(api, tag=["db.system:postgresql", "span.kind:server"]) == []


def test_error_tag(api: httpx.Client):
    assert found(api, tags='{"error":"true"}') == ["checkout"]
    assert found(api, tag="otel.status_code:ERROR", service="payment") == ["checkout"]
    assert found(api, tag="error:false", service="payment") == []


def test_time_window(api: httpx.Client):
    start = (T0 + 1_500 * MS) // 1_000
    end = (T0 + 2_500 * MS) // 1_000
    assert found(api, start=start, end=end) == ["checkout"]


def test_search_bad_parameters(api: httpx.Client):
    cases = {
        "minDuration": ({"minDuration": "1.2"}, "minDuration: invalid duration '1.2'"),
        "maxDuration": ({"maxDuration": "fast"}, "maxDuration: invalid duration 'fast'"),
        "tags": ({"tags": "[1]"}, "tags: must be a JSON object"),
        "tags json": ({"tags": "{oops"}, "tags: not valid JSON"),
        "tag": ({"tag": "nocolon"}, "tag: 'nocolon' is not of the form key:value"),
        "limit": ({"limit": "ten"}, "limit: 'ten' is not an integer"),
        "window": ({"start": "20", "end": "10"}, "start: start is after end"),
    }
    for name, (params, message) in cases.items():
        [problem] = errors(api.get("/api/traces", params=params), 400)
        assert problem["code"] == 400, name
        assert problem["msg"].startswith(message), (name, problem)


# --- traces by id ------------------------------------------------------------------------


def test_trace_by_id_in_jaeger_shape(api: httpx.Client):
    search = TRACES["search"]
    [trace] = data(api.get(f"/api/traces/{search.hex.upper()}"))
    assert trace["traceID"] == search.hex and trace["warnings"] is None
    spans = {span["operationName"]: span for span in trace["spans"]}
    query = spans["query"]
    assert query["references"] == [
        {"refType": "CHILD_OF", "traceID": search.hex, "spanID": search.ids["GET /search"].hex()},
        {
            "refType": "FOLLOWS_FROM",
            "traceID": TRACES["cart_fast"].hex,
            "spanID": TRACES["cart_fast"].ids["GET /cart"].hex(),
        },
    ]
    assert query["startTime"] == (search.start + 10 * MS) // 1_000
    assert query["duration"] == 100_000
    assert query["logs"] == [
        {
            "timestamp": (search.start + 20 * MS) // 1_000,
            "fields": [{"key": "event", "type": "string", "value": "cache miss"}],
        }
    ]
    root_tags = {t["key"]: t for t in spans["GET /search"]["tags"]}
    assert root_tags["http.response.status_code"] == {
        "key": "http.response.status_code",
        "type": "int64",
        "value": 201,
    }
    assert root_tags["span.kind"]["value"] == "server"
    assert trace["processes"] == {
        "p1": {"serviceName": "frontend", "tags": []},
        "p2": {"serviceName": "search", "tags": []},
    }
    assert [spans[name]["processID"] for name in ("GET /search", "query")] == ["p1", "p2"]


def test_error_span_tags(api: httpx.Client):
    [trace] = data(api.get(f"/api/traces/{TRACES['checkout'].hex}"))
    charge = next(span for span in trace["spans"] if span["operationName"] == "charge")
    tags = {t["key"]: t["value"] for t in charge["tags"]}
    assert tags["error"] is True
    assert tags["otel.status_code"] == "ERROR"
    assert tags["otel.status_description"] == "card declined"
    process = trace["processes"][charge["processID"]]
    assert process == {
        "serviceName": "payment",
        "tags": [{"key": "deployment.environment", "type": "string", "value": "prod"}],
    }


def test_short_and_missing_trace_ids(api: httpx.Client):
    nightly = TRACES["nightly"]
    [trace] = data(api.get(f"/api/traces/{nightly.hex[16:]}"))  # 64-bit form
    assert trace["traceID"] == nightly.hex and len(trace["spans"]) == 2
    missing = "f" * 32
    [problem] = errors(api.get(f"/api/traces/{missing}"), 404)
    assert problem == {"code": 404, "msg": "trace not found", "traceID": missing}
    [problem] = errors(api.get("/api/traces/not a trace!"), 400)
    assert problem["msg"].startswith("traceID: 'not a trace!' is not a hexadecimal trace id")


def test_trace_ids_as_search_parameters(api: httpx.Client):
    ids = [TRACES["cart_fast"].hex, "e" * 32, TRACES["nightly"].hex]
    reply = api.get("/api/traces", params={"traceID": ids, "service": "ignored"})
    body = reply.json()
    assert [t["traceID"] for t in body["data"]] == [ids[0], ids[2]]
    assert body["errors"] == [{"code": 404, "msg": "trace not found", "traceID": "e" * 32}]


# --- dependencies ------------------------------------------------------------------------


def dependency_window() -> dict[str, int]:
    return {"endTs": (T0 + 10_000 * MS) // MS, "lookback": 60_000}


def test_dependencies(api: httpx.Client):
    assert data(api.get("/api/dependencies", params=dependency_window())) == [
        {"parent": "cart", "child": "cart", "callCount": 2},  # cart.get -> SELECT cart
        {"parent": "frontend", "child": "cart", "callCount": 2},
        {"parent": "batch", "child": "batch", "callCount": 1},  # nightly -> step
        {"parent": "frontend", "child": "payment", "callCount": 1},
        {"parent": "frontend", "child": "search", "callCount": 1},
    ]
    before = {"endTs": (T0 - 60_000 * MS) // MS, "lookback": 1_000}
    assert data(api.get("/api/dependencies", params=before)) == []
    [problem] = errors(api.get("/api/dependencies", params={"lookback": "1h"}), 400)
    assert problem["msg"] == "lookback: '1h' is not an integer"


def in_process(
    settings: Settings, *requests: Request, client: tuple[str, int] = ("127.0.0.1", 40000)
) -> list[httpx.Response]:
    """GET each request from the app run in this process, over a fresh OpenSearch client,
    seen as coming from ``client``."""

    async def go() -> list[httpx.Response]:
        opensearch = AsyncOpenSearch(hosts=[settings.opensearch_url], timeout=10, max_retries=0)
        app = query_app(settings, opensearch)
        try:
            return await get_all_async(app, requests, client=client)
        finally:
            await opensearch.close()
            await app.state.rates.close()

    return asyncio.run(go())


def test_dependencies_cap_is_reported(store: Settings):
    capped = store.model_copy(update={"query_dependencies_max_spans": 4})
    window = dependency_window()
    path = f"/api/dependencies?endTs={window['endTs']}&lookback={window['lookback']}"
    [reply] = in_process(capped, path)
    body = reply.json()
    assert reply.status_code == 200
    assert body["errors"] is None  # Grafana would show an error instead of the graph
    [note] = body["warnings"]
    assert "query_dependencies_max_spans=4" in note
    assert reply.headers["X-Spansieve-Partial"] == note
    # Whole traces only, so every link counted is a real one and the counts are partial.
    total = {(d["parent"], d["child"]): d["callCount"] for d in body["data"]}
    assert sum(total.values()) <= 2
    calls = {
        ("frontend", "cart"),
        ("frontend", "payment"),
        ("frontend", "search"),
        ("cart", "cart"),
        ("batch", "batch"),
    }
    assert set(total) <= calls


# --- operations: health, metrics, OpenSearch down, CLI ----------------------------------


def test_health_and_metrics(api: httpx.Client):
    assert api.get("/healthz").text == "ok"
    api.get("/api/traces", params={"limit": "x"})
    metrics = scrape(str(api.base_url.join("/metrics")))
    assert metrics['spansieve_query_requests_total{endpoint="/api/traces",status="400"}'] >= 1
    assert metrics['spansieve_query_requests_total{endpoint="/api/services",status="200"}'] >= 1
    assert metrics['spansieve_query_request_seconds_count{endpoint="/api/traces/{trace_id}"}'] >= 1


def test_opensearch_down(store: Settings):
    dead = store.model_copy(update={"opensearch_url": f"http://127.0.0.1:{free_port()}"})
    health, services, metrics = in_process(dead, "/healthz", "/api/services", "/metrics")
    assert health.status_code == 503
    [problem] = errors(services, 503)
    assert problem["msg"].startswith("OpenSearch unreachable")
    assert 'spansieve_query_opensearch_errors_total{error="connection"}' in metrics.text


def test_missing_alias_is_empty_not_an_error(store: Settings):
    empty = store.model_copy(update={"store_index_prefix": f"qtest-{uuid.uuid4().hex[:8]}-"})
    services, traces = in_process(empty, "/api/services", "/api/traces?service=x")
    assert orjson.loads(services.content)["data"] == []
    assert orjson.loads(traces.content)["data"] == []


def test_cli_flags():
    result = CliRunner().invoke(main, ["query", "--help"])
    assert result.exit_code == 0
    for flag in ("--query-port", "--query-host", "--query-max-traces", "--store-index-prefix"):
        assert flag in result.output
    assert "SPANSIEVE_QUERY_DEPENDENCIES_MAX_SPANS" in result.output


# --- clock skew -----------------------------------------------------------------------------


def test_clock_skew_is_corrected_unless_raw(stack: Settings, opensearch: OpenSearch):
    """A server span on another host whose clock runs 50 ms behind: shown inside its
    caller, with a warning, unless ``raw=true``; beyond the maximum it is left alone."""
    settings = stack.model_copy(update={"store_index_prefix": f"qtest-{uuid.uuid4().hex[:8]}-"})
    trace = TraceBuilder(5_000)
    trace.span("web", "GET /", kind=Span.SPAN_KIND_CLIENT, ms=100, resource={"host.name": "web-1"})
    trace.span("api", "handle", "GET /", at=-45, ms=20, resource={"host.name": "api-7"})
    path = f"/api/traces/{trace.hex}"
    try:
        ensure_store(opensearch, settings)
        docs = [Doc(*encoded) for encoded in encoded_documents(trace.data)]
        answer = opensearch.bulk(
            body=bulk_body(docs), index=store_names(settings).span_alias, refresh="true"
        )
        assert not answer["errors"], answer
        adjusted, raw = in_process(settings, path, path + "?raw=true")
        tight = settings.model_copy(update={"query_max_clock_skew": 0.01})
        [capped] = in_process(tight, path)
    finally:
        drop_store(opensearch, settings)

    def spans(reply: httpx.Response) -> dict[str, dict[str, Any]]:
        [found] = data(reply)
        return {span["operationName"]: span for span in found["spans"]}

    web, api = spans(adjusted)["GET /"], spans(adjusted)["handle"]
    assert web["startTime"] <= api["startTime"]
    assert api["startTime"] + api["duration"] <= web["startTime"] + web["duration"]
    assert api["startTime"] - web["startTime"] == 40_000  # centred: (100 - 20) / 2 ms
    assert "shifted by 85000" in api["warnings"][0]
    raw_api = spans(raw)["handle"]
    assert raw_api["startTime"] == web["startTime"] - 45_000 and raw_api["warnings"] is None
    capped_api = spans(capped)["handle"]
    assert capped_api["startTime"] == raw_api["startTime"]
    assert "exceeds the maximum adjustment" in capped_api["warnings"][0]
