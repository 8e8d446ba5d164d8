"""Contract test: OpenSearch Dashboards' Trace Analytics, its own requests, on our store.

Every request body here is what the observability plugin (opensearch-project/
dashboards-observability, commit eec79bc7ca48acddaff2e78353494aa123b5df82, version 3.8.0.0)
sends in Data Prepper mode, rebuilt in ``tests.integration.dashboards_queries`` from
``public/components/trace_analytics/requests/queries/*.ts`` with the plugin's filter DSL
merged in as ``request_handler.ts: handleDslRequest`` does, and sent the way its server
route does. The answers are then read the way the request handlers read them, and the
figures Dashboards would display are compared with what the traces say.

The store is private (``qtest-<random>-`` prefix): spans encoded by the sink's encoder
(``pipeline.sink.documents.encoded_documents``) and indexed with its ``_bulk`` body; the
service map built by the sampler's span metrics (``pipeline.sampler.span_metrics``: the
production path that derives Data Prepper's service-map documents) and indexed by the
service-map store's writer (``pipeline.sink.service_map_writer.ServiceMapWriter``),
in-process, without Kafka.

Tests marked ``xfail(strict=True)`` pin product defects found by this contract (see each
reason); they fail loudly once the product is fixed, so the marker gets removed.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson
import pytest
from opensearchpy import OpenSearch
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.config.settings import Settings
from pipeline.sampler.span_metrics import KIND_SERVICE_MAP, SpanMetrics
from pipeline.sink.bulk import Doc, bulk_body
from pipeline.sink.documents import encoded_documents
from pipeline.sink.service_map_writer import ServiceMapWriter
from pipeline.store.indices import store_names
from pipeline.store.setup import ensure_store
from tests.integration import dashboards_queries as dq
from tests.integration.test_query import drop_store
from tests.integration.test_service_map_store import (
    dashboards_service_map_request,
    dashboards_service_valid_request,
    service_map_from,
)
from tests.integration.trace_builder import MS, TraceBuilder

pytestmark = pytest.mark.integration

SERVER, CLIENT, INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL


def checkout_trace(start_ms: int, ms: int, failed: bool) -> TraceBuilder:
    """frontend -> checkout -> payments over client/server pairs; a failed charge fails
    the root too. Durations: root ``ms``, PlaceOrder ``ms - 30``, Charge ``ms - 110``."""
    trace = TraceBuilder(start_ms)
    trace.span("frontend", "POST /checkout", ms=ms, error=failed)
    trace.span(
        "frontend", "HTTP POST", "POST /checkout", CLIENT, key="to checkout", at=5, ms=ms - 20
    )
    trace.span("checkout", "PlaceOrder", "to checkout", SERVER, at=10, ms=ms - 30)
    trace.span("checkout", "HTTP POST", "PlaceOrder", CLIENT, key="to payments", at=20, ms=ms - 100)
    trace.span("payments", "Charge", "to payments", SERVER, at=25, ms=ms - 110, error=failed)
    trace.span("checkout", "reserve stock", "PlaceOrder", INTERNAL, at=ms - 70, ms=20)
    return trace


def cart_trace(start_ms: int) -> TraceBuilder:
    trace = TraceBuilder(start_ms)
    trace.span("frontend", "GET /cart", ms=50)
    trace.span("frontend", "HTTP GET", "GET /cart", CLIENT, key="to cart", at=2, ms=40)
    trace.span("cart", "GetCart", "to cart", SERVER, at=4, ms=30)
    trace.span("cart", "GET", "GetCart", CLIENT, at=6, ms=5, attributes={"db.system": "redis"})
    return trace


def nightly_trace(start_ms: int) -> TraceBuilder:
    """One service, internal spans only (a batch job)."""
    trace = TraceBuilder(start_ms)
    trace.span("batch", "nightly report", kind=INTERNAL, ms=1_000)
    trace.span("batch", "step", "nightly report", INTERNAL, at=1, ms=500)
    return trace


def stock_trace(start_ms: int) -> TraceBuilder:
    """A call whose caller made no client span (uninstrumented HTTP client): the server
    span's parent is the caller's server span."""
    trace = TraceBuilder(start_ms)
    trace.span("frontend", "GET /stock", ms=60)
    trace.span("inventory", "CheckStock", "GET /stock", SERVER, at=5, ms=40)
    return trace


TRACES = {
    "ok": checkout_trace(0, 200, failed=False),
    "failed": checkout_trace(1_000, 400, failed=True),
    "cart": cart_trace(2_000),
    "nightly": nightly_trace(3_000),
}
STOCK = {"stock": stock_trace(0)}


@dataclass
class Store:
    settings: Settings
    spans: str  # the span index pattern Dashboards searches, under our prefix
    service_map: str  # the service-map index pattern
    docs: list[dict]  # the span documents as indexed


def service_map_messages(settings: Settings, traces: list[TraceBuilder]) -> list[tuple]:
    """(key, value) of the ``service-map`` messages the sampler sends for these traces."""
    metrics = SpanMetrics(settings)
    for trace in traces:
        metrics.add(0, trace.data, trace.trace_id, True)
    closed = metrics.close(0, time.time() + 3_600)
    return [(key, value) for kind, key, value in closed if kind == KIND_SERVICE_MAP]


async def write_service_map(settings: Settings, messages: list[tuple]) -> None:
    async def no_dead_letters(value: bytes, headers: dict) -> None:
        raise AssertionError(f"service-map document refused: {headers} {value[:300]!r}")

    writer = ServiceMapWriter(settings, no_dead_letters)
    try:
        await writer.keep_index_installed()
        result = await writer.write(messages)
    finally:
        await writer.client.close()
    assert not result.dead


@contextmanager
def private_store(
    stack: Settings, opensearch: OpenSearch, traces: dict[str, TraceBuilder]
) -> Iterator[Store]:
    settings = stack.model_copy(
        update={"store_index_prefix": f"qtest-{uuid.uuid4().hex[:8]}-", "store_lifecycle": "worker"}
    )
    names = store_names(settings)
    try:
        ensure_store(opensearch, settings)
        encoded = [d for trace in traces.values() for d in encoded_documents(trace.data)]
        answer = opensearch.bulk(
            body=bulk_body([Doc(*d) for d in encoded]),
            index=names.span_alias,
            refresh="true",
            require_alias=True,
        )
        assert not answer["errors"], answer
        messages = service_map_messages(settings, list(traces.values()))
        asyncio.run(write_service_map(settings, messages))
        opensearch.indices.refresh(index=names.service_map_index)
        prefix = settings.store_index_prefix
        yield Store(
            settings,
            dq.span_pattern(prefix),
            dq.service_map_pattern(prefix),
            [orjson.loads(source) for _id, _routing, source in encoded],
        )
    finally:
        drop_store(opensearch, settings)


@pytest.fixture(scope="module")
def store(stack: Settings, opensearch: OpenSearch) -> Iterator[Store]:
    with private_store(stack, opensearch, TRACES) as made:
        yield made


@pytest.fixture(scope="module")
def stock_store(stack: Settings, opensearch: OpenSearch) -> Iterator[Store]:
    with private_store(stack, opensearch, STOCK) as made:
        yield made


def ask(opensearch: OpenSearch, store: Store, body: dict, dsl: dict | None = None) -> dict:
    """One Dashboards request over the store's span pattern (unless the body names an index)."""
    return dq.send(opensearch, dq.with_dsl(body, dsl, store.spans))


