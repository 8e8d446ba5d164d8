"""Contract tests: `spansieve query` asked exactly the way Grafana's Jaeger data source (HTTP
mode) and the Jaeger UI's remaining API v1 paths ask, and answered in a form their own
parsing code takes.

The requests and the reading of the answers are restated from the clients' source in
``tests.integration.client_requests`` (each function names what it restates). Sources read:

* Grafana's Jaeger data source, HTTP (non-gRPC) mode: grafana/grafana-jaeger-datasource
  v13.0.1, commit 9d46d95bdbb6326d110a44564cc47d9e29832813 (the data source's current home;
  ``src/datasource.ts`` hands every query and resource call to the Go backend,
  ``pkg/jaeger/client.go`` builds the URLs, ``querydata.go`` the time ranges,
  ``utils/client_utils.go`` the frames). Same client as grafana/grafana
  ``pkg/tsdb/jaeger/client.go`` (index version 01b0e5d38c45ee03d09353d630eccacc88770b26,
  which does not yet send the search's start/end). Where noted, also the older in-browser
  data source of grafana/grafana ``public/app/plugins/datasource/jaeger/datasource.ts``
  (``jaegerBackendMigration`` off; the stored text carries no commit).
* The Jaeger UI: jaegertracing/jaeger-ui ``packages/jaeger-ui/src`` at
  c321fb32bbca0bdce9e8c2d40afb35abbf54c12b (after v2.20.0) for ``api/jaeger.ts``
  ``fetchTrace``/``fetchDependencies``/``fetchMetrics``, ``hooks/useTraceLoading.ts``,
  ``hooks/useDependenciesQuery.ts``, ``actions/jaeger-api.ts``,
  ``components/Monitor/ServicesView/index.tsx`` and ``reducers/metrics.ts``; and v2.18.0
  (460dd20d8b1bcfdf3c43912f930a883c6e10140d), the last release whose search page called
  ``searchTraces`` (``/api/traces``): ``components/SearchTracePage/SearchForm.tsx``
  ``submitForm`` and ``reducers/trace.ts`` ``searchDone``. No version of the Jaeger UI
  calls ``/api/metrics/minstep`` (``git log -S minstep`` finds nothing), so no test here
  does; test_query_spm.py checks its answer.

Already covered elsewhere, not repeated: the v3 paths of both clients (test_query_v3.py),
every /api/traces search filter and error (test_query.py), the SPM arithmetic
(test_query_spm.py). The five traces of test_query.py are indexed behind a private
``qtest-<random>-`` prefix with one more trace whose service name needs escaping in a URL
(and whose id in base64 holds ``+`` and ``/``); a real `spansieve query` process serves
them. The SPM answers come from test_query_spm.py's private metrics store, in-process.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.sink.bulk import Doc, bulk_body
from pipeline.sink.documents import encoded_documents
from pipeline.store.indices import store_names
from tests.integration import client_requests as cr
from tests.integration.conftest import running_query
from tests.integration.test_query import TRACES, in_process, private_store
from tests.integration.test_query_spm import END_MS, red_documents
from tests.integration.test_query_spm import metrics_store as spm_store
from tests.integration.trace_builder import MS, T0, TraceBuilder

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
TAG_TYPES = {"string", "bool", "int64", "float64", "binary"}  # Jaeger's ValueType names

# A service name with what a URL path must escape (space, "?", "#", "(", non-ASCII) and
# what it may carry as is ("+", "&", ":", and "/", which makes two path segments).
ODD_SERVICE = "shop: checkout/v2 (eu) ü+&?#"
ODD_OPERATION = "POST /pay?x"
ODD_TARGET = "/cart?x=1&y=<2>"  # Go's json.Marshal writes & < > as \u0026 \u003c \u003e


def odd_trace() -> TraceBuilder:
    """frontend -> ODD_SERVICE, five seconds after the last of TRACES; its id starts with
    bytes whose base64 is "++++////"."""
    trace = TraceBuilder(5_000, bytes.fromhex("fbefbeffffff") + os.urandom(10))
    trace.span("frontend", "GET /pay", ms=40)
    trace.span(
        ODD_SERVICE, ODD_OPERATION, "GET /pay", at=5, ms=30, attributes={"http.target": ODD_TARGET}
    )
    return trace


ODD = odd_trace()
ALL = {**TRACES, "odd": ODD}
BY_ID = {trace.hex: name for name, trace in ALL.items()}
LINKS = {  # (parent, child) -> calls: test_query.py's five traces and the odd one
    ("cart", "cart"): 2,
    ("frontend", "cart"): 2,
    ("batch", "batch"): 1,
    ("frontend", "payment"): 1,
    ("frontend", "search"): 1,
    ("frontend", ODD_SERVICE): 1,
}


@pytest.fixture(scope="module")
def store(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    with private_store(stack, opensearch, tmp_path_factory.mktemp("contracts")) as settings:
        docs = [Doc(*encoded) for encoded in encoded_documents(ODD.data)]
        alias = store_names(settings).span_alias
        answer = opensearch.bulk(body=bulk_body(docs), index=alias, refresh="true")
        assert not answer["errors"], answer
        yield settings


@pytest.fixture(scope="module")
def api(store: Settings) -> Iterator[httpx.Client]:
    """A `spansieve query` process over the private store."""
    with running_query(store) as client:
        yield client


@pytest.fixture(scope="module")
def metrics_store(stack: Settings, opensearch: OpenSearch) -> Iterator[Settings]:
    """test_query_spm.py's RED windows (four 15 s windows ending at END_MS) on a private
    ``spm-<random>-`` prefix."""
    with spm_store(stack, opensearch, red_documents()) as settings:
        yield settings


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def panel_range() -> tuple[int, int]:
    """A Grafana time range in ms holding every trace however long the session has run:
    from ten minutes before T0 (when the traces begin) to now."""
    return T0 // MS - 600_000, now_ms()


def sent(api: httpx.Client, url: str) -> httpx.Response:
    """GET ``url`` byte for byte as the client built it (httpx re-encodes nothing here)."""
    reply = api.get(url)
    assert reply.request.url.raw_path.decode() == url
    return reply


# --- Grafana: what the Go backend sends and decodes ---------------------------------------


def grafana_body(reply: httpx.Response) -> Any:
    """``doGet`` + ``readResponseBody``: a 2xx, a body it can decode (it refuses
    Content-Encodings other than gzip, deflate and br), then JSON."""
    assert reply.status_code // 100 == 2, reply.text
    assert reply.headers.get("content-encoding", "") in ("", "gzip", "deflate", "br")
    return reply.json()


def grafana_search(
    api: httpx.Client, range_ms: tuple[int, int], limit: int = 0, **fields: str
) -> list[tuple[str, str, int, int]]:
    """``JaegerClient.Search`` (``queryData`` passes the panel's range as
    ``TimeRange.From/To.UnixMicro()``): ``limit`` when positive, ``start``/``end`` in µs,
    the non-empty ``service``, ``operation``, ``tags`` (logfmt -> JSON),
    ``minDuration``, ``maxDuration`` as typed; ``url.Values.Encode()``. It wants exactly
    200, then builds the search table."""
    params = {}
    if limit > 0:
        params["limit"] = str(limit)
    params["start"], params["end"] = str(range_ms[0] * 1000), str(range_ms[1] * 1000)
    if fields.get("tags"):
        fields["tags"] = cr.grafana_tags_json(fields["tags"])
    params.update({key: value for key, value in fields.items() if value})
    reply = sent(api, f"/api/traces?{cr.go_values_encode(params)}")
    assert reply.status_code == 200, reply.text
    return cr.grafana_search_rows(grafana_body(reply)["data"])


def names(rows: list[tuple[str, str, int, int]]) -> list[str]:
    return [BY_ID[row[0]] for row in rows]


def test_grafana_services_and_operations(api: httpx.Client):
    """``JaegerClient.Services`` and ``Operations`` (``url.JoinPath(url, "/api/services/",
    service, "/operations")``; the resource route hands the service name over unescaped
    and trimmed), decoded into ``types.ServicesResponse``; and the in-browser data
    source's ``metadataRequest``: ``'/api/' + 'services/' +
    encodeURIComponent(service) + '/operations'`` (``SearchForm.tsx``), reading
    ``data.data``. Both fill a select with ``data`` sorted."""
    services = grafana_body(sent(api, cr.go_join_path("/api/services")))
    assert isinstance(services["data"], list)
    assert sorted(services["data"]) == sorted({name for link in LINKS for name in link})
    expected = {
        "cart": ["SELECT cart", "cart.get"],
        ODD_SERVICE: [ODD_OPERATION],
        "nobody": [],
    }
    for service, operations in expected.items():
        go_url = cr.go_join_path("/api/services/", service, "/operations")
        browser_url = "/api/" + f"services/{cr.js_encode_uri_component(service)}/operations"
        for url in (go_url, browser_url):
            data = grafana_body(sent(api, url))["data"]
            assert all(isinstance(name, str) for name in data)
            assert sorted(data) == operations, url
    # The odd name really travels escaped: Go keeps "/" (two segments), the browser not.
    assert cr.go_join_path("/api/services/", ODD_SERVICE, "/operations") == (
        "/api/services/shop:%20checkout/v2%20%28eu%29%20%C3%BC+&%3F%23/operations"
    )


def test_grafana_search_as_the_go_backend_sends_it(api: httpx.Client):
    last_hour = panel_range()
    search, odd = TRACES["search"], ODD
    assert grafana_search(api, last_hour, limit=2, service="frontend") == [
        (odd.hex, "frontend: GET /pay", odd.start // 1000, 40_000),
        (search.hex, "frontend: GET /search", search.start // 1000, 120_000),
    ]
    # Tags as typed in the Tags field (logfmt), durations as typed ("1.2s").
    select = {"service": "cart", "operation": "SELECT cart", "tags": "db.system=postgresql"}
    assert names(grafana_search(api, last_hour, maxDuration="1.2s", **select)) == [
        "cart_slow",
        "cart_fast",
    ]
    assert names(grafana_search(api, last_hour, service="batch", minDuration="1.2s")) == ["nightly"]
    step = {"service": "batch", "operation": "step", "minDuration": "1.2s"}
    assert grafana_search(api, last_hour, **step) == []  # step itself takes 1 s
    # logfmt values are strings: "201" finds the integer attribute 201.
    status = grafana_search(api, last_hour, tags="http.response.status_code=201")
    assert names(status) == ["search"]
    # A quoted value with & < > (HTML-escaped in the JSON), for an escaped service name.
    odd_tags = f'http.target="{ODD_TARGET}"'
    assert names(grafana_search(api, last_hour, service=ODD_SERVICE, tags=odd_tags)) == ["odd"]
    # The range is the panel's: the hour before T0 holds none of them.
    before = (T0 // MS - HOUR_MS, T0 // MS - 1)
    assert grafana_search(api, before, service="frontend") == []
    # What Go builds, byte for byte, for one of them.
    built = {"limit": "20", "start": "1", "end": "2", "service": "cart", "operation": "SELECT cart"}
    built |= {"tags": cr.grafana_tags_json(f'db.system=postgresql x="{ODD_TARGET}"')}
    assert cr.go_values_encode(built) == (
        "end=2&limit=20&operation=SELECT+cart&service=cart&start=1&tags=%7B%22db.system%22"
        "%3A%22postgresql%22%2C%22x%22%3A%22%2Fcart%3Fx%3D1%5Cu0026y%3D%5Cu003c2%5Cu003e%22%7D"
    )


def test_grafana_trace_by_id_with_and_without_time_parameters(api: httpx.Client):
    """``JaegerClient.Trace``: ``/api/traces/<QueryEscape(id)>``; with "Enable time
    parameters" on, ``?end=&start=`` in **milliseconds** (``TimeRange.UnixMilli()``). The
    in-browser data source appended ``?start=&end=`` in **microseconds** instead. We take
    both and look the trace up by id alone, so a window in either unit cannot hide it.
    The answer's ``data[0]`` becomes the trace frame."""
    search = TRACES["search"]
    start, end = panel_range()
    path = cr.go_join_path("/api/traces", cr.go_query_escape(search.hex))
    millis = cr.go_values_encode({"start": str(start), "end": str(end)})
    micros = f"start={start * 1000}&end={end * 1000}"
    frames = []
    for url in (path, f"{path}?{millis}", f"/api/traces/{search.hex}?{micros}"):
        body = grafana_body(sent(api, url))
        assert len(body["data"]) == 1
        frames.append(cr.grafana_trace_rows(body["data"][0]))
    assert frames[0] == frames[1] == frames[2]
    rows = frames[0]
    assert set(rows) == {"GET /search", "query"}
    root, query = rows["GET /search"], rows["query"]
    assert root["parentSpanID"] is None and root["references"] == []
    assert query == {
        "traceID": search.hex,
        "spanID": search.ids["query"].hex(),
        "parentSpanID": search.ids["GET /search"].hex(),
        "serviceName": "search",
        "serviceTags": [],
        "startTime": (search.start + 10 * MS) // 1000 / 1000,
        "duration": 100.0,
        "logs": [
            {
                "timestamp": (search.start + 20 * MS) // 1000 / 1000,
                "fields": [{"key": "event", "type": "string", "value": "cache miss"}],
            }
        ],
        # The parent is dropped from the references; the link stays.
        "references": [
            {
                "refType": "FOLLOWS_FROM",
                "traceID": TRACES["cart_fast"].hex,
                "spanID": TRACES["cart_fast"].ids["GET /cart"].hex(),
            }
        ],
        "tags": [{"key": "span.kind", "type": "string", "value": "server"}],
    }
    # Every tag of every trace has one of Jaeger's value types (the trace view reads it).
    for trace in ALL.values():
        [found] = grafana_body(sent(api, f"/api/traces/{trace.hex}"))["data"]
        for row in cr.grafana_trace_rows(found).values():
            kvs = [
                *row["tags"],
                *row["serviceTags"],
                *(f for log in row["logs"] for f in log["fields"]),
            ]
            assert {kv["type"] for kv in kvs} <= TAG_TYPES


