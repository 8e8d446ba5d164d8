"""The span-metrics store against the real stack: a sink worker, Kafka and OpenSearch.

A sink-only worker reads ``<prefix>-red-metrics`` and ``<prefix>-service-graph`` (written
here the way the sampler writes them: one OTLP request per closed window and partition,
keyed partition + window start, built by the real aggregators and encoder) and indexes
one document per series and window into private monthly indices
(``<store prefix>spansieve-metrics-YYYY.MM``), so nothing here touches the shared store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from opensearchpy import OpenSearch

from pipeline.bench.metrics_scrape import scrape
from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.run import wait_until
from pipeline.sink.metrics_documents import metric_documents, parse_key
from pipeline.store.metrics_indices import (
    metrics_index,
    metrics_index_base,
    metrics_template_name,
)
from pipeline.store.metrics_lifecycle import month_end, run_metrics_lifecycle
from pipeline.store.setup import ensure_store
from tests.integration.cleanup import drop_indices, drop_topics
from tests.integration.sampling_helpers import running_worker
from tests.unit.sink.windows import WINDOW, S, graph_window, message, red_window

pytestmark = pytest.mark.integration

INDEXED = "spansieve_metrics_store_documents_indexed_total"
PARTITION = 1
RED_DOCS = 6  # 3 series x (calls, duration)
GRAPH_DOCS = 7  # 2 edges x (total, server, client) + 1 failed


def private(base: Settings, **overrides) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(update={"store_index_prefix": f"mt-{tag}-", **overrides})


def recent_window_start() -> int:
    """A 15 s window start a few minutes ago (well inside the retention)."""
    start = int(time.time() - 300) * S
    return start - start % WINDOW


def produce(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    for topic, key, value in messages:
        partition, _start = parse_key(key)
        producer.produce(settings.topic(topic), value, key, partition=partition)
    assert producer.flush(30) == 0


def indexed_total(settings: Settings) -> float:
    return scrape(f"http://127.0.0.1:{settings.worker_web_port}/metrics").get(INDEXED, 0.0)


def count(client: OpenSearch, index: str, query: dict | None = None) -> int:
    body = {"query": query or {"match_all": {}}}
    return int(client.count(index=index, body=body, ignore_unavailable=True)["count"])


@pytest.fixture(scope="module")
def metrics_worker(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    """A sink-only worker on private topics and a private metrics index prefix."""
    settings = private(
        stack,
        state_dir=tmp_path_factory.mktemp("metrics-store"),
        topic_prefix=f"mt-{uuid.uuid4().hex[:8]}",
        partitions=2,
        worker_roles="sink",
        store_lifecycle_interval=1.0,
    )
    ensure_topics(settings)
    try:
        with running_worker(settings) as (worker, _child):
            template = metrics_template_name(settings)
            assert wait_until(
                lambda: opensearch.indices.exists_index_template(name=template), "template", 60
            )
            yield worker
    finally:
        drop_indices(opensearch, settings)
        drop_topics(settings)


def test_windows_are_stored_exactly_and_a_replay_overwrites(
    metrics_worker: Settings, opensearch: OpenSearch
):
    start = recent_window_start()
    red_key, red_value = message(red_window(start), partition=PARTITION)
    graph_key, graph_value = message(graph_window(start), partition=PARTITION)
    assert len(metric_documents(red_value, red_key)) == RED_DOCS
    assert len(metric_documents(graph_value, graph_key)) == GRAPH_DOCS
    sent = [("red-metrics", red_key, red_value), ("service-graph", graph_key, graph_value)]
    index = metrics_index(metrics_index_base(metrics_worker), start)
    expected = RED_DOCS + GRAPH_DOCS

    produce(metrics_worker, sent)
    assert wait_until(lambda: count(opensearch, index) >= expected, "metrics indexed", 60)
    opensearch.indices.refresh(index=index)
    assert count(opensearch, index) == expected
    mapping = opensearch.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert mapping["@timestamp"]["type"] == "date"
    assert mapping["attributes"]["properties"]["http@method"]["type"] == "keyword"

    # RED: calls and errors per service, exact.
    red = opensearch.search(
        index=index,
        body={
            "size": 0,
            "query": {"term": {"metric": "traces.span.metrics.calls"}},
            "aggs": {
                "services": {
                    "terms": {"field": "service.name"},
                    "aggs": {
                        "calls": {"sum": {"field": "calls"}},
                        "errors": {"sum": {"field": "errors"}},
                    },
                }
            },
        },
    )["aggregations"]["services"]["buckets"]
    per_service = {b["key"]: (b["calls"]["value"], b["errors"]["value"]) for b in red}
    assert per_service == {"api": (3.0, 1.0), "db": (1.0, 0.0)}

    # The "calls per service per hour" query of the report.
    hourly = opensearch.search(
        index=f"{metrics_index_base(metrics_worker)}-*",
        body={
            "size": 0,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"metric": "traces.span.metrics.calls"}},
                        {"range": {"@timestamp": {"gte": "now-1d"}}},
                    ]
                }
            },
            "aggs": {
                "per_service": {
                    "terms": {"field": "service.name", "size": 100},
                    "aggs": {
                        "per_hour": {
                            "date_histogram": {"field": "@timestamp", "fixed_interval": "1h"},
                            "aggs": {"calls": {"sum": {"field": "calls"}}},
                        }
                    },
                }
            },
        },
    )["aggregations"]["per_service"]["buckets"]
    per_hour = {
        b["key"]: sum(h["calls"]["value"] for h in b["per_hour"]["buckets"]) for b in hourly
    }
    assert per_hour == {"api": 3.0, "db": 1.0}

    # A histogram document, whole.
    (duration,) = opensearch.search(
        index=index,
        body={
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"metric": "traces.span.metrics.duration"}},
                        {"term": {"service.name": "api"}},
                        {"term": {"attributes.http@method": "GET"}},
                    ]
                }
            }
        },
    )["hits"]["hits"]
    source = duration["_source"]
    assert (source["count"], source["sum"], sum(source["bucket_counts"])) == (2, 10.0, 2)
    assert source["status.code"] == "STATUS_CODE_UNSET"
    assert source["partition"] == PARTITION
    assert source["window_seconds"] == 15.0

    # Service graph: requests and failures per edge, exact.
    edges = opensearch.search(
        index=index,
        body={"size": 20, "query": {"term": {"kind": "service_graph"}}},
    )["hits"]["hits"]
    values = {
        (h["_source"]["metric"], h["_source"]["client"], h["_source"]["server"]): h["_source"]
        for h in edges
    }
    assert len(values) == GRAPH_DOCS
    assert values[("traces_service_graph_request_total", "frontend", "backend")]["value"] == 2
    assert (
        values[("traces_service_graph_request_failed_total", "frontend", "backend")]["value"] == 1
    )
    db_edge = values[("traces_service_graph_request_total", "backend", "orders")]
    assert (db_edge["value"], db_edge["connection_type"]) == (1, "database")
    client = values[("traces_service_graph_request_client_seconds", "frontend", "backend")]
    assert client["count"] == 2 and client["sum"] == pytest.approx(3.03)

    # The same messages again (a replay): every document is overwritten, none added.
    before = indexed_total(metrics_worker)
    assert before >= expected
    produce(metrics_worker, sent)
    assert wait_until(lambda: indexed_total(metrics_worker) >= before + expected, "re-indexed", 60)
    opensearch.indices.refresh(index=index)
    assert count(opensearch, index) == expected
    hits = opensearch.search(index=index, body={"size": 50, "version": True})["hits"]["hits"]
    assert len(hits) == expected
    assert all(hit["_version"] >= 2 for hit in hits)
    again = per_service_calls(opensearch, index)
    assert again == {"api": 3.0, "db": 1.0}


def test_the_workers_leader_deletes_expired_months(
    metrics_worker: Settings, opensearch: OpenSearch
):
    """The leader timer of the sink role runs the retention pass (no ISM on this node)."""
    base = metrics_index_base(metrics_worker)
    old, odd = f"{base}-2019.07", f"{base}-not-a-month"
    for index in (old, odd):
        opensearch.indices.create(index=index)
    assert wait_until(lambda: not opensearch.indices.exists(index=old), "retention pass", 30)
    assert opensearch.indices.exists(index=odd)
    opensearch.indices.delete(index=odd)


def per_service_calls(client: OpenSearch, index: str) -> dict[str, float]:
    buckets = client.search(
        index=index,
        body={
            "size": 0,
            "query": {"term": {"metric": "traces.span.metrics.calls"}},
            "aggs": {
                "s": {
                    "terms": {"field": "service.name"},
                    "aggs": {"c": {"sum": {"field": "calls"}}},
                }
            },
        },
    )["aggregations"]["s"]["buckets"]
    return {b["key"]: b["c"]["value"] for b in buckets}


def test_store_init_installs_the_template_and_retention_deletes_old_months(
    stack: Settings, opensearch: OpenSearch
):
    settings = private(stack, store_lifecycle="worker")
    base = metrics_index_base(settings)
    now = time.time()
    current = metrics_index(base, int(now) * S)
    old = f"{base}-2020.01"
    try:
        ensure_store(opensearch, settings)  # what `spansieve store init` and the sink run
        assert opensearch.indices.exists_index_template(name=metrics_template_name(settings))
        for index in (old, current):
            opensearch.indices.create(index=index)
        mapping = opensearch.indices.get_mapping(index=old)[old]["mappings"]
        assert mapping["properties"]["@timestamp"]["type"] == "date"  # from the template
        unrelated = f"{base}-kept-by-hand"
        opensearch.indices.create(index=unrelated)

        deleted = run_metrics_lifecycle(opensearch, settings)
        assert deleted == [old]  # 2020 is past 90 days; this month and odd names stay
        assert not opensearch.indices.exists(index=old)
        assert opensearch.indices.exists(index=current)
        assert opensearch.indices.exists(index=unrelated)
        assert run_metrics_lifecycle(opensearch, settings) == []  # nothing left to do

        # This month's index goes once its last possible window is 90 days old, not before.
        year, month = (int(part) for part in current.rsplit("-", 1)[1].split("."))
        limit = month_end(year, month) + settings.metrics_retention_days * 86_400
        assert run_metrics_lifecycle(opensearch, settings, now=limit) == []
        assert run_metrics_lifecycle(opensearch, settings, now=limit + 1) == [current]
        assert not opensearch.indices.exists(index=current)
        assert opensearch.indices.exists(index=unrelated)
    finally:
        drop_indices(opensearch, settings)
