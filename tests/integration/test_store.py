"""The OpenSearch trace store against the real stack: sink, DLQ, queries, lifecycle.

A sink-only worker reads kept traces from a private ``<prefix>-sampled`` topic (written
here the way the sampler writes it: one serialized TracesData per trace, keyed and
partitioned by trace id) and indexes them behind a private alias, so nothing here touches
the shared ``otel-v1-apm-span`` or races other sessions.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from opensearchpy import OpenSearch
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.bench.metrics_scrape import scrape
from pipeline.cli import main
from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.run import start_component, stop_components, wait_until
from pipeline.sink.documents import encoded_documents, parse_traces
from pipeline.store.fields import document_id, nanos_to_iso
from pipeline.store.indices import store_names, write_index
from pipeline.store.lifecycle import has_ism, node_plugins, run_worker_lifecycle
from pipeline.store.setup import ensure_store
from pipeline.wire.otlp import set_any_value
from pipeline.wire.partitioner import partition_for_trace
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
VISIBLE_WITHIN = 30.0


# --- building and sending kept traces --------------------------------------------------


def kept_trace(
    root_name: str = "GET /cart",
    case: str = "default",
    duration_ms: int = 100,
    error: bool = False,
    db_spans: int = 1,
) -> TracesData:
    """A trace as the sampler keeps it: frontend root -> cart -> postgres client spans."""
    trace_id = os.urandom(16)
    root_id, cart_id = os.urandom(8), os.urandom(8)

    def span(span_id: bytes, parent: bytes, name: str, kind: int, start: int, end: int) -> Span:
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=kind,
            start_time_unix_nano=T0 + start * MS,
            end_time_unix_nano=T0 + end * MS,
        )

    root = span(root_id, b"", root_name, Span.SPAN_KIND_SERVER, 0, duration_ms)
    set_any_value(root.attributes.add(key="http.response.status_code").value, 500 if error else 200)
    cart = span(cart_id, root_id, "cart.get", Span.SPAN_KIND_SERVER, 1, duration_ms - 1)
    if error:
        cart.status.code = 2
        cart.status.message = "boom"
    dbs = []
    for n in range(db_spans):
        db = span(os.urandom(8), cart_id, "SELECT cart", Span.SPAN_KIND_CLIENT, 2 + n, 3 + n)
        set_any_value(db.attributes.add(key="db.system").value, "postgresql")
        dbs.append(db)
    data = TracesData()
    for service, spans in (("frontend", [root]), ("cart", [cart, *dbs])):
        resource_spans = data.resource_spans.add()
        for key, value in (("service.name", service), ("test.case", case)):
            set_any_value(resource_spans.resource.attributes.add(key=key).value, value)
        resource_spans.scope_spans.add().spans.extend(spans)
    return data


def span_count(data: TracesData) -> int:
    return sum(len(s.spans) for r in data.resource_spans for s in r.scope_spans)


def trace_hex(data: TracesData) -> str:
    return data.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()


def send_kept(settings: Settings, traces: list[TracesData]) -> None:
    """Write kept traces to the sampled topic exactly as the sampler does."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    for data in traces:
        trace_id = data.resource_spans[0].scope_spans[0].spans[0].trace_id
        producer.produce(
            settings.topic("sampled"),
            data.SerializeToString(),
            trace_id,
            partition=partition_for_trace(trace_id, settings.partitions),
        )
    assert producer.flush(30) == 0