def span_of(trace: TraceBuilder, key: str) -> str:
    return trace.ids[key].hex()


def end_ms(trace: TraceBuilder, root_ms: int) -> int:
    """Epoch milliseconds of the root's end: what "Last updated" shows."""
    return (trace.start + root_ms * MS) // 1_000_000


def java_round_2(nanos: float) -> float:
    """``Math.round(nanos / 10000) / 100.0``: ms with two decimals, Java's rounding."""
    return math.floor(nanos / 10_000 + 0.5) / 100.0


# --- what the test's traces mean on screen ----------------------------------------------


TRACE_ROWS = {  # traces table: trace group, latency (ms), error count, root end (ms)
    "ok": ("POST /checkout", 200.0, 0, 200),
    "failed": ("POST /checkout", 400.0, 6, 400),  # error count: spans of a failed root
    "cart": ("GET /cart", 50.0, 0, 50),
    "nightly": ("nightly report", 1000.0, 0, 1_000),
}


def expected_trace_rows() -> dict[str, dict]:
    return {
        TRACES[name].hex: {
            "trace_group": group,
            "latency": latency,
            "error_count": errors,
            "last_updated": end_ms(TRACES[name], root_ms),
        }
        for name, (group, latency, errors, root_ms) in TRACE_ROWS.items()
    }