def test_grafana_trace_not_found_is_a_failed_query(api: httpx.Client):
    """A non-2xx answer is the query's error (``request failed: 404 Not Found``), as with
    Jaeger; the envelope's ``errors`` is not read."""
    reply = sent(api, cr.go_join_path("/api/traces", "f" * 32))
    assert reply.status_code == 404
    assert reply.json()["errors"][0]["msg"] == "trace not found"


def test_grafana_dependency_graph(api: httpx.Client):
    """``JaegerClient.Dependencies`` over the panel's range in ms (``UnixMilli``):
    ``endTs`` = to, ``lookback`` = to - from, ``url.Values.Encode()``; the in-browser
    data source computed the same two numbers. ``errors`` must be empty."""
    start, end = panel_range()
    query = cr.go_values_encode({"endTs": str(end), "lookback": str(end - start)})
    assert query == f"endTs={end}&lookback={end - start}"
    nodes, edges = cr.grafana_dependency_frames(
        grafana_body(sent(api, f"/api/dependencies?{query}"))
    )
    assert nodes == sorted({name for link in LINKS for name in link})
    assert {(source, target): calls for _id, source, target, calls in edges} == LINKS
    assert len({edge_id for edge_id, *_rest in edges}) == len(edges)  # node graph edge ids


def test_a_capped_dependency_answer_still_draws_a_graph(store: Settings):
    """Capped by ``query_dependencies_max_spans`` we answer 200 with ``warnings`` and
    ``errors`` null. Grafana (``queryData``: any ``errors`` entry fails the query) and the
    Jaeger UI (``useDependenciesQuery``: ``getJSON`` throws at 400 and up, then only
    ``data`` is read) both draw it, from links that all exist."""
    capped = store.model_copy(update={"query_dependencies_max_spans": 4})
    start, end = panel_range()
    grafana = cr.go_values_encode({"endTs": str(end), "lookback": str(end - start)})
    ui = cr.query_string_stringify({"endTs": end, "lookback": 7 * 24 * HOUR_MS})
    for reply in in_process(capped, f"/api/dependencies?{grafana}", f"/api/dependencies?{ui}"):
        assert reply.status_code == 200
        body = reply.json()
        assert body["warnings"]  # the reason, where neither client looks
        _nodes, edges = cr.grafana_dependency_frames(body)
        assert {(source, target) for _id, source, target, _calls in edges} <= set(LINKS)
        _ui_nodes, ui_edges = cr.ui_dependency_graph(body)
        assert len(ui_edges) == len(edges)