def read_topic(settings: Settings, name: str, timeout: float = 10.0) -> list:
    """Every message of one of our topics, from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(
        [TopicPartition(settings.topic(name), p, 0) for p in range(settings.partitions)]
    )
    messages, idle_until = [], time.monotonic() + timeout
    try:
        while time.monotonic() < idle_until:
            batch = [m for m in consumer.consume(100, timeout=0.5) if not m.error()]
            messages.extend(batch)
            if messages and not batch:
                break
    finally:
        consumer.close()
    return messages


def count(client: OpenSearch, alias: str, query: dict) -> int:
    return int(client.count(index=alias, body={"query": query})["count"])


def case_query(case: str, *filters: dict) -> dict:
    return {"bool": {"filter": [{"term": {"resource.attributes.test@case": case}}, *filters]}}


def worker_metrics(settings: Settings) -> dict[str, float]:
    return scrape(f"http://127.0.0.1:{settings.worker_web_port}/metrics")


def drop_store(client: OpenSearch, settings: Settings) -> None:
    prefix = settings.store_index_prefix
    assert prefix, "never drop the shared store"
    client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
    client.indices.delete_index_template(name=f"{prefix}*", ignore=404)


def private_store(base: Settings, **overrides) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(update={"store_index_prefix": f"st-{tag}-", **overrides})


@pytest.fixture(scope="module")
def sink_worker(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    """A sink-only worker on private topics and a private alias of the shared OpenSearch."""
    settings = private_store(
        stack,
        state_dir=tmp_path_factory.mktemp("store"),
        topic_prefix=f"st-{uuid.uuid4().hex[:8]}",
        partitions=2,
        worker_roles="sink",
        worker_web_port=free_port(),
    )
    ensure_topics(settings)
    child = start_component("worker", settings)
    try:
        url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
        assert wait_until(lambda: httpx.get(url).status_code == 200, "sink worker", 120)
        alias = store_names(settings).span_alias
        assert wait_until(lambda: write_index(opensearch, alias) is not None, "store", 60)
        yield settings
    finally:
        stop_components([child])
        drop_store(opensearch, settings)


# --- the sink ---------------------------------------------------------------------------


def test_duplicate_delivery_is_idempotent(sink_worker: Settings, opensearch: OpenSearch):
    alias = store_names(sink_worker).span_alias
    traces = [kept_trace(case="dup", db_spans=3) for _ in range(5)]
    expected = sum(span_count(t) for t in traces)
    send_kept(sink_worker, traces + traces)  # delivered twice at once
    query = case_query("dup")
    assert wait_until(lambda: count(opensearch, alias, query) >= expected, "indexed", 30)

    send_kept(sink_worker, traces[:2])  # and again later, after they were indexed
    indexed_before = worker_metrics(sink_worker)["spansieve_sink_documents_indexed_total"]
    resent = span_count(traces[0]) + span_count(traces[1])
    assert wait_until(
        lambda: (
            worker_metrics(sink_worker)["spansieve_sink_documents_indexed_total"]
            >= indexed_before + resent
        ),
        "re-indexed",
        30,
    )
    opensearch.indices.refresh(index=alias)
    assert count(opensearch, alias, query) == expected
    for data in traces:
        trace_query = case_query("dup", {"term": {"traceId": trace_hex(data)}})
        assert count(opensearch, alias, trace_query) == span_count(data)
    hits = opensearch.search(
        index=alias,
        body={"query": {"term": {"traceId": trace_hex(traces[0])}}, "version": True},
    )["hits"]["hits"]
    assert all(hit["_version"] >= 3 for hit in hits)  # overwritten in place, not added
    for hit in hits:
        ids = bytes.fromhex(hit["_source"]["traceId"]), bytes.fromhex(hit["_source"]["spanId"])
        assert hit["_id"] == document_id(*ids)
    assert all(hit["_routing"] == hit["_source"]["traceId"] for hit in hits)


def test_poison_document_goes_to_the_dlq_and_the_rest_is_indexed(
    sink_worker: Settings, opensearch: OpenSearch
):
    alias = store_names(sink_worker).span_alias
    poisoned = kept_trace(case="poison", db_spans=3)
    bad_span = poisoned.resource_spans[1].scope_spans[0].spans[2]
    bad_span.end_time_unix_nano = 2**64 - 1  # past date_nanos' year 2262: never indexable
    traces = [kept_trace(case="poison") for _ in range(10)] + [poisoned]
    expected = sum(span_count(t) for t in traces) - 1
    dead_before = worker_metrics(sink_worker).get("spansieve_sink_dead_letters_total:sum", 0)
    send_kept(sink_worker, traces)

    query = case_query("poison")
    assert wait_until(lambda: count(opensearch, alias, query) >= expected, "indexed", 30)
    bad_id = document_id(bad_span.trace_id, bad_span.span_id)
    dead = [
        message
        for message in read_topic(sink_worker, "dlq")
        if dict(message.headers() or []).get("document-id") == bad_id.encode()
    ]
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["stage"] == b"sink"
    assert headers["trace-id"] == bad_span.trace_id.hex().encode()
    assert headers["reason"].startswith(b"mapper_parsing_exception"), headers["reason"]
    assert orjson.loads(dead[0].value())["spanId"] == bad_span.span_id.hex()

    metrics = worker_metrics(sink_worker)
    assert metrics["spansieve_sink_dead_letters_total:sum"] == dead_before + 1
    assert metrics['spansieve_sink_dead_letters_total{reason="mapper_parsing_exception"}'] >= 1
    opensearch.indices.refresh(index=alias)
    assert count(opensearch, alias, query) == expected
    siblings = case_query("poison", {"term": {"traceId": bad_span.trace_id.hex()}})
    assert count(opensearch, alias, siblings) == span_count(poisoned) - 1


def test_dashboards_style_queries(sink_worker: Settings, opensearch: OpenSearch):
    alias = store_names(sink_worker).span_alias
    carts = [kept_trace("GET /cart", "dash", duration_ms=d) for d in (50, 150, 250)]
    checkouts = [
        kept_trace("POST /checkout", "dash", duration_ms=400, error=True),
        kept_trace("POST /checkout", "dash", duration_ms=80, db_spans=0),
    ]
    traces = carts + checkouts
    send_kept(sink_worker, traces)
    total = sum(span_count(t) for t in traces)
    assert wait_until(
        lambda: count(opensearch, alias, case_query("dash")) == total, "indexed", VISIBLE_WITHIN
    )

    # Trace Analytics finds root spans by the empty parentSpanId.
    roots = opensearch.search(
        index=alias,
        body={"query": case_query("dash", {"term": {"parentSpanId": ""}}), "size": 20},
    )["hits"]["hits"]
    assert sorted(hit["_source"]["name"] for hit in roots) == sorted(
        ["GET /cart"] * 3 + ["POST /checkout"] * 2
    )

    # Its trace-group table: terms on traceGroup, traces per group, latency, errors.
    groups = opensearch.search(
        index=alias,
        body={
            "size": 0,
            "query": case_query("dash"),
            "aggs": {
                "groups": {
                    "terms": {"field": "traceGroup"},
                    "aggs": {
                        "traces": {"cardinality": {"field": "traceId"}},
                        "latency": {"avg": {"field": "traceGroupFields.durationInNanos"}},
                        "errors": {
                            "filter": {"term": {"traceFields.error": True}},
                            "aggs": {"traces": {"cardinality": {"field": "traceId"}}},
                        },
                    },
                }
            },
        },
    )["aggregations"]["groups"]["buckets"]
    by_group = {bucket["key"]: bucket for bucket in groups}
    assert set(by_group) == {"GET /cart", "POST /checkout"}
    assert by_group["GET /cart"]["traces"]["value"] == 3
    assert by_group["POST /checkout"]["traces"]["value"] == 2
    assert by_group["GET /cart"]["latency"]["value"] == pytest.approx(150 * MS)
    assert by_group["GET /cart"]["errors"]["traces"]["value"] == 0
    assert by_group["POST /checkout"]["errors"]["traces"]["value"] == 1

    # One query: traces in which some span talks to postgres and the whole trace took
    # longer than 120 ms (a per-span duration filter cannot say this).
    slow_db = opensearch.search(
        index=alias,
        body={
            "size": 0,
            "query": case_query(
                "dash",
                {"term": {"span.attributes.db@system": "postgresql"}},
                {"range": {"traceFields.durationInNanos": {"gt": 120 * MS}}},
            ),
            "aggs": {"traces": {"terms": {"field": "traceId", "size": 50}}},
        },
    )["aggregations"]["traces"]["buckets"]
    wanted = {trace_hex(t) for t in (carts[1], carts[2], checkouts[0])}
    assert {bucket["key"] for bucket in slow_db} == wanted

    # Numeric attributes are searchable as numbers; trace-level error flag on every span.
    status_at_least_500 = {"range": {"span.attributes.http@response@status_code.num": {"gte": 500}}}
    server_errors = case_query("dash", status_at_least_500)
    assert count(opensearch, alias, server_errors) == 1
    in_error_traces = case_query("dash", {"term": {"traceFields.error": True}})
    assert count(opensearch, alias, in_error_traces) == span_count(checkouts[0])

    # Fields mapped with doc values only (no points, to save space) still answer range
    # filters: Dashboards' latency filter on the trace group, span durations, end times.
    slow_roots = case_query(
        "dash",
        {"term": {"parentSpanId": ""}},
        {"range": {"traceGroupFields.durationInNanos": {"gte": 200 * MS}}},
    )
    assert count(opensearch, alias, slow_roots) == 2  # 250 ms and 400 ms
    slow_spans = case_query("dash", {"range": {"durationInNanos": {"gte": 200 * MS}}})
    assert count(opensearch, alias, slow_spans) == 4  # those roots and their cart spans
    late = {"range": {"endTime": {"gte": nanos_to_iso(T0 + 300 * MS)}}}
    assert count(opensearch, alias, case_query("dash", late)) == 2  # the 400 ms trace's
    with_db = {"range": {"traceFields.spanCount": {"gte": 3}}}
    assert count(opensearch, alias, case_query("dash", with_db)) == sum(
        span_count(t) for t in traces if span_count(t) >= 3
    )

    # Its span table sorts by span id and parent span id (doc values since schema 5;
    # without them OpenSearch refuses with "Can't load fielddata").
    for field in ("spanId", "parentSpanId"):
        hits = opensearch.search(
            index=alias,
            body={"query": case_query("dash"), "size": 100, "sort": [{field: "asc"}]},
        )["hits"]["hits"]
        values = [hit["_source"][field] for hit in hits]
        assert len(values) == total and values == sorted(values)


# --- installation and lifecycle ------------------------------------------------------------


def test_store_init_is_idempotent(stack: Settings, opensearch: OpenSearch):
    settings = private_store(stack)
    args = ["store", "init", "--store-index-prefix", settings.store_index_prefix]
    try:
        first = CliRunner().invoke(main, args)
        second = CliRunner().invoke(main, args)
        assert first.exit_code == 0, first.output
        assert second.exit_code == 0, second.output
        alias = store_names(settings).span_alias
        assert f"span alias   {alias} -> {alias}-000001" in second.output
        assert "created the first span index" in first.output
        assert "created" not in second.output
        ism = has_ism(node_plugins(opensearch))
        assert ("ISM policy" in second.output) == ism
        assert ("the worker (no ISM plugin" in second.output) == (not ism)

        index_settings = opensearch.indices.get_settings(index=f"{alias}-000001")
        index = next(iter(index_settings.values()))["settings"]["index"]
        assert index["codec"] in ("best_compression", "zstd")
        assert index["refresh_interval"] == "5s"
        assert opensearch.indices.exists(index=store_names(settings).service_map_index)
        assert opensearch.indices.get_alias(name=alias) == {
            f"{alias}-000001": {"aliases": {alias: {"is_write_index": True}}}
        }
    finally:
        drop_store(opensearch, settings)


def test_older_mapping_is_rolled_over_at_start(stack: Settings, opensearch: OpenSearch):
    settings = private_store(stack)
    alias = store_names(settings).span_alias
    try:
        # An index made by an older template (no schema version in its mapping).
        opensearch.indices.create(
            index=f"{alias}-000007",
            body={"aliases": {alias: {"is_write_index": True}}, "mappings": {"dynamic": True}},
        )
        state = ensure_store(opensearch, settings)
        assert state.upgraded and state.write_index == f"{alias}-000008"
        assert not ensure_store(opensearch, settings).upgraded
    finally:
        drop_store(opensearch, settings)


def test_bytes_attributes_index_as_base64_and_are_found_by_it(
    stack: Settings, opensearch: OpenSearch
):
    """Schema 6: bytes (span, resource, event, link) are base64 keywords, a term query for
    the base64 finds them, and the ``binaryAttributes`` lists are kept in ``_source`` only."""
    settings = private_store(stack)
    alias = store_names(settings).span_alias
    data = kept_trace(case="bytes")
    root = data.resource_spans[0].scope_spans[0].spans[0]
    set_any_value(root.attributes.add(key="digest").value, b"\xfb\xff")
    set_any_value(data.resource_spans[0].resource.attributes.add(key="host.id").value, b"\x01")
    event = root.events.add(name="signed", time_unix_nano=T0)
    set_any_value(event.attributes.add(key="signature").value, b"\x00")
    link = root.links.add(trace_id=os.urandom(16), span_id=os.urandom(8))
    set_any_value(link.attributes.add(key="token").value, b"\x07")
    try:
        ensure_store(opensearch, settings)
        for doc_id, routing, source in encoded_documents(parse_traces(data.SerializeToString())):
            opensearch.index(index=alias, id=doc_id, routing=routing, body=source)
        opensearch.indices.refresh(index=alias)
        assert count(opensearch, alias, {"term": {"span.attributes.digest": "+/8="}}) == 1
        assert count(opensearch, alias, {"term": {"resource.attributes.host@id": "AQ=="}}) == 1
        [hit] = opensearch.search(
            index=alias, body={"query": {"term": {"span.attributes.digest": "+/8="}}}
        )["hits"]["hits"]
        source = hit["_source"]
        assert source["binaryAttributes"] == [
            "resource.attributes.host@id",
            "span.attributes.digest",
        ]
        assert source["events"][0]["binaryAttributes"] == ["signature"]
        assert source["links"][0]["binaryAttributes"] == ["token"]
        mapping = next(iter(opensearch.indices.get_mapping(index=alias).values()))["mappings"]
        assert mapping["_meta"]["spansieve_schema"] >= 6
        marker = {"type": "keyword", "index": False, "doc_values": False}
        assert mapping["properties"]["binaryAttributes"] == marker
        assert mapping["properties"]["events"]["properties"]["binaryAttributes"] == marker
    finally:
        drop_store(opensearch, settings)


def test_worker_lifecycle_rolls_over_and_deletes_expired_indices(
    stack: Settings, opensearch: OpenSearch
):
    retention = 60.0
    settings = private_store(
        stack,
        store_lifecycle="worker",
        store_rollover_age="1s",
        store_retention_days=retention / 86_400,
    )
    alias = store_names(settings).span_alias
    try:
        ensure_store(opensearch, settings)
        opensearch.index(index=alias, body={"traceId": "a"}, params={"require_alias": "true"})
        report = run_worker_lifecycle(opensearch, settings, alias)
        assert report.rolled_over_to is None  # younger than max_age: nothing to do
        time.sleep(1.2)
        report = run_worker_lifecycle(opensearch, settings, alias)
        assert report.rolled_over_to == f"{alias}-000002"
        assert report.deleted == []  # rolled over just now: its spans are fresh
        assert write_index(opensearch, alias) == f"{alias}-000002"

        later = time.time() + retention + 1
        report = run_worker_lifecycle(opensearch, settings, alias, now=later)
        assert report.deleted == [f"{alias}-000001"]
        assert not opensearch.indices.exists(index=f"{alias}-000001")
        # The write index is never deleted, however old.
        remaining = set(opensearch.indices.get_alias(name=alias))
        assert write_index(opensearch, alias) in remaining
    finally:
        drop_store(opensearch, settings)
