"""The service-map store against the real stack: a sink worker, Kafka and OpenSearch.

A sink-only worker reads ``<prefix>-service-map`` (written here the way the sampler writes
it: one JSON array of Data Prepper service-map documents per closed window and partition,
keyed partition + window start, the documents built by ``pipeline.metrics.service_map``)
and indexes them into a private ``<store prefix>otel-v1-apm-service-map``. Then the query
OpenSearch Dashboards' Trace Analytics sends to draw its service map runs against that
index, and its answer is read the way Dashboards reads it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from opensearchpy import OpenSearch

from pipeline.bench.metrics_scrape import scrape
from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.run import wait_until
from pipeline.metrics.service_map import IsolatedService, ServiceMapRelationship, documents
from pipeline.sampler.span_metrics import window_key
from pipeline.store.indices import store_names
from tests.integration.cleanup import drop_indices, drop_topics
from tests.integration.sampling_helpers import running_worker

pytestmark = pytest.mark.integration

INDEXED = "spansieve_service_map_documents_indexed_total"
S = 1_000_000_000
WINDOW_START = 1_700_000_010 * S
CLIENT, SERVER = "SPAN_KIND_CLIENT", "SPAN_KIND_SERVER"
# One trace "GET /cart": frontend -> checkout "POST /checkout" -> payments "charge"; and a
# trace of a service that calls nobody and is called by nobody.
TRACE_GROUP = "GET /cart"
RELATIONSHIPS = [
    ServiceMapRelationship("frontend", CLIENT, "checkout", SERVER, "POST /checkout", TRACE_GROUP),
    ServiceMapRelationship("checkout", CLIENT, "payments", SERVER, "charge", TRACE_GROUP),
]
ISOLATED = [IsolatedService("reports", "nightly report")]
DOCS = 5  # 2 relationships x (destination, target) + 1 isolated service

# Dashboards' defaults of the user-configurable sizes (common/constants/trace_analytics.ts:
# DEFAULT_SERVICE_MAP_MAX_NODES, DEFAULT_SERVICE_MAP_MAX_EDGES).
SERVICE_MAP_MAX_NODES = 500
SERVICE_MAP_MAX_EDGES = 1000


def _terms(field: str, size: int, **aggs: dict) -> dict:
    body: dict = {"terms": {"field": field, "size": size}}
    if aggs:
        body["aggs"] = aggs
    return body


def dashboards_service_map_request(service_index: str) -> dict:
    """The request of ``getServiceMapQuery(mode='data_prepper')`` in
    opensearch-project/dashboards-observability,
    public/components/trace_analytics/requests/queries/services_queries.ts (main, 2025-2026;
    sizes user-configurable since #2472). Per service (``serviceName`` terms), the
    ``target.resource`` values it serves (``target_resource``), and per ``target.resource``
    and per ``destination.resource`` the ``*.serviceName`` and ``*.domain`` terms
    (``target_edges``, ``destination_edges``); no hits. ``index`` is
    ``getServiceIndices('data_prepper')`` (the uiSetting ``traceAnalyticsServiceIndices``,
    ``otel-v1-apm-service-map*,...`` by default); Dashboards' server route
    (server/routes/trace_analytics_dsl_router.ts) takes ``index`` and ``size`` out of the body
    and passes them as search parameters, as ``search`` below does."""

    def edges(side: str) -> dict:
        return _terms(
            f"{side}.resource",
            SERVICE_MAP_MAX_EDGES,
            service=_terms(f"{side}.serviceName", SERVICE_MAP_MAX_EDGES),
            domain=_terms(f"{side}.domain", SERVICE_MAP_MAX_EDGES),
        )

    return {
        "index": service_index,
        "size": 0,
        "query": {"bool": {"must": [], "filter": [], "should": [], "must_not": []}},
        "aggs": {
            "service_name": _terms(
                "serviceName",
                SERVICE_MAP_MAX_NODES,
                target_resource=_terms("target.resource", SERVICE_MAP_MAX_EDGES),
                target_edges=edges("target"),
                destination_edges=edges("destination"),
            )
        },
    }


def dashboards_service_valid_request(service_index: str, service: str) -> dict:
    """``getServiceValidQuery`` of the same file: does the service map know ``service``?"""
    return {
        "index": service_index,
        "size": 0,
        "query": {
            "bool": {
                "must": [{"term": {"serviceName": {"value": service}}}],
                "filter": [],
                "should": [],
                "must_not": [],
            }
        },
    }


def search(client: OpenSearch, request: dict) -> dict:
    """As Dashboards' DSL route sends a request: index and size as parameters, the rest as body."""
    body = dict(request)
    index, size = body.pop("index"), body.pop("size")
    return client.search(index=index, size=size, body=body)


def service_map_from(response: dict) -> dict[str, dict]:
    """What ``handleServiceMapRequest`` (services_request_handler.ts) makes of the response:
    per service its target resources, the services it calls and the services calling it.
    An edge joins a ``destination`` (resource, domain) to the service whose ``target`` has
    the same (resource, domain)."""
    buckets = response["aggregations"]["service_name"]["buckets"]
    services = {
        b["key"]: {
            "targetResources": [r["key"] for r in b["target_resource"]["buckets"]],
            "targetServices": [],
            "destServices": [],
        }
        for b in buckets
    }
    targets = {
        f"{resource['key']}:{domain['key']}": b["key"]
        for b in buckets
        for resource in b["target_edges"]["buckets"]
        for domain in resource["domain"]["buckets"]
    }
    for b in buckets:
        for resource in b["destination_edges"]["buckets"]:
            for domain in resource["domain"]["buckets"]:
                callee = targets.get(f"{resource['key']}:{domain['key']}")
                if callee is None:
                    continue
                if callee not in services[b["key"]]["targetServices"]:
                    services[b["key"]]["targetServices"].append(callee)
                if b["key"] not in services[callee]["destServices"]:
                    services[callee]["destServices"].append(b["key"])
    return services


def window_messages() -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value): the trace's documents on partition 0, the isolated
    service's on partition 1, as two sampler partitions would send them."""
    by_partition = [documents(RELATIONSHIPS), documents([], ISOLATED)]
    return [
        (p, window_key(p, WINDOW_START), orjson.dumps([doc for _id, doc in docs]))
        for p, docs in enumerate(by_partition)
    ]