# --- the Jaeger UI: trace page, v2.18 search page, dependencies page ---------------------


def ui_get(api: httpx.Client, url: str) -> Any:
    """``getJSON``: below 400 the body is JSON and is the result."""
    reply = sent(api, url)
    assert reply.status_code < 400, reply.text
    return reply.json()


def test_ui_trace_page_fetch_trace(api: httpx.Client):
    """``useTrace`` (``hooks/useTraceLoading.ts``) -> ``JaegerAPI.fetchTrace(id)``:
    ``/api/traces/${encodeURIComponent(id)}``, then ``transformTraceData(data[0])``, which
    needs ``traceID``, every ``processID`` in ``processes`` and parents among the trace's
    spans; ``DownloadResults`` saves the same ``data[0]`` for each search result."""
    expected = {
        "cart_fast": {"frontend": 1, "cart": 2},
        "checkout": {"frontend": 1, "payment": 1},
        "search": {"frontend": 1, "search": 1},
        "nightly": {"batch": 2},
        "odd": {"frontend": 1, ODD_SERVICE: 1},
    }
    for name, services in expected.items():
        trace = ALL[name]
        body = ui_get(api, f"/api/traces/{cr.js_encode_uri_component(trace.hex)}")
        shown = cr.ui_transform_trace(body["data"][0])
        assert shown["traceID"] == trace.hex  # the cache key it re-files the trace under
        assert shown["services"] == services
        assert len(shown["roots"]) == 1 and shown["orphanSpanCount"] == 0
        for span in body["data"][0]["spans"]:
            assert span["processID"] in body["data"][0]["processes"]  # not unknown-service


