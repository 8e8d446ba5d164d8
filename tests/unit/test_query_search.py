"""OpenSearch bodies of the query API, and how the reader pages, routes and caps.

The reader's paging is checked against a stand-in that sorts and slices like OpenSearch's
``search_after``; the real cluster is ``tests/integration/test_query.py``'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opensearchpy.exceptions import RequestError

from pipeline.query.conditions import parse_where
from pipeline.query.params import ParamError, TraceQuery
from pipeline.query.search import (
    ROUTING_BATCH,
    UNIQUE_SORT,
    SpanReader,
    batches,
    operations_body,
    refused_regex,
    services_body,
    tag_clause,
    trace_search_body,
    trace_spans_body,
    window_spans_body,
)

MS = 1_000_000


def test_services_and_operations_bodies():
    assert services_body()["aggs"]["services"]["terms"]["field"] == "serviceName"
    body = operations_body("cart", "SPAN_KIND_SERVER")
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"] == [
        {"term": {"serviceName": "cart"}},
        {"term": {"kind": "SPAN_KIND_SERVER"}},
    ]
    names = body["aggs"]["names"]
    assert names["terms"]["field"] == "name"
    assert names["aggs"]["kinds"]["terms"]["field"] == "kind"
    assert operations_body("cart")["query"]["bool"]["filter"] == [{"term": {"serviceName": "cart"}}]


def test_attribute_tags_match_span_or_resource():
    assert tag_clause("http.route", "/cart") == {
        "bool": {
            "should": [
                {"term": {"span.attributes.http@route": "/cart"}},
                {"term": {"resource.attributes.http@route": "/cart"}},
            ],
            "minimum_should_match": 1,
        }
    }


def test_numeric_tags_also_match_the_number():
    should = tag_clause("http.status_code", "500")["bool"]["should"]
    assert should == [
        {"term": {"span.attributes.http@status_code": "500"}},
        {"term": {"span.attributes.http@status_code.num": 500.0}},
        {"term": {"resource.attributes.http@status_code": "500"}},
        {"term": {"resource.attributes.http@status_code.num": 500.0}},
    ]
    assert len(tag_clause("x", "nan")["bool"]["should"]) == 2  # not a usable number


def test_special_tags_map_to_span_fields():
    error = tag_clause("error", "true")["bool"]["should"]
    assert error[0] == {"term": {"status.code": 2}}
    assert {"term": {"span.attributes.error": "true"}} in error
    assert tag_clause("error", "false") == {"bool": {"must_not": [{"term": {"status.code": 2}}]}}
    assert tag_clause("span.kind", "Client") == {"term": {"kind": "SPAN_KIND_CLIENT"}}
    assert tag_clause("otel.status_code", "ok") == {"term": {"status.code": 1}}
    assert tag_clause("otel.status_description", "boom") == {"term": {"status.message": "boom"}}
    assert tag_clause("otel.scope.name", "lib") == {"term": {"instrumentationScope.name": "lib"}}
    assert tag_clause("otel.scope.version", "2") == {"term": {"instrumentationScope.version": "2"}}
    assert tag_clause("otel.library.name", "lib") == tag_clause("otel.scope.name", "lib")
    assert tag_clause("otel.library.version", "2") == tag_clause("otel.scope.version", "2")


def test_trace_search_filters_one_span_and_the_whole_trace_duration():
    query = TraceQuery(
        service="cart",
        operation="cart.get",
        tags=(("span.kind", "server"),),
        start=1_700_000_000_000_000_000,
        end=1_700_000_060_000_000_000,
        min_duration=100 * MS,
        max_duration=2_000 * MS,
        limit=7,
    )
    body = trace_search_body(query)
    assert body["size"] == 7
    assert body["query"]["bool"]["filter"] == [
        {"term": {"serviceName": "cart"}},
        {"term": {"name": "cart.get"}},
        {"term": {"kind": "SPAN_KIND_SERVER"}},
        {
            "range": {
                "startTime": {
                    "gte": "2023-11-14T22:13:20.000000000Z",
                    "lte": "2023-11-14T22:14:20.000000000Z",
                }
            }
        },
        {"range": {"traceFields.durationInNanos": {"gte": 100 * MS, "lte": 2_000 * MS}}},
    ]
    # One hit per trace, its newest matching span first: no aggregation over trace ids.
    assert body["collapse"] == {"field": "traceId"}
    assert body["sort"] == [{"startTime": "desc"}]
    assert "aggs" not in body and body["_source"] is False


def test_where_conditions_filter_the_same_span_and_the_trace():
    conditions = parse_where(["db.system=redis (trace.duration>2s OR trace.error=true)"])
    body = trace_search_body(TraceQuery(service="cart", conditions=conditions))
    assert body["query"]["bool"]["filter"] == [
        {"term": {"serviceName": "cart"}},
        tag_clause("db.system", "redis"),
        {
            "bool": {
                "should": [
                    {"range": {"traceFields.durationInNanos": {"gt": 2_000 * MS}}},
                    {"term": {"traceFields.error": True}},
                ],
                "minimum_should_match": 1,
            }
        },
    ]


def test_a_regex_opensearch_cannot_read_is_a_bad_parameter():
    cause = {"type": "query_shard_exception", "reason": "failed to create query: expected ')'"}
    refused = RequestError(
        400, "search_phase_execution_exception", {"error": {"root_cause": [cause]}}
    )
    query = TraceQuery(conditions=parse_where(['name=~"(x" a=1']))
    problem = refused_regex(query, refused)
    assert isinstance(problem, ParamError)
    assert str(problem) == "where: OpenSearch cannot read the regex of name=~\"(x\": expected ')'"
    both = TraceQuery(conditions=parse_where(["(a=~x OR b!~y)"]))
    assert str(refused_regex(both, refused)).startswith(
        "where: OpenSearch cannot read one of a=~x b!~y:"
    )
    # Without a regex, or for another failure, OpenSearch's error stands (502).
    assert refused_regex(TraceQuery(conditions=parse_where(["a=1"])), refused) is None
    other = RequestError(400, "parsing_exception", {"error": {"root_cause": [{"type": "x"}]}})
    assert refused_regex(query, other) is None
    assert refused_regex(query, RequestError(400, "text", "not json")) is None


def test_open_ended_ranges():
    body = trace_search_body(TraceQuery(min_duration=5, end=9))
    filters = body["query"]["bool"]["filter"]
    assert {"range": {"traceFields.durationInNanos": {"gte": 5}}} in filters
    assert {"range": {"startTime": {"lte": "1970-01-01T00:00:00.000000009Z"}}} in filters
    assert trace_search_body(TraceQuery())["query"] == {"bool": {"filter": []}}


def test_span_fetch_and_window_bodies():
    body = trace_spans_body(["a", "b"])
    assert body["query"] == {"terms": {"traceId": ["a", "b"]}}
    assert (
        body["sort"] == UNIQUE_SORT == [{"traceId": "asc"}, {"_index": "asc"}, {"_seq_no": "asc"}]
    )
    assert "traceFields" in body["_source"]["excludes"]
    window = window_spans_body(0, 1_000)
    assert window["query"]["range"]["startTime"] == {
        "gte": "1970-01-01T00:00:00.000000000Z",
        "lte": "1970-01-01T00:00:00.000001000Z",
    }
    assert window["_source"] == {"includes": ["traceId", "spanId", "parentSpanId", "serviceName"]}


def test_routing_batches_stay_under_opensearchs_request_line_limit():
    ids = [f"{n:032x}" for n in range(200)]
    groups = batches(ids)
    assert [len(g) for g in groups] == [64, 64, 64, 8]
    assert [i for g in groups for i in g] == ids
    assert len(",".join(groups[0])) == ROUTING_BATCH * 33 - 1 < 4096 - 1000  # room for the rest


class FakeOpenSearch:
    """Answers ``search`` from a list of documents as OpenSearch would for our bodies:
    terms/range filter, sort by the unique key, ``search_after``, ``size``."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = sorted(
            ({"_source": d, "sort": [d["traceId"], "i-1", n]} for n, d in enumerate(docs)),
            key=lambda hit: hit["sort"],
        )
        self.calls: list[dict[str, Any]] = []

    async def search(self, *, index: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        self.calls.append({"index": index, "body": body, **params})
        hits = self.docs
        wanted = body.get("query", {}).get("terms", {}).get("traceId")
        if wanted is not None:
            hits = [h for h in hits if h["_source"]["traceId"] in wanted]
        if "search_after" in body:
            hits = [h for h in hits if h["sort"] > body["search_after"]]
        return {"hits": {"hits": hits[: body["size"]]}}


def spans(trace: str, count: int, service: str = "s") -> list[dict[str, Any]]:
    return [
        {"traceId": trace, "spanId": f"{trace}{n}", "parentSpanId": "", "serviceName": service}
        for n in range(count)
    ]


def test_trace_documents_are_paged_and_routed():
    docs = spans("a", 5) + spans("b", 3) + spans("c", 1)
    client = FakeOpenSearch(docs)
    reader = SpanReader(client, "alias", page_size=2)  # type: ignore[arg-type]
    found = asyncio.run(reader.trace_documents(["b", "a", "zz"]))
    assert {trace: len(found[trace]) for trace in found} == {"a": 5, "b": 3}
    assert {call["routing"] for call in client.calls} == {"b,a,zz"}
    assert all(call["ignore_unavailable"] and call["allow_no_indices"] for call in client.calls)
    assert len(client.calls) == 5  # pages of 2: 2, 2, 2, 2, 0 (8 spans)


def test_window_cap_keeps_whole_traces():
    docs = spans("a", 3) + spans("b", 3) + spans("c", 3)
    reader = SpanReader(FakeOpenSearch(docs), "alias", page_size=2)  # type: ignore[arg-type]
    everything, capped = asyncio.run(reader.window_documents(0, 1, max_spans=9))
    assert (len(everything), capped) == (9, False)
    cut, capped = asyncio.run(reader.window_documents(0, 1, max_spans=5))
    assert capped and [d["traceId"] for d in cut] == ["a"] * 3  # "b" would be partial
    at_boundary, capped = asyncio.run(reader.window_documents(0, 1, max_spans=6))
    assert capped and [d["traceId"] for d in at_boundary] == ["a"] * 3 + ["b"] * 3
    lone, capped = asyncio.run(reader.window_documents(0, 1, max_spans=2))
    assert capped and [d["traceId"] for d in lone] == ["a", "a"]  # better part than nothing
