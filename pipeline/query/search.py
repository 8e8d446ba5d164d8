"""OpenSearch requests of the query API: the bodies (pure, unit-tested) and the calls.

Everything reads through the span alias, so it covers every rollover index. Two rules
keep requests cheap at scale:

* **Find ids, then fetch by routing.** A trace search collapses matching spans on
  ``traceId`` (most recent first) and then fetches whole traces with a ``terms`` query
  whose ``routing`` is their ids: spans are routed by trace id, so that request only
  touches the shards that hold them, not every shard of a week of indices.
* **Page with ``search_after`` on a unique key.** ``(traceId, _index, _seq_no)`` is
  unique (a trace's spans share a shard in each index, and sequence numbers are unique
  per shard), so pages neither skip nor repeat documents, and the order keeps a trace's
  spans together; no result window limit applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import RequestError

from pipeline.query.params import SPAN_KINDS, STATUS_CODES, ParamError, TraceQuery
from pipeline.store.fields import RESOURCE_ATTRIBUTES, SPAN_ATTRIBUTES, STATUS_ERROR, nanos_to_iso

JSON = dict[str, Any]

PAGE_SIZE = 5_000  # documents per page (OpenSearch's result window is 10 000)
MAX_BUCKETS = 10_000  # services or operations listed at most
# Trace ids per routed request: they travel in the URL (?routing=id,id,...) and
# OpenSearch refuses request lines over 4 KB (http.max_initial_line_length).
ROUTING_BATCH = 64
FETCH_CONCURRENCY = 4
UNIQUE_SORT = [{"traceId": "asc"}, {"_index": "asc"}, {"_seq_no": "asc"}]
# A missing alias (nothing stored yet) is an empty result, not an error.
SEARCH_OPTIONS = {"ignore_unavailable": True, "allow_no_indices": True}
# Trace-level copies on every span: the Jaeger view does not show them.
TRACE_SOURCE = {"excludes": ["traceFields", "traceGroup", "traceGroupFields"]}
DEPENDENCY_FIELDS = ["traceId", "spanId", "parentSpanId", "serviceName"]


# --- bodies -----------------------------------------------------------------------------


def services_body() -> JSON:
    return {
        "size": 0,
        "aggs": {"services": {"terms": {"field": "serviceName", "size": MAX_BUCKETS}}},
    }


def operations_body(service: str, kind: str | None = None) -> JSON:
    """Span names of one service, each with the kinds it occurs with."""
    filters: list[JSON] = [{"term": {"serviceName": service}}]
    if kind is not None:
        filters.append({"term": {"kind": kind}})
    return {
        "size": 0,
        "query": {"bool": {"filter": filters}},
        "aggs": {
            "names": {
                "terms": {"field": "name", "size": MAX_BUCKETS},
                "aggs": {"kinds": {"terms": {"field": "kind", "size": 10}}},
            }
        },
    }


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _either_attribute(key: str, value: str) -> list[JSON]:
    """Clauses matching a span attribute or a resource attribute ``key`` = ``value``.

    Attributes are keywords holding the value's JSON text (``200``, ``true``); numeric
    attributes also have a ``.num`` double, so ``1`` finds a stored ``1.0`` too.
    """
    field = key.replace(".", "@")
    clauses: list[JSON] = []
    number = _number(value)
    for prefix in (SPAN_ATTRIBUTES, RESOURCE_ATTRIBUTES):
        clauses.append({"term": {prefix + field: value}})
        if number is not None:
            clauses.append({"term": {f"{prefix}{field}.num": number}})
    return clauses


def _any_of(clauses: list[JSON]) -> JSON:
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


#: the instrumentation scope's tags, under both names Jaeger has used
SCOPE_TAGS = frozenset(
    f"otel.{prefix}.{field}" for prefix in ("scope", "library") for field in ("name", "version")
)


def tag_clause(key: str, value: str) -> JSON:
    """The filter for one Jaeger tag: an attribute of the span or of its resource, or,
    for the tags Jaeger derives from OTLP fields, that field."""
    if key == "error":
        failed = {"term": {"status.code": STATUS_ERROR}}
        if value.lower() == "true":
            return _any_of([failed, *_either_attribute(key, "true")])
        if value.lower() == "false":
            return {"bool": {"must_not": [failed]}}
    if key == "span.kind":
        return {"term": {"kind": SPAN_KINDS[value.strip().lower()]}}
    if key == "otel.status_code":
        return {"term": {"status.code": STATUS_CODES[value.upper()]}}
    if key == "otel.status_description":
        return {"term": {"status.message": value}}
    if key in SCOPE_TAGS:
        return {"term": {f"instrumentationScope.{key.rsplit('.', 1)[1]}": value}}
    return _any_of(_either_attribute(key, value))


def trace_search_body(query: TraceQuery) -> JSON:
    """Matching spans, one per trace: the ``limit`` traces whose latest matching span
    started last. Service, operation, tags and the span-level ``where`` comparisons
    filter the same span; durations filter that span's own (``durationInNanos``) or, by
    default without an operation, the whole trace's (``traceFields.durationInNanos``, on
    every span).

    Field collapsing on ``traceId`` keeps the newest matching span of each trace while
    the search walks the hits by start time. A ``terms`` aggregation on ``traceId``
    (what Jaeger's Elasticsearch reader does) would need global ordinals over every trace
    id of the index, rebuilt after each refresh of a live index: hundreds of millions of
    ids a day at the design scale.
    """
    filters: list[JSON] = []
    if query.service:
        filters.append({"term": {"serviceName": query.service}})
    if query.operation:
        filters.append({"term": {"name": query.operation}})
    filters.extend(tag_clause(key, value) for key, value in query.tags)
    # ``where``: span-level comparisons on this same span, trace-level ones on the trace
    # fields every span carries; each clause knows its own filter.
    filters.extend(condition.clause() for condition in query.conditions)
    if query.start is not None or query.end is not None:
        window: JSON = {}
        if query.start is not None:
            window["gte"] = nanos_to_iso(query.start)
        if query.end is not None:
            window["lte"] = nanos_to_iso(query.end)
        filters.append({"range": {"startTime": window}})
    if query.min_duration is not None or query.max_duration is not None:
        duration: JSON = {}
        if query.min_duration is not None:
            duration["gte"] = query.min_duration
        if query.max_duration is not None:
            duration["lte"] = query.max_duration
        field = "durationInNanos" if query.span_durations else "traceFields.durationInNanos"
        filters.append({"range": {field: duration}})
    return {
        "size": query.limit,
        "track_total_hits": False,
        "_source": False,
        "query": {"bool": {"filter": filters}},
        "sort": [{"startTime": "desc"}],
        "collapse": {"field": "traceId"},
    }


def refused_regex(query: TraceQuery, exc: RequestError) -> ParamError | None:
    """A ``where`` regex OpenSearch cannot read, as the client's mistake (HTTP 400 with
    Lucene's reason) rather than a failed request (502). OpenSearch is the judge of its
    own regex syntax, so it is not second-guessed before the search."""
    regexes = [str(regex) for condition in query.conditions for regex in condition.regexes()]
    info = exc.info if isinstance(exc.info, dict) else {}
    causes = (info.get("error") or {}).get("root_cause") or [{}]
    if not regexes or causes[0].get("type") != "query_shard_exception":
        return None
    reason = str(causes[0].get("reason", exc.error)).removeprefix("failed to create query: ")
    which = f"the regex of {regexes[0]}" if len(regexes) == 1 else f"one of {' '.join(regexes)}"
    return ParamError("where", f"OpenSearch cannot read {which}: {reason}")


def collapsed_trace_ids(answer: JSON) -> list[str]:
    """Trace ids of a ``trace_search_body`` answer, in its order."""
    return [hit["fields"]["traceId"][0] for hit in answer["hits"]["hits"]]


def trace_spans_body(trace_ids: Sequence[str]) -> JSON:
    """Every span of these traces (send with ``routing`` = the same ids)."""
    return {
        "query": {"terms": {"traceId": list(trace_ids)}},
        "_source": TRACE_SOURCE,
        "sort": UNIQUE_SORT,
        "track_total_hits": False,
    }


def window_spans_body(start: int, end: int) -> JSON:
    """Ids and services of the spans that started in [start, end] (nanoseconds)."""
    return {
        "query": {"range": {"startTime": {"gte": nanos_to_iso(start), "lte": nanos_to_iso(end)}}},
        "_source": {"includes": DEPENDENCY_FIELDS},
        "sort": UNIQUE_SORT,
        "track_total_hits": False,
    }


def routing(trace_ids: Sequence[str]) -> str:
    return ",".join(trace_ids)


def batches(trace_ids: Sequence[str], size: int = ROUTING_BATCH) -> list[Sequence[str]]:
    return [trace_ids[i : i + size] for i in range(0, len(trace_ids), size)]


# --- calls ------------------------------------------------------------------------------


class SpanReader:
    """Reads spans through the span alias; OpenSearch errors propagate to the caller."""

    def __init__(self, client: AsyncOpenSearch, alias: str, page_size: int = PAGE_SIZE) -> None:
        self.client = client
        self.alias = alias
        self.page_size = page_size

    async def reachable(self) -> bool:
        return bool(await self.client.ping())

    async def _search(self, body: JSON, trace_ids: Sequence[str] = ()) -> JSON:
        return await self.client.search(
            index=self.alias,
            body=body,
            routing=routing(trace_ids) if trace_ids else None,
            **SEARCH_OPTIONS,
        )

    async def _pages(
        self, body: JSON, trace_ids: Sequence[str] = (), limit: int | None = None
    ) -> AsyncIterator[list[JSON]]:
        """Pages of hits in ``UNIQUE_SORT`` order; at most ``limit`` hits in all."""
        after = None
        remaining = limit
        while remaining is None or remaining > 0:
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            page = {**body, "size": size}
            if after is not None:
                page["search_after"] = after
            hits = (await self._search(page, trace_ids))["hits"]["hits"]
            if hits:
                yield hits
            if len(hits) < size:
                return
            after = hits[-1]["sort"]
            if remaining is not None:
                remaining -= len(hits)

    async def services(self) -> list[str]:
        answer = await self._search(services_body())
        return sorted(b["key"] for b in _buckets(answer, "services"))

    async def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        """(span name, ``SPAN_KIND_*``) pairs of one service, sorted."""
        answer = await self._search(operations_body(service, kind))
        return sorted(
            (name["key"], found["key"])
            for name in _buckets(answer, "names")
            for found in name["kinds"]["buckets"]
        )

    async def find_trace_ids(self, query: TraceQuery) -> list[str]:
        """Ids of the matching traces, most recent first."""
        try:
            return collapsed_trace_ids(await self._search(trace_search_body(query)))
        except RequestError as exc:
            refused = refused_regex(query, exc)
            if refused is None:
                raise
            raise refused from None

    async def trace_documents(self, trace_ids: Sequence[str]) -> dict[str, list[JSON]]:
        """The span documents of each trace (absent ids have none), fetched in routed
        batches a few at a time."""
        found: dict[str, list[JSON]] = {}
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(batch: Sequence[str]) -> None:
            async with gate:
                async for hits in self._pages(trace_spans_body(batch), batch):
                    for hit in hits:
                        source = hit["_source"]
                        found.setdefault(source["traceId"], []).append(source)

        await asyncio.gather(*(fetch(batch) for batch in batches(list(trace_ids))))
        return found

    async def window_documents(
        self, start: int, end: int, max_spans: int
    ) -> tuple[list[JSON], bool]:
        """(spans that started in the window, whether ``max_spans`` cut them short).

        Spans come in trace id order, so a cut leaves whole traces: when the span after
        the cut belongs to the last trace read, that trace is dropped (unless it is the
        only one), so no edge is lost to a missing parent at the boundary.
        """
        spans: list[JSON] = []
        async for hits in self._pages(window_spans_body(start, end), limit=max_spans + 1):
            spans.extend(hit["_source"] for hit in hits)
        if len(spans) <= max_spans:
            return spans, False
        boundary = spans.pop()["traceId"]
        if spans and spans[-1]["traceId"] == boundary:
            complete = [span for span in spans if span["traceId"] != boundary]
            spans = complete or spans
        return spans, True


def _buckets(answer: JSON, name: str) -> list[JSON]:
    """An aggregation's buckets; none when no index answered (no aggregations then)."""
    return (answer.get("aggregations") or {}).get(name, {}).get("buckets", [])