def test_ui_trace_page_with_a_base64_trace_id(api: httpx.Client):
    """``looksLikeTraceId`` (``utils/trace-id.ts``) lets a base64 id through the lookup
    box; the trace page then calls ``fetchTrace`` with it unchanged."""
    standard = base64.b64encode(ODD.trace_id).decode()
    assert standard.startswith("++++////")
    for typed in (standard, standard.rstrip("="), base64.urlsafe_b64encode(ODD.trace_id).decode()):
        body = ui_get(api, f"/api/traces/{cr.js_encode_uri_component(typed)}")
        assert cr.ui_transform_trace(body["data"][0])["traceID"] == ODD.hex


def ui_search_v2_18(api: httpx.Client, **form: Any) -> list[str]:
    """``submitForm`` (v2.18.0 ``SearchForm.tsx``) with a lookback other than "custom":
    ``start`` = now - lookback and ``end`` = now, both µs as strings; the "all" operation
    undefined; tags through ``convTagsLogfmt`` (undefined when empty); empty durations
    ``null``, which query-string writes as a bare key. ``searchTraces`` sends it with
    ``queryString.stringify``; ``searchDone`` maps ``data`` through
    ``transformTraceData``, keeping the answer's order."""
    now = now_ms()
    lookbacks = {"1h": HOUR_MS, "2d": 48 * HOUR_MS}
    lookback = form.get("lookback", "2d")  # not 1h: T0 ages while the session runs
    query = {
        "service": form["service"],
        "operation": form.get("operation", cr.UNDEFINED),
        "limit": form.get("limit", "20"),
        "lookback": lookback,
        "start": str((now - lookbacks[lookback]) * 1000),
        "end": str(now * 1000),
        "tags": cr.jaeger_ui_tags_json(form["tags"]) if form.get("tags") else cr.UNDEFINED,
        "minDuration": form.get("minDuration") or None,
        "maxDuration": form.get("maxDuration") or None,
    }
    if form.get("built"):
        return [cr.query_string_stringify(query)]
    body = ui_get(api, f"/api/traces?{cr.query_string_stringify(query)}")
    shown = [cr.ui_transform_trace(trace) for trace in body["data"]]
    assert all(trace["orphanSpanCount"] == 0 for trace in shown)
    return [BY_ID[trace["traceID"]] for trace in shown]


