"""Query benchmark: how long the query server takes to answer, next to the bare OpenSearch
requests it makes for the same answer (the ceiling), measured in the same run.

A private store holds ``traces`` kept traces of the reference workload (the sink bench's
documents, indexed with raw ``_bulk``, left unmerged as a hot index is). A real
``spansieve query`` process serves it; requests go one at a time (latency, not load):

* **trace by id**: ``GET /api/traces/{id}`` for random ids; bare: the routed ``terms``
  search on ``traceId`` the server sends.
* **search**: ``GET /api/traces?service=S&limit=20``; bare: its two requests, the
  aggregation that picks the 20 most recent trace ids and the routed fetch of their spans.
* **search by tag and trace duration**: the same with ``tag=`` and ``minDuration=``.

The difference is the server's own cost: HTTP, parsing, shaping Jaeger JSON, clock-skew
correction. Call ``bench_query(Settings(), folder)`` on a running local stack.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from opensearchpy import OpenSearch

from pipeline.bench.sink import encode_all, kept_trace_messages, raw_bulk
from pipeline.bench.stats import quantile
from pipeline.bench.workload import SERVICES
from pipeline.config.settings import Settings
from pipeline.local.run import free_port, start_component, stop_components, wait_until
from pipeline.query.params import TraceQuery
from pipeline.query.search import collapsed_trace_ids, trace_search_body, trace_spans_body
from pipeline.sink.bulk import bulk_body, chunked
from pipeline.store.indices import store_names
from pipeline.store.setup import ensure_store

SEARCH_LIMIT = 20
TAG = ("http.response.status_code", "200")
MIN_DURATION_MS = 5


def _timed(call: Callable[[], Any], count: int) -> list[float]:
    """Milliseconds of ``count`` calls, one after another, after two to warm up."""
    for _ in range(2):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def _summary(ours: list[float], bare: list[float]) -> dict[str, float]:
    p50, bare_p50 = quantile(ours, 0.50), quantile(bare, 0.50)
    return {
        "p50_ms": p50,
        "p99_ms": quantile(ours, 0.99),
        "bare_p50_ms": bare_p50,
        "bare_p99_ms": quantile(bare, 0.99),
        "ratio_p50": p50 / bare_p50 if bare_p50 else float("nan"),
    }


class _Bare:
    """The OpenSearch requests the query server sends, sent directly."""

    def __init__(self, client: OpenSearch, alias: str) -> None:
        self.client = client
        self.alias = alias

    def spans(self, trace_ids: list[str]) -> list[dict]:
        body = {**trace_spans_body(trace_ids), "size": 5_000}
        answer = self.client.search(index=self.alias, body=body, routing=",".join(trace_ids))
        return answer["hits"]["hits"]

    def search(self, query: TraceQuery) -> list[dict]:
        answer = self.client.search(index=self.alias, body=trace_search_body(query))
        ids = collapsed_trace_ids(answer)
        return self.spans(ids) if ids else []


def bench_query(
    settings: Settings, folder: Path, traces: int = 10_000, requests: int = 200, seed: int = 5
) -> dict[str, Any]:
    """Latency of lookups and searches, ours and bare; see the module doc."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}-q-"
    ours = settings.model_copy(
        update={
            "store_index_prefix": prefix,
            "store_lifecycle": "worker",
            "query_port": free_port(),
            "state_dir": folder,
        }
    )
    alias = store_names(ours).span_alias
    client = OpenSearch(hosts=[settings.opensearch_url], timeout=120)
    docs = encode_all(kept_trace_messages(traces, seed))
    trace_ids = sorted({doc.routing for doc in docs})
    bodies = [bulk_body(chunk) for chunk in chunked(docs, settings.store_bulk_bytes)]
    spans = len(docs)
    del docs
    rng = random.Random(seed)
    child = None
    try:
        ensure_store(client, ours)
        asyncio.run(raw_bulk(settings.opensearch_url, alias, bodies, 2))
        client.indices.refresh(index=alias)
        child = start_component("query", ours)
        base = f"http://127.0.0.1:{ours.query_port}"
        if not wait_until(lambda: _healthy(f"{base}/healthz"), "query server starting", 60):
            raise RuntimeError(f"query server did not start; see {folder}/logs/query.log")
        bare = _Bare(client, alias)
        with httpx.Client(base_url=base, timeout=60) as http:

            def lookup() -> None:
                http.get(f"/api/traces/{rng.choice(trace_ids)}").raise_for_status()

            def bare_lookup() -> None:
                bare.spans([rng.choice(trace_ids)])

            def search(**extra: str) -> Callable[[], None]:
                def call() -> None:
                    params = {"service": rng.choice(SERVICES), "limit": SEARCH_LIMIT, **extra}
                    http.get("/api/traces", params=params).raise_for_status()

                return call

            def bare_search(**extra: Any) -> Callable[[], None]:
                def call() -> None:
                    bare.search(
                        TraceQuery(service=rng.choice(SERVICES), limit=SEARCH_LIMIT, **extra)
                    )

                return call

            tagged = {"tag": f"{TAG[0]}:{TAG[1]}", "minDuration": f"{MIN_DURATION_MS}ms"}
            tagged_bare = {"tags": (TAG,), "min_duration": MIN_DURATION_MS * 1_000_000}
            results = {
                "trace_by_id": _summary(_timed(lookup, requests), _timed(bare_lookup, requests)),
                "search": _summary(_timed(search(), requests), _timed(bare_search(), requests)),
                "search_tag_duration": _summary(
                    _timed(search(**tagged), requests), _timed(bare_search(**tagged_bare), requests)
                ),
            }
    finally:
        if child is not None:
            stop_components([child])
        client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
        client.indices.delete_index_template(name=f"{prefix}*", ignore=404)
    return {
        "workload": {"traces": len(trace_ids), "spans": spans, "requests": requests},
        "store_prefix": prefix,
        "search_limit": SEARCH_LIMIT,
        **results,
    }


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
