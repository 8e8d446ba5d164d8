"""``/api/dependencies`` from the service-graph edges of the metrics store.

Edges are counted by the real ``ServiceGraph`` over client/server span pairs, sent as the
sampler sends them and turned into documents by the sink's code, in a private metrics
store next to test_query's private span store (whose spans give other links). With edges
in the window the graph answers (uncapped, every span counted, virtual nodes included);
without, or with ``source=spans``, the stored spans do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.metrics.service_graph import ServiceGraph
from pipeline.sink.metrics_documents import MetricDocument, metric_documents
from tests.integration.test_query import dependency_window, in_process, private_store
from tests.integration.test_query_spm import T0, metrics_store
from tests.unit.metrics.spans import span, trace
from tests.unit.sink.windows import MS, S, message, sid

pytestmark = pytest.mark.integration


def graph_documents() -> list[MetricDocument]:
    """Three web->api calls (one per window start), one api->postgres (a virtual node)."""
    graph = ServiceGraph()
    docs: list[MetricDocument] = []
    for n, window in enumerate((0, 0, 5)):  # windows straddle November and December
        start = T0 + window * 15 * S + n * MS
        client = span("web", "GET", "client", start, start + 5 * MS, span_id=sid(10 + n))
        server = span(
            "api",
            "GET",
            "server",
            start + MS,
            start + 4 * MS,
            span_id=sid(20 + n),
            parent=sid(10 + n),
        )
        graph.add_trace(trace(client, server), bytes([n + 1]) * 16, True)
    database = span(
        "api",
        "SELECT",
        "client",
        T0 + 2 * MS,
        T0 + 3 * MS,
        span_id=sid(30),
        attributes={"db.system": "postgresql"},
    )
    graph.add_trace(trace(database), bytes([9]) * 16, True)
    for closed in graph.close(T0 + 3_600 * S):
        key, value = message(closed, partition=0)
        docs.extend(metric_documents(value, key))
    return docs


@pytest.fixture(scope="module")
def stores(stack: Settings, opensearch: OpenSearch, tmp_path_factory) -> Iterator[Settings]:
    with private_store(stack, opensearch, tmp_path_factory.mktemp("graph")) as spans:
        prefix = spans.store_index_prefix  # the metrics beside the spans, one prefix
        with metrics_store(spans, opensearch, graph_documents(), prefix) as settings:
            yield settings


def links(reply) -> set[tuple[str, str, int]]:
    assert reply.status_code == 200, reply.text
    return {(d["parent"], d["child"], d["callCount"]) for d in reply.json()["data"]}


def test_graph_edges_answer_when_the_window_has_them(stores: Settings):
    graph_window = f"endTs={T0 // 1_000_000 + 3_600_000}&lookback=3600000"
    spans_window = "&".join(f"{k}={v}" for k, v in dependency_window().items())
    auto, forced_spans, spans_only, bad = in_process(
        stores,
        f"/api/dependencies?{graph_window}",
        f"/api/dependencies?{graph_window}&source=spans",
        f"/api/dependencies?{spans_window}",
        "/api/dependencies?source=both",
    )
    assert links(auto) == {("web", "api", 3), ("api", "postgresql", 1)}
    assert auto.headers["X-Spansieve-Dependencies-Source"] == "graph"
    assert links(forced_spans) == set()  # no stored span in that window
    assert forced_spans.headers["X-Spansieve-Dependencies-Source"] == "spans"
    # No edges in test_query's window: the stored spans answer, as before.
    assert ("frontend", "cart", 2) in links(spans_only)
    assert spans_only.headers["X-Spansieve-Dependencies-Source"] == "spans"
    assert bad.status_code == 400
    assert "source" in bad.json()["errors"][0]["msg"]