def test_ui_v2_18_search_page(api: httpx.Client):
    assert ui_search_v2_18(api, service="frontend") == [
        "odd",
        "search",
        "checkout",
        "cart_slow",
        "cart_fast",
    ]
    assert ui_search_v2_18(api, service="frontend", limit="2") == ["odd", "search"]
    # The bare keys of the null durations, the undefined operation and tags left out.
    [built] = ui_search_v2_18(api, service="front end", lookback="1h", built=True)
    parts = built.split("&")
    assert [part.partition("=")[0] for part in parts] == [
        "end", "limit", "lookback", "maxDuration", "minDuration", "service", "start"
    ]  # fmt: skip
    assert parts[1:6] == [
        "limit=20",
        "lookback=1h",
        "maxDuration",
        "minDuration",
        "service=front%20end",
    ]
    assert ui_search_v2_18(api, service="cart", operation="cart.get", minDuration="100ms") == [
        "cart_slow"
    ]
    assert ui_search_v2_18(api, service="batch", minDuration="1.5s", maxDuration="3s") == [
        "nightly"
    ]
    tagged = {"service": "frontend", "tags": "http.response.status_code=201"}
    assert ui_search_v2_18(api, **tagged) == ["search"]
    odd = {
        "service": ODD_SERVICE,
        "operation": ODD_OPERATION,
        "tags": f'http.target="{ODD_TARGET}"',
    }
    assert ui_search_v2_18(api, **odd) == ["odd"]


