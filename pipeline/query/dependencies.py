"""Service dependencies of a window, from one of two sources.

* **Service-graph edges** (``graph``): when the workers count span metrics, the metrics
  store holds, per window, the client->server (and producer->consumer) edges of *every*
  span, kept or not, with virtual nodes for uninstrumented peers (databases, queues,
  ``peer.service``). Summing their ``traces_service_graph_request_total`` points over the
  asked window is one aggregation, exact and never capped.
* **Stored spans** (``spans``): otherwise, each kept span joined to its parent in its
  trace, at request time (Jaeger does this in a separate batch job; the span reader caps
  how many spans are read). A call from service A to service B is a span of B whose
  parent span is A's; a span whose parent is in its own service is a call of the service
  to itself, counted as Jaeger counts it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from opensearchpy import AsyncOpenSearch

from pipeline.store.fields import nanos_to_iso

JSON = dict[str, Any]

# The metrics store's spelling of a service-graph request count (pipeline.metrics owns
# the name; a unit test checks the two agree).
GRAPH_KIND = "service_graph"
GRAPH_REQUESTS = "traces_service_graph_request_total"
GRAPH_PAGE = 5_000  # edges per composite page


def service_calls(spans: Iterable[JSON]) -> list[JSON]:
    """``[{parent, child, callCount}]`` over spans with ``traceId``, ``spanId``,
    ``parentSpanId`` and ``serviceName``; most calls first, then by name.

    A parent outside the given spans (outside the window, or not kept) links nothing.
    """
    services: dict[str, dict[str, str]] = defaultdict(dict)  # trace -> span -> service
    children: list[tuple[str, str, str]] = []  # (trace, parent span, child service)
    for span in spans:
        trace = span["traceId"]
        services[trace][span["spanId"]] = span.get("serviceName", "")
        if span.get("parentSpanId"):
            children.append((trace, span["parentSpanId"], span.get("serviceName", "")))
    calls: Counter[tuple[str, str]] = Counter()
    for trace, parent_span, child in children:
        parent = services[trace].get(parent_span)
        if parent is not None:
            calls[parent, child] += 1
    return _ordered_links(calls)


def _ordered_links(calls: Counter[tuple[str, str]]) -> list[JSON]:
    ordered = sorted(calls.items(), key=lambda item: (-item[1], item[0]))
    return [
        {"parent": parent, "child": child, "callCount": count} for (parent, child), count in ordered
    ]


def graph_edges_body(start: int, end: int, after: JSON | None = None) -> JSON:
    """Request counts per (client, server) of the service-graph windows that started in
    [start, end] (nanoseconds), one composite page."""
    composite: JSON = {
        "size": GRAPH_PAGE,
        "sources": [
            {"client": {"terms": {"field": "client"}}},
            {"server": {"terms": {"field": "server"}}},
        ],
    }
    if after is not None:
        composite["after"] = after
    window = {"gte": nanos_to_iso(start), "lte": nanos_to_iso(end)}
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"kind": GRAPH_KIND}},
                    {"term": {"metric": GRAPH_REQUESTS}},
                    {"range": {"@timestamp": window}},
                ]
            }
        },
        "aggs": {"edges": {"composite": composite, "aggs": {"calls": {"sum": {"field": "value"}}}}},
    }


async def graph_links(client: AsyncOpenSearch, index: str, start: int, end: int) -> list[JSON]:
    """``[{parent, child, callCount}]`` from the service-graph edges of the window; empty
    when the metrics store has none (span metrics off, or nothing in the window)."""
    calls: Counter[tuple[str, str]] = Counter()
    after = None
    while True:
        answer = await client.search(
            index=index,
            body=graph_edges_body(start, end, after),
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        edges = (answer.get("aggregations") or {}).get("edges") or {}
        page = edges.get("buckets", [])
        for bucket in page:
            key = bucket["key"]
            calls[key["client"], key["server"]] += round(bucket["calls"]["value"])
        after = edges.get("after_key")
        if len(page) < GRAPH_PAGE or after is None:
            return _ordered_links(+calls)