def produce(settings: Settings, messages: list[tuple[int, bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    for partition, key, value in messages:
        producer.produce(settings.topic("service-map"), value, key, partition=partition)
    assert producer.flush(30) == 0


def read_dlq(settings: Settings, seconds: float = 30.0) -> list:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"rb-{uuid.uuid4().hex}"}
    )
    consumer.assign([TopicPartition(settings.topic("dlq"), p, 0) for p in range(2)])
    found: list = []
    deadline = time.monotonic() + seconds
    try:
        while not found and time.monotonic() < deadline:
            found = [m for m in consumer.consume(100, timeout=0.5) if not m.error()]
    finally:
        consumer.close()
    return found


def indexed_total(settings: Settings) -> float:
    return scrape(f"http://127.0.0.1:{settings.worker_web_port}/metrics").get(INDEXED, 0.0)


def count(client: OpenSearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


@pytest.fixture(scope="module")
def service_map_worker(
    stack: Settings, opensearch: OpenSearch, tmp_path_factory
) -> Iterator[Settings]:
    """A sink-only worker on private topics and a private service-map index."""
    tag = uuid.uuid4().hex[:8]
    settings = stack.model_copy(
        update={
            "state_dir": tmp_path_factory.mktemp("service-map-store"),
            "topic_prefix": f"sm-{tag}",
            "store_index_prefix": f"sm-{tag}-",
            "partitions": 2,
            "worker_roles": "sink",
        }
    )
    ensure_topics(settings)
    index = store_names(settings).service_map_index
    try:
        with running_worker(settings) as (worker, _child):
            assert wait_until(lambda: opensearch.indices.exists(index=index), "index", 60)
            yield worker
    finally:
        drop_indices(opensearch, settings)
        drop_topics(settings)


def test_dashboards_service_map_query_draws_our_documents_and_a_replay_overwrites(
    service_map_worker: Settings, opensearch: OpenSearch
):
    index = store_names(service_map_worker).service_map_index
    mapping = opensearch.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert mapping["serviceName"]["type"] == "keyword"  # from the template, not guessed
    assert mapping["destination"]["properties"]["domain"]["type"] == "keyword"

    sent = window_messages()
    produce(service_map_worker, sent)
    assert wait_until(lambda: count(opensearch, index) >= DOCS, "service map indexed", 60)
    assert count(opensearch, index) == DOCS
    expected = dict(documents(RELATIONSHIPS, ISOLATED))
    hits = opensearch.search(index=index, body={"size": 20})["hits"]["hits"]
    assert {h["_id"]: h["_source"] for h in hits} == expected  # _id is hashId, source as sent

    # The service map exactly as Dashboards builds it, over the index pattern it uses.
    pattern = f"{service_map_worker.store_index_prefix}otel-v1-apm-service-map*"
    response = search(opensearch, dashboards_service_map_request(pattern))
    assert response["hits"]["hits"] == []
    frontend_bucket = next(
        b for b in response["aggregations"]["service_name"]["buckets"] if b["key"] == "frontend"
    )
    (checkout_call,) = frontend_bucket["destination_edges"]["buckets"]
    assert checkout_call["key"] == "POST /checkout"
    assert [d["key"] for d in checkout_call["domain"]["buckets"]] == ["checkout"]
    assert service_map_from(response) == {
        "frontend": {"targetResources": [], "targetServices": ["checkout"], "destServices": []},
        "checkout": {
            "targetResources": ["POST /checkout"],
            "targetServices": ["payments"],
            "destServices": ["frontend"],
        },
        "payments": {
            "targetResources": ["charge"],
            "targetServices": [],
            "destServices": ["checkout"],
        },
        "reports": {"targetResources": [], "targetServices": [], "destServices": []},
    }
    for service, known in (("checkout", True), ("reports", True), ("nobody", False)):
        found = search(opensearch, dashboards_service_valid_request(pattern, service))
        assert (found["hits"]["total"]["value"] > 0) is known

    # The same window again (a redelivery, a replay): overwritten, nothing added.
    before = indexed_total(service_map_worker)
    assert before >= DOCS
    produce(service_map_worker, sent)
    assert wait_until(lambda: indexed_total(service_map_worker) >= before + DOCS, "re-indexed", 60)
    assert count(opensearch, index) == DOCS
    hits = opensearch.search(index=index, body={"size": 20, "version": True})["hits"]["hits"]
    assert len(hits) == DOCS and all(hit["_version"] >= 2 for hit in hits)


def test_a_malformed_message_goes_to_the_dlq_with_its_reason(
    service_map_worker: Settings, opensearch: OpenSearch
):
    index = store_names(service_map_worker).service_map_index
    before = count(opensearch, index)
    produce(service_map_worker, [(1, window_key(1, WINDOW_START), b'[{"hashId": 1}]')])
    (dead,) = read_dlq(service_map_worker)
    headers = dict(dead.headers())
    assert dead.value() == b'[{"hashId": 1}]'
    assert headers["reason"].startswith(b"malformed: element 0: hashId")
    assert headers["stage"] == b"service-map-store"
    assert headers["key"] == window_key(1, WINDOW_START)
    assert count(opensearch, index) == before