def test_ui_dependencies_page(api: httpx.Client):
    """``useDependenciesQuery`` -> ``fetchDependencies(Date.now(),
    DEFAULT_DEPENDENCY_LOOKBACK)``: ``endTs`` in ms and a week of ``lookback``, then
    ``formatServiceCalls`` draws a node per service and an edge per link."""
    query = cr.query_string_stringify({"endTs": now_ms(), "lookback": 7 * 24 * HOUR_MS})
    nodes, edges = cr.ui_dependency_graph(ui_get(api, f"/api/dependencies?{query}"))
    assert sorted(nodes) == sorted({name for link in LINKS for name in link})
    assert {(parent, child): int(label) for parent, child, label in edges} == LINKS


# --- the Jaeger UI: Monitor tab (SPM) -----------------------------------------------------

# What ``fetchMetrics`` (ServicesView/index.tsx) puts in every request: a "now" that is
# not on a step (Date.now()), the default time frame, one-minute steps, ten-minute rates.
MONITOR_END = END_MS + 12_345
PAYLOAD = {
    "quantile": 0.95,
    "endTs": MONITOR_END,
    "lookback": HOUR_MS,
    "step": 60_000,
    "ratePer": 600_000,
    "spanKind": "server",
}


def fetch_metrics(metric_type: str, service: str, query: dict[str, Any]) -> str:
    """``JaegerAPI.fetchMetrics(type, [service], query)``: ``service=<name>`` unencoded,
    then ``queryString.stringify(query)``."""
    return f"/api/metrics/{metric_type}?service={service}&{cr.query_string_stringify(query)}"


