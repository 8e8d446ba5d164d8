"""`spansieve query`'s Jaeger API v3 against the shared OpenSearch, asked the way its
clients ask.

The requests are rebuilt from the clients' own code:

* the Jaeger UI 2.x search page: ``packages/jaeger-ui/src/api/v3/client.ts``,
  ``JaegerClient.fetchTraceSummaries`` (jaegertracing/jaeger-ui), whose answer it checks
  with the zod schemas of ``src/api/v3/schemas.ts``;
* Grafana's Jaeger data source with ``jaegerEnableGrpcEndpoint``:
  ``pkg/jaeger/grpc_client.go``, ``JaegerClient.GrpcTrace`` and ``GrpcSearch``
  (grafana/grafana-jaeger-datasource), which append their times to the URL unencoded and
  decode the answer into the structs of ``pkg/jaeger/types/grpc_types.go``;
* Jaeger's own gateway tests for the camelCase names:
  ``cmd/jaeger/internal/extension/jaegerquery/internal/apiv3/http_gateway_test.go``.

The five traces of ``test_query.py`` are indexed behind a private ``qtest-<random>-``
prefix and served by a real `spansieve query` process; the OpenSearch-down and missing-alias
cases run the app in-process.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import httpx
import pytest
from opensearchpy import OpenSearch

from pipeline.bench.metrics_scrape import scrape
from pipeline.config.settings import Settings
from pipeline.local.run import free_port
from tests.integration.conftest import running_query
from tests.integration.test_query import TRACES, in_process, private_store
from tests.integration.trace_builder import MS, T0

pytestmark = pytest.mark.integration

HEX_TRACE_ID = re.compile(r"[0-9a-f]{32}", re.IGNORECASE)  # schemas.ts traceIdHex
DECIMAL = re.compile(r"\d+")  # schemas.ts: "Expected decimal int64 string"
SPAN_KINDS = {"server": 2, "client": 3, "internal": 1}
BY_ID = {trace.hex: name for name, trace in TRACES.items()}


@pytest.fixture(scope="module")
def store(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    with private_store(stack, opensearch, tmp_path_factory.mktemp("query-v3")) as settings:
        yield settings


@pytest.fixture(scope="module")
def api(store: Settings) -> Iterator[httpx.Client]:
    """A `spansieve query` process over the private store."""
    with running_query(store) as client:
        yield client


def v3_error(reply: httpx.Response, status: int) -> str:
    """The message of an API v3 error, checked to be in the gateway's shape."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"httpCode", "message"}
    assert body["error"]["httpCode"] == status
    return body["error"]["message"]


# --- Grafana: GrpcTrace and GrpcSearch ------------------------------------------------------


def go_rfc3339nano(nanos: int, offset: timedelta = timedelta(0)) -> str:
    """Go's ``time.Format(time.RFC3339Nano)``: trailing zeros of the fraction dropped, "Z"
    for UTC, else the offset (Grafana formats the query's time range as it has it)."""
    local = datetime.fromtimestamp(nanos // 10**9, timezone(offset))
    fraction = str(nanos % 10**9).rjust(9, "0").rstrip("0")
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "")
    if not offset:
        return stamp + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{stamp}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def grafana_trace(api: httpx.Client, trace_id: str, start: int = 0, end: int = 0) -> Any:
    """``GrpcTrace``: the id path-escaped; with the data source's "trace ID time
    parameters" on, ``start_time``/``end_time`` appended to the raw query, unencoded."""
    url = f"/api/v3/traces/{quote_plus(trace_id)}"
    if start or end:
        offset = timedelta(hours=2)  # a Grafana server in UTC+2: "+02:00" travels as is
        url += f"?start_time={go_rfc3339nano(start, offset)}&end_time={go_rfc3339nano(end, offset)}"
    return api.get(url)