# --- index layout -------------------------------------------------------------------------


AGGREGATED_SPAN_FIELDS = [  # every span field the plugin aggregates, sorts or filters on
    "traceId",
    "spanId",
    "parentSpanId",
    "traceGroup",
    "name",
    "serviceName",
    "kind",
    "status.code",
    "durationInNanos",
    "startTime",
    "endTime",
    "traceGroupFields.durationInNanos",
    "traceGroupFields.endTime",
    "traceGroupFields.statusCode",
]
AGGREGATED_MAP_FIELDS = [
    "serviceName",
    "target.resource",
    "target.domain",
    "destination.resource",
    "destination.domain",
]


def test_indices_exist_and_every_field_dashboards_aggregates_is_aggregatable(
    opensearch: OpenSearch, store: Store
):
    # trace_analytics_dsl_router.ts, data_prepper_indices route: both patterns must exist.
    assert opensearch.indices.exists(index=[store.spans, store.service_map], allow_no_indices=False)
    # A text field (or a field OpenSearch guessed) would answer "Can't load fielddata".
    for pattern, fields in (
        (store.spans, AGGREGATED_SPAN_FIELDS),
        (store.service_map, AGGREGATED_MAP_FIELDS),
    ):
        caps = opensearch.field_caps(index=pattern, fields=",".join(fields))["fields"]
        for field in fields:
            assert field in caps, f"{field} is not mapped in {pattern}"
            for type_name, cap in caps[field].items():
                assert type_name != "text", field
                assert cap["aggregatable"], f"{field} ({type_name}) is not aggregatable"


# --- traces page: traces_queries.ts getTracesQuery + getTraceGroupPercentilesQuery -------


def test_traces_table_shows_each_trace_latest_first(opensearch: OpenSearch, store: Store):
    dsl = dq.filters_to_dsl()
    ranges = dq.percentile_ranges(ask(opensearch, store, dq.trace_group_percentiles_query(), dsl))
    assert set(ranges) == {"POST /checkout", "GET /cart", "nightly report"}
    checkout = ranges["POST /checkout"]
    assert len(checkout) == 101 and (checkout[0], checkout[-1]) == (200.0, 400.0)

    expected = expected_trace_rows()
    for under_one_hour in (False, True):
        answer = ask(opensearch, store, dq.traces_query(under_one_hour=under_one_hour), dsl)
        assert answer["aggregations"]["unique_traces"]["value"] == len(TRACES)
        rows = dq.traces_rows(answer, ranges)
        # Default order: last updated, latest first.
        assert [r["trace_id"] for r in rows] == sorted(
            expected, key=lambda t: expected[t]["last_updated"], reverse=True
        )
        for row in rows:
            shown = {k: row[k] for k in ("trace_group", "latency", "error_count", "last_updated")}
            assert shown == expected[row["trace_id"]], row
        percentile = {r["trace_id"]: r["percentile_in_trace_group"] for r in rows}
        assert percentile[TRACES["ok"].hex] == 0
        assert percentile[TRACES["failed"].hex] > 50
        assert percentile[TRACES["nightly"].hex] == 0