def monitor_families(settings: Settings, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Each request answered 200, as a MetricFamily with ``fetchMetrics``' ``quantile``."""
    urls = [fetch_metrics(metric_type, "api", query) for metric_type, query in requests]
    families = []
    for url, reply, (_type, query) in zip(urls, in_process(settings, *urls), requests, strict=True):
        assert reply.status_code == 200, (url, reply.text)
        family = reply.json()
        assert isinstance(family["metrics"], list), url  # the reducers index it
        families.append({**family, "quantile": query.get("quantile")})
    return families


def test_ui_monitor_service_metrics(metrics_store: Settings):
    """``fetchAllServiceMetrics`` (``actions/jaeger-api.ts``): latencies at 0.5, 0.75 and
    the payload's 0.95, then calls and errors (which carry ``quantile`` too), read by
    ``fetchServiceMetricsDone``."""
    requests = [
        ("latencies", {**PAYLOAD, "quantile": 0.5}),
        ("latencies", {**PAYLOAD, "quantile": 0.75}),
        ("latencies", dict(PAYLOAD)),
        ("calls", dict(PAYLOAD)),
        ("errors", dict(PAYLOAD)),
    ]
    assert fetch_metrics("latencies", "api", requests[0][1]) == (
        f"/api/metrics/latencies?service=api&endTs={MONITOR_END}&lookback=3600000"
        "&quantile=0.5&ratePer=600000&spanKind=server&step=60000"
    )
    state = cr.ui_service_metrics(monitor_families(metrics_store, requests))
    latencies = state["service_latencies"]
    assert [entry["serviceName"] for entry in latencies] == ["api"] * 3
    assert [entry["quantile"] for entry in latencies] == [0.5, 0.75, 0.95]
    assert [entry["max"] for entry in latencies] == [8.0, 40.0, 170.0]
    # The chart's x domain is [now - time frame, now]: every point inside, a step apart.
    points = [MONITOR_END - HOUR_MS + i * 60_000 for i in range(61)]
    calls = state["service_call_rate"]
    assert calls["serviceName"] == "api"
    assert [x for x, _y in calls["metricPoints"]] == points
    assert calls["metricPoints"][-1] == (MONITOR_END, 0.01)  # 6 calls / 600 s
    errors = state["service_error_rate"]
    # Only the last two points have calls in their ten minutes; 1 error in 6 there.
    assert errors["metricPoints"] == [(points[-2], 0.0), (MONITOR_END, 0.17)]


def test_ui_monitor_operation_metrics(metrics_store: Settings):
    """``fetchAggregatedServiceMetrics``: the payload plus ``groupByOperation: true``,
    for latencies (0.95), calls and errors, read by ``fetchOpsMetricsDone``, which files
    each series under its ``operation`` label and its family's name."""
    query = {**PAYLOAD, "groupByOperation": True}
    assert "&groupByOperation=true&" in fetch_metrics("calls", "api", query)
    families = monitor_families(
        metrics_store, [("latencies", query), ("calls", query), ("errors", query)]
    )
    assert [family["name"] for family in families] == list(cr.OPS_NAMES)
    rows = cr.ui_operation_metrics(families)
    assert set(rows) == {"GET /", "POST /pay"}
    for row in rows.values():
        assert all(row["avg"][name] is not None for name in cr.OPS_NAMES)
    # The table's latency column: the average of the points shown.
    assert rows["POST /pay"]["avg"]["service_operation_latencies"] == 46.0
    assert rows["GET /"]["avg"]["service_operation_error_rate"] == 0.13  # (0 + 0.25) / 2


def test_ui_monitor_every_time_frame_and_span_kind(metrics_store: Settings):
    """Every time frame the Monitor tab offers (``timeFrameOptions``: up to 48 h) and
    every span kind of its selector must be answered, not refused as too many points."""
    frames = [m * 60_000 for m in (5, 15, 30, 60, 120, 180, 360, 720, 1_440, 2_880)]
    requests = [("calls", {**PAYLOAD, "lookback": lookback}) for lookback in frames]
    requests.append(("latencies", {**PAYLOAD, "lookback": frames[-1]}))
    kinds = ["client", "server", "internal", "producer", "consumer"]
    requests += [("errors", {**PAYLOAD, "spanKind": kind}) for kind in kinds]
    families = monitor_families(metrics_store, requests)
    for family in families:
        for metric in family["metrics"]:
            assert metric["labels"][0] == {"name": "service_name", "value": "api"}
    largest = families[len(frames) - 1]["metrics"][0]["metricPoints"]
    assert len(largest) == 2_881  # two days of one-minute steps
    client_errors = families[len(frames) + 1]
    assert [len(m["metricPoints"]) for m in client_errors["metrics"]] == [2]  # SELECT spans