def grafana_search(api: httpx.Client, start: int, end: int, **fields: str) -> Any:
    """``GrpcSearch``: ``url.Values.Encode()`` of the non-empty snake_case parameters (keys
    sorted, ``QueryEscape``d), then the two times appended unencoded."""
    params = {key: value for key, value in sorted(fields.items()) if value}
    query = urlencode(params, quote_via=quote_plus)
    query += f"&query.start_time_min={go_rfc3339nano(start)}"
    query += f"&query.start_time_max={go_rfc3339nano(end)}"
    return api.get(f"/api/v3/traces?{query}")


def result_of(reply: httpx.Response) -> dict[str, Any]:
    """The ``result`` Grafana decodes, checked against its structs: every resource has a
    scope with a span (its search transform reads ``ScopeSpans[0].Spans[0]``), kinds and
    status codes are integers, times decimal strings."""
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"result"}
    result = body["result"]
    for resource in result.get("resourceSpans", []):
        assert resource["scopeSpans"] and resource["scopeSpans"][0]["spans"]
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                assert isinstance(span.get("kind", 0), int)
                assert isinstance(span["status"].get("code", 0), int)
                assert DECIMAL.fullmatch(span["startTimeUnixNano"])
                assert DECIMAL.fullmatch(span["endTimeUnixNano"])
                for event in span.get("events", []):
                    assert DECIMAL.fullmatch(event["timeUnixNano"])
    return result


def service_of(resource: dict[str, Any]) -> str:
    [name] = [
        kv["value"]["stringValue"]
        for kv in resource["resource"]["attributes"]
        if kv["key"] == "service.name"
    ]
    return name