@pytest.mark.parametrize("column", ["_key", "latency", "error_count", "last_updated"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_traces_table_sorts_by_each_sortable_column(
    opensearch: OpenSearch, store: Store, column: str, direction: str
):
    # traces_table.tsx maps its columns to these aggregation names before refreshing.
    body = dq.traces_query(sort=(column, direction))
    rows = dq.traces_rows(ask(opensearch, store, body, dq.filters_to_dsl()), {})
    field = {"_key": "trace_id"}.get(column, column)
    values = [row[field] for row in rows]
    assert len(values) == len(TRACES)
    assert values == sorted(values, reverse=direction == "desc")


def test_traces_table_filters_and_search_bar(opensearch: OpenSearch, store: Store):
    def traces(must: list | None = None, query: str = "") -> set[str]:
        dsl = dq.filters_to_dsl(query=query, must=must)
        answer = ask(opensearch, store, dq.traces_query(), dsl)
        return {row["trace_id"] for row in dq.traces_rows(answer, {})}

    ids = {name: trace.hex for name, trace in TRACES.items()}
    assert traces([dq.latency_between(100, 500)]) == {ids["ok"], ids["failed"]}
    assert traces([dq.error_is(True)]) == {ids["failed"]}
    assert traces([dq.error_is(False)]) == {ids["ok"], ids["cart"], ids["nightly"]}
    assert traces([dq.field_is("serviceName", "payments")]) == {ids["ok"], ids["failed"]}
    assert traces([dq.field_is("traceGroup", "GET /cart")]) == {ids["cart"]}
    assert traces(query="payments") == {ids["ok"], ids["failed"]}
    assert traces(query='traceGroup:"nightly report"') == {ids["nightly"]}
    # A time range without our traces.
    empty = dq.filters_to_dsl(start="now-1s", end="now")
    assert (
        ask(opensearch, store, dq.traces_query(), empty)["aggregations"]["traces"]["buckets"] == []
    )


@pytest.mark.parametrize("mode", ["root_spans", "entry_spans"])
@pytest.mark.parametrize(
    "sort", [("endTime", "desc"), ("durationInNanos", "asc"), ("spanId", "asc"), None]
)
def test_traces_page_span_modes(
    opensearch: OpenSearch, store: Store, mode: str, sort: tuple[str, str] | None
):
    """getCustomIndicesTracesQuery: root spans / entry (server) spans, paged and sorted."""
    body = dq.custom_indices_traces_query(page_size=10, sort=sort, query_mode=mode)
    answer = ask(opensearch, store, body, dq.filters_to_dsl())
    if mode == "root_spans":
        wanted = [d for d in store.docs if d["parentSpanId"] == ""]
    else:
        wanted = [d for d in store.docs if d["kind"] == "SPAN_KIND_SERVER"]
    assert answer["hits"]["total"]["value"] == len(wanted)
    sources = [hit["_source"] for hit in answer["hits"]["hits"]]
    assert {s["spanId"] for s in sources} == {d["spanId"] for d in wanted}
    for source in sources:
        assert {"spanId", "traceId", "parentSpanId", "durationInNanos", "endTime"} <= set(source)
    if sort is not None:
        field, direction = sort
        if field == "endTime":
            keys = [dq.parse_iso_to_nano(s["endTime"]) for s in sources]
        else:
            keys = [s[field] for s in sources]
        assert keys == sorted(keys, reverse=direction == "desc")


# --- trace view: getPayloadQuery, getSpansQuery, getSpanFlyoutQuery ----------------------


def test_trace_view_overview_breakdown_gantt_and_span_tree(opensearch: OpenSearch, store: Store):
    failed = TRACES["failed"]
    hits = dq.payload_hits(ask(opensearch, store, dq.payload_query(failed.hex)))
    assert len(hits) == failed.count()
    assert dq.overview_fields(hits) == {
        "trace_id": failed.hex,
        "trace_group": "POST /checkout",
        "last_updated": hits[-1]["_source"]["traceGroupFields"]["endTime"],
        "latency": "400.00 ms",
        "error_count": 1,
        "fallbackValueUsed": False,
    }
    assert dq.parse_iso_to_nano(hits[-1]["_source"]["traceGroupFields"]["endTime"]) == (
        failed.start + 400 * MS
    )
    # Service breakdown: each service's share of the summed span durations.
    durations = {"frontend": 400 + 380, "checkout": 370 + 300 + 20, "payments": 290}
    total = sum(durations.values())
    breakdown = dq.service_breakdown(hits)
    assert breakdown.keys() == durations.keys()
    for service, ms in durations.items():
        assert breakdown[service] == pytest.approx(ms / total * 100)
    # Gantt chart: start times parse at nanosecond precision; errors marked.
    for hit in hits:
        source = hit["_source"]
        assert dq.parse_iso_to_nano(source["startTime"]) >= failed.start
    marked = {h["_source"]["name"] for h in hits if dq.span_is_error_in_gantt(h["_source"])}
    assert marked == {"POST /checkout", "Charge"}
    # Span tree: every parent is in the payload; one root with parentSpanId "".
    ids = {h["_source"]["spanId"] for h in hits}
    parents = [h["_source"]["parentSpanId"] for h in hits]
    assert parents.count("") == 1 and set(parents) - {""} <= ids
    # Span filters of the trace view (trace_view_helpers.tsx spanFiltersToDSL): must terms.
    span_dsl = {"query": dq.bool_query(must=[dq.field_is("serviceName", "payments")])}
    filtered = ask(opensearch, store, dq.payload_query(failed.hex), span_dsl)["hits"]["hits"]
    assert [h["_source"]["name"] for h in filtered] == ["Charge"]


def test_trace_view_of_a_trace_without_errors(opensearch: OpenSearch, store: Store):
    ok = TRACES["ok"]
    hits = dq.payload_hits(ask(opensearch, store, dq.payload_query(ok.hex)))
    fields = dq.overview_fields(hits)
    assert (fields["latency"], fields["error_count"]) == ("200.00 ms", 0)
    assert not any(dq.span_is_error_in_gantt(h["_source"]) for h in hits)


SPAN_TABLE_COLUMNS = [  # span_detail_table.tsx getColumns('data_prepper'): all sortable
    "spanId",
    "parentSpanId",
    "traceId",
    "traceGroup",
    "serviceName",
    "name",
    "durationInNanos",
    "status.code",
    "startTime",
    "endTime",
]


def _column_value(source: dict, column: str):
    if column == "status.code":
        return dq.status_code(source)
    if column in ("startTime", "endTime"):
        return dq.parse_iso_to_nano(source[column])
    return source[column]


@pytest.mark.parametrize("column", SPAN_TABLE_COLUMNS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_span_table_sorts_by_every_column(
    opensearch: OpenSearch, store: Store, column: str, direction: str
):
    trace = TRACES["failed"]
    dsl = {"query": dq.bool_query(filter=[dq.field_is("traceId", trace.hex)])}
    pages = []
    for page in range(2):  # two pages of 4, as the grid pages
        body = dq.spans_query(page * 4, 4, [{column: direction}])
        answer = ask(opensearch, store, body, dsl)
        assert answer["hits"]["total"]["value"] == trace.count()
        pages += [hit["_source"] for hit in answer["hits"]["hits"]]
    assert len(pages) == trace.count()
    values = [_column_value(source, column) for source in pages]
    assert values == sorted(values, reverse=direction == "desc")
    if column in ("spanId", "parentSpanId"):
        stored = [d[column] for d in store.docs if d["traceId"] == trace.hex]
        assert values == sorted(stored, reverse=direction == "desc")


def test_span_flyout_finds_the_span_and_its_fields(opensearch: OpenSearch, store: Store):
    failed = TRACES["failed"]
    charge = span_of(failed, "Charge")
    answer = ask(opensearch, store, dq.span_flyout_query(charge))
    (hit,) = answer["hits"]["hits"]
    span = hit["_source"]  # handleSpansFlyoutRequest shows hits[0]._source
    assert span["spanId"] == charge
    assert span["parentSpanId"] == span_of(failed, "to payments")
    assert (span["serviceName"], span["name"]) == ("payments", "Charge")
    assert span["durationInNanos"] / dq.NANOS_PER_MS == 290
    assert dq.parse_iso_to_nano(span["startTime"]) == failed.start + 25 * MS


def test_span_flyout_and_span_table_mark_an_error_span(opensearch: OpenSearch, store: Store):
    failed = TRACES["failed"]
    for key in ("Charge", "POST /checkout"):
        (hit,) = ask(opensearch, store, dq.span_flyout_query(span_of(failed, key)))["hits"]["hits"]
        assert dq.span_is_error_in_flyout(hit["_source"]), hit["_source"]


# --- services page and service map: services_queries.ts ----------------------------------


def dashboards_service_map(opensearch: OpenSearch, store: Store) -> dict[str, dict]:
    """handleServiceMapRequest: the map, then its metrics over the span index."""
    service_map = service_map_from(
        dq.send(opensearch, dashboards_service_map_request(store.service_map))
    )
    dsl = dq.filters_to_dsl()
    body = dq.service_metrics_query(dsl, list(service_map), service_map)
    return dq.with_service_metrics(service_map, ask(opensearch, store, body, dsl))


def test_service_map_edges(opensearch: OpenSearch, store: Store):
    service_map = dashboards_service_map(opensearch, store)
    edges = {
        name: (
            sorted(node["targetResources"]),
            sorted(node["targetServices"]),
            sorted(node["destServices"]),
        )
        for name, node in service_map.items()
    }
    edges.pop("batch", None)  # see test_a_service_with_internal_spans_only_is_on_the_map
    assert edges == {
        "frontend": ([], ["cart", "checkout"], []),
        "checkout": (["PlaceOrder"], ["payments"], ["frontend"]),
        "payments": (["Charge"], [], ["checkout"]),
        "cart": (["GetCart"], [], ["frontend"]),
    }
    for service, known in (("payments", True), ("cart", True), ("nobody", False)):
        answer = dq.send(opensearch, dashboards_service_valid_request(store.service_map, service))
        assert (answer["hits"]["total"]["value"] > 0) is known


# Services table: latency (ms) and error rate over each service's root spans and spans
# serving a target resource; throughput = that span count; traces = distinct traces.
SERVICE_ROWS = {
    "frontend": (java_round_2((200 + 400 + 50) * MS / 3), 33.33, 3, 3, ["cart", "checkout"]),
    "checkout": (270.0, 0, 2, 2, ["frontend", "payments"]),
    "payments": (190.0, 50.0, 2, 2, ["checkout"]),
    "cart": (30.0, 0, 1, 1, ["frontend"]),
}
BATCH_ROW = (1000.0, 0, 1, 1, [])  # a root span only, no connections


def services_table(opensearch: OpenSearch, store: Store) -> dict[str, tuple]:
    """handleServicesRequest's rows: latency, error rate, throughput, traces, connections."""
    service_map = dashboards_service_map(opensearch, store)
    dsl = dq.filters_to_dsl()
    rows = dq.services_rows(ask(opensearch, store, dq.services_query(), dsl), service_map)
    return {
        name: (
            row["average_latency"],
            row["error_rate"],
            row["throughput"],
            row["traces"],
            row["connected_services"],
        )
        for name, row in rows.items()
    }


def test_services_table_and_service_view(opensearch: OpenSearch, store: Store):
    shown = services_table(opensearch, store)
    shown.pop("batch", None)  # see test_a_service_with_internal_spans_only_is_on_the_map
    assert shown == SERVICE_ROWS
    # Service view (handleServiceViewRequest): one service's bucket and the same map.
    dsl = dq.filters_to_dsl()
    answer = ask(opensearch, store, dq.services_query("payments"), dsl)
    (bucket,) = answer["aggregations"]["service"]["buckets"]
    assert (bucket["key"], bucket["trace_count"]["value"]) == ("payments", 2)
    node = dashboards_service_map(opensearch, store)["payments"]
    assert (node["latency"], node["error_rate"], node["throughput"]) == (190.0, 50.0, 2)


def test_a_service_with_internal_spans_only_is_on_the_map(opensearch: OpenSearch, store: Store):
    answer = dq.send(opensearch, dashboards_service_valid_request(store.service_map, "batch"))
    assert answer["hits"]["total"]["value"] > 0
    assert services_table(opensearch, store)["batch"] == BATCH_ROW


def hour_key(nanos: int, interval_ns: int) -> int:
    """A date_histogram bucket key (epoch ms) of a time, for UTC-aligned intervals."""
    return nanos // interval_ns * interval_ns // 1_000_000


def average_trace_latency(docs: list[dict]) -> float:
    latencies = {d["traceId"]: d["traceGroupFields"]["durationInNanos"] for d in docs}
    return java_round_2(sum(latencies.values()) / len(latencies))


@pytest.mark.parametrize("service", [None, "payments"])
def test_service_trends(opensearch: OpenSearch, store: Store, service: str | None):
    """getServiceTrendsQuery (the services table's 24-hour sparklines; one service in the
    service flyout's metrics)."""
    service_filter = [dq.field_is("serviceName", service)] if service else []
    answer = ask(opensearch, store, dq.service_trends_query(service_filter), None)
    hour = 3_600 * 10**9
    expected: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for doc in store.docs:
        if service in (None, doc["serviceName"]):
            key = hour_key(dq.parse_iso_to_nano(doc["startTime"]), hour)
            expected[(doc["serviceName"], key)].append(doc)
    seen = {}
    for bucket in answer["aggregations"]["service_trends"]["buckets"]:
        for time_bucket in bucket["time_buckets"]["buckets"]:
            if time_bucket["doc_count"]:
                seen[(bucket["key"], time_bucket["key"])] = time_bucket
    assert seen.keys() == expected.keys()
    for key, docs in expected.items():
        traces = {d["traceId"] for d in docs}
        failed = {d["traceId"] for d in docs if dq.status_code(d) == 2}
        got = seen[key]
        assert got["trace_count"]["value"] == len(traces), key
        assert got["error_rate"]["value"] == pytest.approx(len(failed) / len(traces) * 100), key
        assert got["average_latency"]["value"] == average_trace_latency(docs), key


def test_a_call_without_a_client_span_links_the_services(
    opensearch: OpenSearch, stock_store: Store
):
    service_map = dashboards_service_map(opensearch, stock_store)
    assert sorted(service_map) == ["frontend", "inventory"]
    assert service_map["frontend"]["targetServices"] == ["inventory"]
    assert service_map["inventory"]["destServices"] == ["frontend"]
    assert service_map["inventory"]["targetResources"] == ["CheckStock"]
    node = service_map["inventory"]
    assert (node.get("latency"), node.get("error_rate"), node.get("throughput")) == (40.0, 0, 1)


# --- dashboard: dashboard_queries.ts ----------------------------------------------------


DASHBOARD_ROWS = {  # trace group: average latency (ms), traces, error rate (%), p0, p100
    "POST /checkout": (300.0, 2, 50.0, 200.0, 400.0),
    "GET /cart": (50.0, 1, 0.0, 50.0, 50.0),
    "nightly report": (1000.0, 1, 0.0, 1000.0, 1000.0),
}


def test_dashboard_trace_groups_with_latency_variance_and_trend(
    opensearch: OpenSearch, store: Store
):
    """handleDashboardRequest: percentiles (latency variance), the latency trend, and the
    trace-group table."""
    dsl = dq.filters_to_dsl()
    percentiles = ask(opensearch, store, dq.dashboard_trace_group_percentiles_query(), dsl)
    variance = {
        b["key"]: [
            round(max(0, v) / dq.NANOS_PER_MS, 2)
            for v in b["latency_variance_nanos"]["values"].values()
        ]
        for b in percentiles["aggregations"]["trace_group"]["buckets"]
    }
    answer = ask(opensearch, store, dq.dashboard_query(), dsl)
    shown = {
        b["key"]: (
            b["average_latency"]["value"],
            b["trace_count"]["value"],
            b["error_rate"]["value"],
            variance[b["key"]][0],
            variance[b["key"]][-1],
        )
        for b in answer["aggregations"]["trace_group_name"]["buckets"]
    }
    assert shown == DASHBOARD_ROWS

    trend = ask(opensearch, store, dq.latency_trend_query(), dsl)
    hour = 3_600 * 10**9
    expected: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for doc in store.docs:
        key = hour_key(dq.parse_iso_to_nano(doc["endTime"]), hour)
        expected[(doc["traceGroup"], key)].append(doc)
    seen = {
        (b["key"], h["key"]): h["average_latency"]["value"]
        for b in trend["aggregations"]["trace_group_name"]["buckets"]
        for h in b["group_by_hour"]["buckets"]
        if h["doc_count"]
    }
    assert seen == {key: average_trace_latency(docs) for key, docs in expected.items()}


@pytest.mark.parametrize("interval", ["1m", "1h"])
def test_dashboard_error_rate_and_throughput_plots(
    opensearch: OpenSearch, store: Store, interval: str
):
    interval_ns = {"1m": 60, "1h": 3_600}[interval] * 10**9
    by_bucket: dict[int, list[dict]] = defaultdict(list)
    for doc in store.docs:
        by_bucket[hour_key(dq.parse_iso_to_nano(doc["startTime"]), interval_ns)].append(doc)
    dsl = dq.filters_to_dsl()

    errors = ask(opensearch, store, dq.error_rate_plot_query(interval), dsl)
    throughput = ask(opensearch, store, dq.throughput_plot_query(interval), dsl)
    error_seen = {
        b["key"]: round(b["error_rate"]["value"] or 0, 2)
        for b in errors["aggregations"]["error_rate"]["buckets"]
        if b["doc_count"]
    }
    throughput_seen = {
        b["key"]: b["trace_count"]["value"]
        for b in throughput["aggregations"]["throughput"]["buckets"]
        if b["doc_count"]
    }
    expected_errors, expected_throughput = {}, {}
    for key, docs in by_bucket.items():
        traces = {d["traceId"] for d in docs}
        failed = {d["traceId"] for d in docs if d["traceGroupFields"]["statusCode"] == 2}
        expected_errors[key] = round(len(failed) / len(traces) * 100, 2)
        expected_throughput[key] = len(traces)
    assert error_seen == expected_errors
    assert throughput_seen == expected_throughput
    assert sum(throughput_seen.values()) >= len(TRACES)