def spans_of(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Span name -> (service, OTLP span)."""
    return {
        span["name"]: (service_of(resource), span)
        for resource in result["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    }


def traces_in(result: dict[str, Any]) -> set[str]:
    """Names (keys of TRACES) of the traces in a search result; each with all its spans."""
    spans: dict[str, int] = {}
    for resource in result.get("resourceSpans", []):
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                spans[span["traceId"]] = spans.get(span["traceId"], 0) + 1
    for trace_id, count in spans.items():
        assert count == TRACES[BY_ID[trace_id]].count()
    return {BY_ID[trace_id] for trace_id in spans}


def test_trace_by_id_as_grafana_reads_it(api: httpx.Client):
    search = TRACES["search"]
    result = result_of(grafana_trace(api, search.hex))
    assert [service_of(resource) for resource in result["resourceSpans"]] == [
        "frontend",
        "search",
    ]
    spans = spans_of(result)
    assert spans["query"] == (
        "search",
        {
            "traceId": search.hex,
            "spanId": search.ids["query"].hex(),
            "parentSpanId": search.ids["GET /search"].hex(),
            "name": "query",
            "kind": SPAN_KINDS["server"],
            "startTimeUnixNano": str(search.start + 10 * MS),
            "endTimeUnixNano": str(search.start + 110 * MS),
            "events": [{"timeUnixNano": str(search.start + 20 * MS), "name": "cache miss"}],
            "links": [
                {
                    "traceId": TRACES["cart_fast"].hex,
                    "spanId": TRACES["cart_fast"].ids["GET /cart"].hex(),
                }
            ],
            "status": {},
        },
    )
    _service, root = spans["GET /search"]
    assert "parentSpanId" not in root  # Grafana's parentSpanID == "" for a root
    assert root["attributes"] == [
        {"key": "http.response.status_code", "value": {"intValue": "201"}}
    ]


def test_error_span_and_resource_attributes(api: httpx.Client):
    result = result_of(grafana_trace(api, TRACES["checkout"].hex))
    payment = next(r for r in result["resourceSpans"] if service_of(r) == "payment")
    assert payment["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "payment"}},
        {"key": "deployment.environment", "value": {"stringValue": "prod"}},
    ]
    _service, charge = spans_of(result)["charge"]
    assert charge["status"] == {"message": "card declined", "code": 2}


def test_trace_with_grafanas_time_parameters_and_other_id_forms(api: httpx.Client):
    nightly = TRACES["nightly"]
    start, end = T0 - 60_000 * MS, T0 + 3_600_000 * MS
    result = result_of(grafana_trace(api, nightly.hex, start, end))
    assert traces_in(result) == {"nightly"}
    # Base64 as OTLP's protobuf JSON writes ids; URL-safe, as "/" cannot be in a path.
    base64_id = base64.urlsafe_b64encode(nightly.trace_id).decode()
    for form in (nightly.hex.upper(), nightly.hex[16:], base64_id, base64_id.rstrip("=")):
        assert traces_in(result_of(grafana_trace(api, form))) == {"nightly"}
    raw = api.get(f"/api/v3/traces/{nightly.hex}", params={"rawTraces": "true"})
    assert traces_in(result_of(raw)) == {"nightly"}


def test_trace_not_found_and_bad_ids(api: httpx.Client):
    message = v3_error(grafana_trace(api, "f" * 32), 404)
    assert message.startswith("No traces found")
    message = v3_error(api.get("/api/v3/traces/trace%3F"), 400)
    assert message.startswith("trace_id: 'trace?' is not a trace id")
    message = v3_error(api.get(f"/api/v3/traces/{TRACES['search'].hex}?startTime=today"), 400)
    assert message.startswith("startTime: 'today' is not an RFC 3339 time")


def test_search_as_grafana_sends_it(api: httpx.Client):
    start, end = T0 - 60_000 * MS, T0 + 3_600_000 * MS
    found = grafana_search(
        api, start, end, **{"query.service_name": "cart", "query.operation_name": "cart.get"}
    )
    assert traces_in(result_of(found)) == {"cart_fast", "cart_slow"}
    tagged = grafana_search(api, start, end, **{"query.attributes": '{"db.system":"postgresql"}'})
    assert traces_in(result_of(tagged)) == {"cart_fast", "cart_slow"}
    # With an operation, durations bound its span, as in Jaeger (and /api/traces):
    # SELECT takes 1 ms (its trace 300); cart.get 298 ms in cart_slow, 48 in cart_fast.
    select = {"query.operation_name": "SELECT cart", "query.duration_min": "200ms"}
    assert traces_in(result_of(grafana_search(api, start, end, **select))) == set()
    get = {"query.operation_name": "cart.get", "query.duration_min": "200ms"}
    assert traces_in(result_of(grafana_search(api, start, end, **get))) == {"cart_slow"}
    # Without one, the whole trace's duration.
    whole = {"query.service_name": "cart", "query.duration_min": "200ms"}
    assert traces_in(result_of(grafana_search(api, start, end, **whole))) == {"cart_slow"}
    everything = grafana_search(api, start, end)
    assert traces_in(result_of(everything)) == set(TRACES)


def test_search_finding_nothing_is_an_empty_result(api: httpx.Client):
    start, end = T0 - 60_000 * MS, T0 + 3_600_000 * MS
    nobody = grafana_search(api, start, end, **{"query.service_name": "nobody"})
    assert result_of(nobody) == {}  # Jaeger answers 404, which Grafana shows as a failure
    before = grafana_search(api, T0 - 7_200_000 * MS, T0 - 3_600_000 * MS)
    assert result_of(before) == {}


def test_search_with_jaegers_camel_case_names(api: httpx.Client):
    """The names of Jaeger's gateway tests (``http_gateway_test.go``), URL-encoded."""
    params = {
        "query.serviceName": "frontend",
        "query.startTimeMin": go_rfc3339nano(T0 + 1_500 * MS),
        "query.startTimeMax": go_rfc3339nano(T0 + 2_500 * MS),
        "query.searchDepth": "10",
        "query.rawTraces": "true",
    }
    assert traces_in(result_of(api.get("/api/v3/traces", params=params))) == {"checkout"}


def test_search_errors(api: httpx.Client):
    cases = {
        "query.durationMin": "query.durationMin: invalid duration '1.2'",
        "query.searchDepth": "query.searchDepth: '1.2' is not an integer",
        "query.startTimeMin": "query.startTimeMin: '1.2' is not an RFC 3339 time",
        "query.attributes": "query.attributes: must be a JSON object",
    }
    for name, message in cases.items():
        reply = api.get("/api/v3/traces", params={name: "1.2"})
        assert v3_error(reply, 400).startswith(message)
    window = {"query.startTimeMin": go_rfc3339nano(T0), "query.startTimeMax": go_rfc3339nano(T0)}
    message = v3_error(api.get("/api/v3/traces", params=window), 400)
    assert message == "query.startTimeMin: must be before query.startTimeMax"


# --- the Jaeger UI: fetchTraceSummaries -----------------------------------------------------


def iso_of_micros(micros: int) -> str:
    """``new Date(us / 1000).toISOString()``: UTC, milliseconds, "Z"."""
    stamp = datetime.fromtimestamp(micros // 1_000 / 1_000, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ui_summaries(api: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    """``fetchTraceSummaries(query)``: ``URLSearchParams`` built as the client does (the
    ALL_SERVICES choice leaves the service out, start/end are µs from the UI's URL), the
    answer checked as ``TraceSummariesResponseSchema`` checks it."""
    params: dict[str, str] = {}
    if query.get("service") and query["service"] != "All":
        params["query.serviceName"] = query["service"]
    if query.get("operation"):
        params["query.operationName"] = str(query["operation"])
    start_us = query.get("start", (T0 - 600_000 * MS) // 1_000)
    end_us = query.get("end", (T0 + 3_600_000 * MS) // 1_000)
    params["query.startTimeMin"] = iso_of_micros(start_us)
    params["query.startTimeMax"] = iso_of_micros(end_us)
    if query.get("limit"):
        params["query.searchDepth"] = str(query["limit"])
    if query.get("minDuration"):
        params["query.durationMin"] = query["minDuration"]
    if query.get("maxDuration"):
        params["query.durationMax"] = query["maxDuration"]
    if query.get("tags"):
        params["query.attributes"] = query["tags"]
    reply = api.get(f"/api/v3/trace-summaries?{urlencode(params, quote_via=quote_plus)}")
    assert reply.status_code == 200, reply.text
    summaries = reply.json().get("summaries") or []
    for summary in summaries:
        assert HEX_TRACE_ID.fullmatch(summary["traceId"])
        assert DECIMAL.fullmatch(summary["minStartTimeUnixNano"])
        assert DECIMAL.fullmatch(summary["maxEndTimeUnixNano"])
        for count in ("spanCount", "errorSpanCount", "orphanSpanCount"):
            assert isinstance(summary[count], int) and summary[count] >= 0
        for service in summary["services"]:
            assert isinstance(service["name"], str)
    return summaries


def names(summaries: list[dict[str, Any]]) -> list[str]:
    return [BY_ID[summary["traceId"]] for summary in summaries]


def test_trace_summaries_for_the_search_page(api: httpx.Client):
    summaries = ui_summaries(api, service="frontend", limit=20)
    assert names(summaries) == ["search", "checkout", "cart_slow", "cart_fast"]
    checkout = TRACES["checkout"]
    assert summaries[1] == {
        "traceId": checkout.hex,
        "rootServiceName": "frontend",
        "rootOperationName": "POST /checkout",
        "minStartTimeUnixNano": str(checkout.start),
        "maxEndTimeUnixNano": str(checkout.start + 400 * MS),
        "spanCount": 2,
        "errorSpanCount": 1,
        "orphanSpanCount": 0,
        "services": [
            {"name": "frontend", "spanCount": 1, "errorSpanCount": 0},
            {"name": "payment", "spanCount": 1, "errorSpanCount": 1},
        ],
    }
    # The client's own arithmetic: duration in µs from the two decimal strings.
    cart_slow = summaries[2]
    duration = (
        int(cart_slow["maxEndTimeUnixNano"]) - int(cart_slow["minStartTimeUnixNano"])
    ) // 1_000
    assert duration == 300_000
    assert cart_slow["services"] == [
        {"name": "cart", "spanCount": 2, "errorSpanCount": 0},
        {"name": "frontend", "spanCount": 1, "errorSpanCount": 0},
    ]


def test_trace_summaries_filters(api: httpx.Client):
    assert names(ui_summaries(api, service="All", limit=20)) == [
        "nightly",
        "search",
        "checkout",
        "cart_slow",
        "cart_fast",
    ]
    assert names(ui_summaries(api, service="frontend", limit=2)) == ["search", "checkout"]
    assert names(ui_summaries(api, service="cart", operation="cart.get")) == [
        "cart_slow",
        "cart_fast",
    ]
    # convTagsLogfmt makes every value a string: deployment.environment=prod, region=eu.
    assert names(ui_summaries(api, tags='{"deployment.environment":"prod"}')) == ["checkout"]
    assert names(ui_summaries(api, tags='{"region":"eu"}')) == ["nightly"]
    assert names(ui_summaries(api, tags='{"error":"true"}')) == ["checkout"]
    assert names(ui_summaries(api, minDuration="1.5s")) == ["nightly"]
    assert names(ui_summaries(api, service="frontend", maxDuration="100ms")) == ["cart_fast"]
    start, end = (T0 + 1_500 * MS) // 1_000, (T0 + 2_500 * MS) // 1_000
    assert names(ui_summaries(api, start=start, end=end)) == ["checkout"]
    assert ui_summaries(api, service="nobody") == []


def test_trace_summaries_errors(api: httpx.Client):
    reply = api.get("/api/v3/trace-summaries", params={"query.durationMin": "fast"})
    assert v3_error(reply, 400).startswith("query.durationMin: invalid duration 'fast'")
    reply = api.get("/api/v3/trace-summaries", params={"query.attributes": "[1]"})
    assert v3_error(reply, 400).startswith("query.attributes: must be a JSON object")


# --- operations: metrics, OpenSearch down, missing alias -----------------------------------


def test_metrics_name_the_route(api: httpx.Client):
    api.get(f"/api/v3/traces/{TRACES['search'].hex}")
    api.get("/api/v3/trace-summaries", params={"query.searchDepth": "x"})
    metrics = scrape(str(api.base_url.join("/metrics")))
    ok = 'spansieve_query_requests_total{endpoint="/api/v3/traces/{trace_id}",status="200"}'
    assert metrics[ok] >= 1
    bad = 'spansieve_query_requests_total{endpoint="/api/v3/trace-summaries",status="400"}'
    assert metrics[bad] >= 1


def test_opensearch_down_in_the_v3_shape(store: Settings):
    dead = store.model_copy(update={"opensearch_url": f"http://127.0.0.1:{free_port()}"})
    trace, summaries, services = in_process(
        dead,
        f"/api/v3/traces/{TRACES['search'].hex}",
        "/api/v3/trace-summaries?query.serviceName=frontend",
        "/api/v3/services",
    )
    for reply in (trace, summaries, services):
        assert v3_error(reply, 503).startswith("OpenSearch unreachable")


def test_missing_alias_is_empty_not_an_error(store: Settings):
    empty = store.model_copy(update={"store_index_prefix": f"qtest-{uuid.uuid4().hex[:8]}-"})
    summaries, traces, trace = in_process(
        empty,
        "/api/v3/trace-summaries?query.serviceName=x",
        "/api/v3/traces?query.serviceName=x",
        f"/api/v3/traces/{quote(TRACES['search'].hex)}",
    )
    assert summaries.json() == {"summaries": []}
    assert traces.json() == {"result": {}}
    assert v3_error(trace, 404).startswith("No traces found")
