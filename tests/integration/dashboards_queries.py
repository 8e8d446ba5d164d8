"""The requests OpenSearch Dashboards' Trace Analytics sends in Data Prepper mode, in Python.

Read from opensearch-project/dashboards-observability at commit
``eec79bc7ca48acddaff2e78353494aa123b5df82`` (package version 3.8.0.0, 2026-08-05),
``public/components/trace_analytics/requests/``: the bodies are built by
``queries/traces_queries.ts``, ``queries/services_queries.ts`` and
``queries/dashboard_queries.ts``; the handlers next to them (``traces_request_handler.ts``,
``services_request_handler.ts``, ``dashboard_request_handler.ts``) merge the page's filter
DSL into them (``request_handler.ts: handleDslRequest``) and turn the answers into table
rows. Each builder below names the function it stands for; the Painless scripts do what
the plugin's do (same fields, same arithmetic), written out here.

How a request reaches OpenSearch (``server/routes/trace_analytics_dsl_router.ts``): the
browser posts the body with an ``index`` (the span pattern
``otel-v1-apm-span-*,opensearch_dashboards_sample_data_otel_spans*`` unless the body names
one, e.g. the service-map pattern ``otel-v1-apm-service-map*,...``); the route takes
``index`` and ``size`` out and sends the rest as the search body. :func:`send` does the
same. Tests put their private ``store_index_prefix`` before ``otel-v1-apm-span-*`` /
``otel-v1-apm-service-map*`` and leave the sample-data patterns out.

The ``*_rows`` / ``*_fields`` functions are what the handlers make of the answers (the
values Dashboards puts on screen), so tests compare displayed figures, not raw buckets.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch

# common/constants/trace_analytics.ts
TRACES_MAX_NUM = 500
SPAN_PATTERN = "otel-v1-apm-span-*"
SERVICE_MAP_PATTERN = "otel-v1-apm-service-map*"
DEFAULT_SERVICE_MAP_MAX_NODES = 500
DEFAULT_SERVICE_MAP_MAX_EDGES = 1000
NANOS_PER_MS = 1_000_000


def span_pattern(prefix: str) -> str:
    return f"{prefix}{SPAN_PATTERN}"


def service_map_pattern(prefix: str) -> str:
    return f"{prefix}{SERVICE_MAP_PATTERN}"


def bool_query(**clauses: list) -> dict:
    """An empty Dashboards bool (must, filter, should, must_not), with ``clauses`` set."""
    return {"bool": {"must": [], "filter": [], "should": [], "must_not": [], **clauses}}


def _terms(field: str, size: int | None = None, **aggs: dict) -> dict:
    terms: dict[str, Any] = {"field": field}
    if size is not None:
        terms["size"] = size
    body: dict[str, Any] = {"terms": terms}
    if aggs:
        body["aggs"] = aggs
    return body


def _cardinality(field: str) -> dict:
    return {"cardinality": {"field": field}}


def _error_filter(field: str, **aggs: dict) -> dict:
    body: dict[str, Any] = {"filter": {"term": {field: "2"}}}
    if aggs:
        body["aggs"] = aggs
    return body


def _error_rate(total: str, errors: str) -> dict:
    return {
        "bucket_script": {
            "buckets_path": {"total": total, "errors": errors},
            "script": "params.errors / params.total * 100",
        }
    }


def _painless(source: str) -> dict:
    return {"script": {"source": source, "lang": "painless"}}


# A trace's latency (its root span's, copied onto every span as
# traceGroupFields.durationInNanos), averaged over the distinct traces of a bucket, in
# milliseconds rounded to two decimals. dashboard_queries.ts getDashboardQuery,
# getLatencyTrendQuery and services_queries.ts getServiceTrendsQuery all use this.
_TRACE_LATENCY_MAP = """
  if (doc.containsKey('traceGroupFields.durationInNanos')
      && !doc['traceGroupFields.durationInNanos'].empty) {
    def id = doc['traceId'].value;
    if (!state.latencies.containsKey(id)) {
      state.latencies[id] = doc['traceGroupFields.durationInNanos'].value;
    }
  }
"""
_TRACE_LATENCY_REDUCE = """
  def seen = [:];
  def total = 0.0;
  def count = 0.0;
  for (s in states) {
    if (s == null) { continue; }
    for (entry in s.entrySet()) {
      if (!seen.containsKey(entry.getKey())) {
        seen[entry.getKey()] = true;
        total += entry.getValue();
        count++;
      }
    }
  }
  def nanos = total / count;
  return Math.round(nanos / 10000) / 100.0;
"""


def _average_trace_latency() -> dict:
    return {
        "scripted_metric": {
            "init_script": "state.latencies = [:];",
            "map_script": _TRACE_LATENCY_MAP,
            "combine_script": "return state.latencies",
            "reduce_script": _TRACE_LATENCY_REDUCE,
        }
    }


# --- the page's filters: helper_functions.tsx filtersToDsl (data_prepper) ----------------


def filters_to_dsl(
    start: str = "now-24h", end: str = "now", query: str = "", must: list | None = None
) -> dict:
    """``filtersToDsl``: the time range on ``startTime`` (in ``filter`` and in
    ``custom.timeFilter``), the search bar as ``query_string``, each filter in ``must``
    (see :func:`latency_between`, :func:`error_is`, :func:`field_is`)."""
    time_filter = {"range": {"startTime": {"gte": start, "lte": end}}}
    dsl = {"query": bool_query(filter=[time_filter]), "custom": {"timeFilter": [time_filter]}}
    if query:
        dsl["query"]["bool"]["filter"].append({"query_string": {"query": query}})
    dsl["query"]["bool"]["must"].extend(must or [])
    return dsl


def latency_between(from_ms: int, to_ms: int) -> dict:
    """The filter "latency is between": nanoseconds of the trace, as strings."""
    field = "traceGroupFields.durationInNanos"
    return {
        "range": {field: {"gte": str(from_ms * NANOS_PER_MS), "lte": str(to_ms * NANOS_PER_MS)}}
    }


def error_is(error: bool) -> dict:
    """The filter "error is true/false": the root span's status code, as a string."""
    return {"term": {"traceGroupFields.statusCode": "2" if error else "0"}}


def field_is(field: str, value: Any) -> dict:
    return {"term": {field: value}}


def with_dsl(body: dict, dsl: dict | None, index: str) -> dict:
    """``handleDslRequest``: the DSL's bool clauses appended to the body's, and the span
    pattern as ``index`` unless the body names one."""
    body = copy.deepcopy(body)
    if dsl and dsl.get("query"):
        for clause in ("must", "filter", "should", "must_not"):
            body["query"]["bool"][clause].extend(copy.deepcopy(dsl["query"]["bool"][clause]))
        if dsl["query"]["bool"].get("minimum_should_match"):
            body["query"]["bool"]["minimum_should_match"] = dsl["query"]["bool"][
                "minimum_should_match"
            ]
    body.setdefault("index", index)
    return body


def send(client: OpenSearch, request: dict) -> dict:
    """As the DSL route sends it: ``index`` and ``size`` as parameters, the rest as body.
    An error or a failed shard (e.g. "Can't load fielddata") fails the caller."""
    body = copy.deepcopy(request)
    index, size = body.pop("index"), body.pop("size")
    answer = client.search(index=index, size=size, body=body)
    shards = answer["_shards"]
    assert shards["failed"] == 0, f"shard failures: {shards.get('failures')}"
    assert shards["total"] > 0, f"{index} matched no shard"
    return answer


# --- traces_queries.ts ------------------------------------------------------------------


_TRACE_LATENCY_MS = """
  if (doc.containsKey('traceGroupFields.durationInNanos')
      && !doc['traceGroupFields.durationInNanos'].empty) {
    return Math.round(doc['traceGroupFields.durationInNanos'].value / 10000) / 100.0
  }
"""
_TRACE_LAST_UPDATED = """
  if (doc.containsKey('traceGroupFields.endTime') && !doc['traceGroupFields.endTime'].empty) {
    return doc['traceGroupFields.endTime'].value;
  }
  if (doc.containsKey('endTime') && !doc['endTime'].empty) {
    return doc['endTime'].value;
  }
"""


def traces_query(
    max_traces: int = TRACES_MAX_NUM,
    sort: tuple[str, str] = ("last_updated", "desc"),
    under_one_hour: bool = False,
    trace_id: str = "",
) -> dict:
    """``getTracesQuery(mode='data_prepper')``, the traces table: per ``traceId`` (ordered by
    the sorted column's sub-aggregation; the page's default is ``last_updated`` desc) the
    trace's latency in ms, its trace group, its error count (spans whose root failed) and
    when it last updated; plus ``unique_traces``. ``execution_hint: map`` under an hour."""
    terms: dict[str, Any] = {"field": "traceId", "size": max_traces, "order": {sort[0]: sort[1]}}
    if under_one_hour:
        terms["execution_hint"] = "map"
    body = {
        "size": 0,
        "query": bool_query(),
        "aggs": {
            "unique_traces": _cardinality("traceId"),
            "traces": {
                "terms": terms,
                "aggs": {
                    "latency": {"max": _painless(_TRACE_LATENCY_MS)},
                    "trace_group": _terms("traceGroup", 1),
                    "error_count": _error_filter("traceGroupFields.statusCode"),
                    "last_updated": {"max": _painless(_TRACE_LAST_UPDATED)},
                },
            },
        },
        "track_total_hits": False,
    }
    if trace_id:
        body["query"]["bool"]["filter"].append({"term": {"traceId": trace_id}})
    return body


def trace_group_percentiles_query() -> dict:
    """``getTraceGroupPercentilesQuery``: per root span ``name``, percentiles 0..100 of
    root ``durationInNanos`` (the traces table's "percentile in trace group")."""
    return {
        "size": 0,
        "query": bool_query(must=[{"term": {"parentSpanId": {"value": ""}}}]),
        "aggs": {
            "trace_group_name": _terms(
                "name",
                10000,
                percentiles={
                    "percentiles": {"field": "durationInNanos", "percents": list(range(101))}
                },
            )
        },
    }


def payload_query(trace_id: str, size: int = 3000) -> dict:
    """``getPayloadQuery(mode='data_prepper')``: every span of one trace (the trace view's
    overview, service breakdown, Gantt chart, span tree and span table)."""
    return {"size": size, "query": bool_query(must=[{"term": {"traceId": trace_id}}])}


def span_flyout_query(span_id: str, size: int = 1000) -> dict:
    """``getSpanFlyoutQuery(mode='data_prepper')``: the span the flyout shows, by id."""
    return {"size": size, "query": bool_query(must=[{"term": {"spanId": span_id}}])}


def spans_query(from_: int, size: int, sorting_columns: list[dict[str, str]]) -> dict:
    """``getSpansQuery``: a page of the span table (span_detail_table.tsx), sorted by the
    grid's columns as ``[{column id: direction}]`` (``spanId``, ``parentSpanId``, ...)."""
    return {"size": size, "from": from_, "query": bool_query(), "sort": sorting_columns}


def custom_indices_traces_query(
    page_index: int = 0,
    page_size: int = 10,
    sort: tuple[str, str] | None = ("endTime", "desc"),
    query_mode: str = "root_spans",
) -> dict:
    """``getCustomIndicesTracesQuery(mode='data_prepper')``: the traces page in its span
    modes, ``root_spans`` (``parentSpanId`` "") or ``entry_spans`` (``SPAN_KIND_SERVER``),
    a page of hits with selected ``_source`` fields, sorted (default ``endTime`` desc)."""
    body: dict[str, Any] = {
        "size": page_size,
        "from": page_index * page_size,
        "_source": {
            "includes": [
                "spanId",
                "traceId",
                "parentSpanId",
                "traceGroup",
                "durationInNanos",
                "status.code",
                "endTime",
                "*attributes*",
                "*instrumentation*",
            ]
        },
        "query": bool_query(),
        "track_total_hits": True,
    }
    if sort:
        body["sort"] = [{sort[0]: {"order": sort[1]}}]
    if query_mode == "root_spans":
        body["query"]["bool"]["filter"].append({"term": {"parentSpanId": ""}})
    elif query_mode == "entry_spans":
        body["query"]["bool"]["filter"].append({"term": {"kind": "SPAN_KIND_SERVER"}})
    return body


# --- services_queries.ts ----------------------------------------------------------------


def services_query(service_name: str | None = None) -> dict:
    """``getServicesQuery(mode='data_prepper')``: per ``serviceName``, its distinct traces
    (the services table's "Traces"); one service for the service view."""
    body = {
        "size": 0,
        "query": bool_query(),
        "aggs": {"service": _terms("serviceName", 10000, trace_count=_cardinality("traceId"))},
    }
    if service_name:
        body["query"]["bool"]["filter"].append({"term": {"serviceName": service_name}})
    return body


def service_metrics_query(
    dsl: dict, service_names: list[str], service_map: dict[str, dict]
) -> dict:
    """``getServiceMetricsQuery(mode='data_prepper')``: per service of the service map, over
    its root spans and its spans named as a ``target.resource`` of any service, the average
    ``durationInNanos`` in ms, the error rate (``status.code`` 2) and the span count (the
    services table's latency, error rate and request rate). The time filter is added from
    ``DSL.custom.timeFilter`` (and again by ``handleDslRequest``)."""
    target_resources = [r for node in service_map.values() for r in node["targetResources"]]
    root = {"term": {"parentSpanId": {"value": ""}}}
    served = {
        "bool": {
            "filter": [
                {"bool": {"must_not": root}},
                {"terms": {"name": target_resources}},
            ]
        }
    }
    body = {
        "size": 0,
        "query": {
            "bool": {
                "must": [],
                "should": [],
                "must_not": [],
                "filter": [
                    {"terms": {"serviceName": service_names}},
                    {
                        "bool": {
                            "should": [served, {"bool": {"must": root}}],
                            "adjust_pure_negative": True,
                            "boost": 1,
                        }
                    },
                ],
            }
        },
        "aggregations": {
            "service_name": {
                "terms": {
                    "field": "serviceName",
                    "size": DEFAULT_SERVICE_MAP_MAX_NODES,
                    "min_doc_count": 1,
                    "shard_min_doc_count": 0,
                    "show_term_doc_count_error": False,
                    "order": [{"_count": "desc"}, {"_key": "asc"}],
                },
                "aggregations": {
                    "average_latency_nanos": {"avg": {"field": "durationInNanos"}},
                    "average_latency": {
                        "bucket_script": {
                            "buckets_path": {
                                "count": "_count",
                                "latency": "average_latency_nanos.value",
                            },
                            "script": "Math.round(params.latency / 10000) / 100.0",
                        }
                    },
                    "error_count": _error_filter("status.code"),
                    "error_rate": _error_rate("_count", "error_count._count"),
                },
            }
        },
    }
    body["query"]["bool"]["filter"].extend(copy.deepcopy(dsl["custom"]["timeFilter"]))
    return body


def service_trends_query(service_filter: list[dict]) -> dict:
    """``getServiceTrendsQuery``: the last 24 h per service in 1 h buckets of
    ``startTime``: distinct traces, error rate over traces (a span with ``status.code`` 2)
    and the average trace latency (the services table's trend sparklines)."""
    must = [{"range": {"startTime": {"gte": "now-24h", "lte": "now"}}}, *service_filter]
    return {
        "size": 0,
        "query": bool_query(must=must),
        "aggs": {
            "service_trends": _terms(
                "serviceName",
                10000,
                time_buckets={
                    "date_histogram": {"field": "startTime", "fixed_interval": "1h"},
                    "aggs": {
                        "trace_count": _cardinality("traceId"),
                        "error_count": _error_filter(
                            "status.code", trace_count=_cardinality("traceId")
                        ),
                        "error_rate": _error_rate("trace_count", "error_count>trace_count"),
                        "average_latency": _average_trace_latency(),
                    },
                },
            )
        },
    }


# --- dashboard_queries.ts ---------------------------------------------------------------


def dashboard_query() -> dict:
    """``getDashboardQuery``: per ``traceGroup``, the average trace latency, the distinct
    traces and the error rate over traces (root status 2) — the dashboard's table."""
    return {
        "size": 0,
        "query": bool_query(),
        "aggs": {
            "trace_group_name": _terms(
                "traceGroup",
                10000,
                average_latency=_average_trace_latency(),
                trace_count=_cardinality("traceId"),
                error_count=_error_filter(
                    "traceGroupFields.statusCode", trace_count=_cardinality("traceId")
                ),
                error_rate=_error_rate("trace_count.value", "error_count>trace_count.value"),
            )
        },
    }


def latency_trend_query() -> dict:
    """``getLatencyTrendQuery``: per ``traceGroup``, hourly buckets of ``endTime`` with the
    average trace latency (the dashboard's 24-hour latency trend)."""
    return {
        "size": 0,
        "query": bool_query(),
        "aggs": {
            "trace_group_name": _terms(
                "traceGroup",
                10000,
                group_by_hour={
                    "date_histogram": {"field": "endTime", "calendar_interval": "hour"},
                    "aggs": {"average_latency": _average_trace_latency()},
                },
            )
        },
    }


def dashboard_trace_group_percentiles_query() -> dict:
    """``getDashboardTraceGroupPercentiles(mode='data_prepper')``: per ``traceGroup`` over
    root spans, percentiles 0, 95, 100 of the trace latency (the latency variance box)."""
    return {
        "size": 0,
        "query": bool_query(must=[{"term": {"parentSpanId": {"value": ""}}}]),
        "aggs": {
            "trace_group": _terms(
                "traceGroup",
                latency_variance_nanos={
                    "percentiles": {
                        "field": "traceGroupFields.durationInNanos",
                        "percents": [0, 95, 100],
                    }
                },
            )
        },
    }


def error_rate_plot_query(fixed_interval: str) -> dict:
    """``getErrorRatePltQuery(mode='data_prepper')``: ``startTime`` buckets with the error
    rate over distinct traces (root status 2)."""
    return {
        "size": 0,
        "query": bool_query(),
        "aggs": {
            "error_rate": {
                "date_histogram": {"field": "startTime", "fixed_interval": fixed_interval},
                "aggs": {
                    "error_count": _error_filter(
                        "traceGroupFields.statusCode", trace_count=_cardinality("traceId")
                    ),
                    "trace_count": _cardinality("traceId"),
                    "error_rate": _error_rate("trace_count.value", "error_count>trace_count.value"),
                },
            }
        },
    }


def throughput_plot_query(fixed_interval: str) -> dict:
    """``getDashboardThroughputPltQuery(mode='data_prepper')``: distinct traces per
    ``startTime`` bucket."""
    return {
        "size": 0,
        "query": bool_query(),
        "aggs": {
            "throughput": {
                "date_histogram": {"field": "startTime", "fixed_interval": fixed_interval},
                "aggs": {"trace_count": _cardinality("traceId")},
            }
        },
    }


# --- what the handlers display ------------------------------------------------------------


def percentile_ranges(response: dict, agg: str = "percentiles") -> dict[str, list[float]]:
    """``handleTracesRequest``'s map: trace group -> its percentiles in ms, in order."""
    return {
        bucket["key"]: [v / NANOS_PER_MS for v in bucket[agg]["values"].values()]
        for bucket in response["aggregations"]["trace_group_name"]["buckets"]
    }


def percentile_of(ranges: list[float] | None, latency: float) -> float:
    """``handleTracesRequest``'s binary search: the first percentile reaching ``latency``."""
    if ranges is None:
        return math.nan
    low, high = 0, len(ranges)
    while low < high:
        mid = (low + high) // 2
        if ranges[mid] < latency:
            low = mid + 1
        else:
            high = mid
    return max(0, min(100, low))


def traces_rows(response: dict, ranges: dict[str, list[float]]) -> list[dict]:
    """``handleTracesRequest`` (data_prepper): one row per trace bucket, in bucket order;
    ``last_updated`` as the number ``moment()`` formats (epoch milliseconds)."""
    rows = []
    for bucket in response["aggregations"]["traces"]["buckets"]:
        groups = bucket["trace_group"]["buckets"]
        group = groups[0]["key"] if groups else None
        rows.append(
            {
                "trace_id": bucket["key"],
                "trace_group": group,
                "latency": bucket["latency"]["value"],
                "last_updated": bucket["last_updated"]["value"],
                "error_count": bucket["error_count"]["doc_count"],
                "percentile_in_trace_group": percentile_of(
                    ranges.get(group), bucket["latency"]["value"]
                ),
            }
        )
    return rows


def with_service_metrics(service_map: dict[str, dict], response: dict) -> dict[str, dict]:
    """``handleServiceMapRequest``'s second half: latency, error rate (rounded to two
    decimals, 0 when null) and throughput (the span count) onto each service of the map."""
    for bucket in response["aggregations"]["service_name"]["buckets"]:
        node = service_map[bucket["key"]]
        node["latency"] = bucket["average_latency"]["value"]
        node["error_rate"] = round(bucket["error_rate"]["value"] or 0, 2)
        node["throughput"] = bucket["doc_count"]
    return service_map


def services_rows(services: dict, service_map: dict[str, dict]) -> dict[str, dict]:
    """``handleServicesRequest``: a row per service that the service map knows (others are
    not listed), by name."""
    rows = {}
    for bucket in services["aggregations"]["service"]["buckets"]:
        node = service_map.get(bucket["key"])
        if node is None:
            continue
        connected = sorted([*node["targetServices"], *node["destServices"]])
        rows[bucket["key"]] = {
            "average_latency": node.get("latency"),
            "error_rate": node.get("error_rate"),
            "throughput": node.get("throughput"),
            "traces": bucket["trace_count"]["value"],
            "connected_services": connected,
        }
    return rows


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$")


def parse_iso_to_nano(text: str) -> int:
    """helper_functions.tsx ``parseIsoToNano``: the trace view refuses other shapes."""
    match = _ISO.match(text)
    if match is None:
        raise ValueError(f"Invalid ISO timestamp: {text}")
    base = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(base.timestamp()) * 10**9 + int((match.group(2) or "0").ljust(9, "0")[:9])


def payload_hits(response: dict) -> list[dict]:
    """``handlePayloadRequest``: the hits, latest ``startTime`` first."""
    hits = response["hits"]["hits"]
    return sorted(
        hits, key=lambda hit: parse_iso_to_nano(hit["_source"]["startTime"]), reverse=True
    )


def overview_fields(hits: list[dict]) -> dict:
    """trace_view_helpers.tsx ``getOverviewFields`` (data_prepper) over ``payload_hits``:
    the trace view's header, from its earliest span."""
    first = hits[-1]["_source"]
    group_fields = first.get("traceGroupFields") or {}
    fallback = False
    if group_fields.get("durationInNanos") is not None:
        latency = group_fields["durationInNanos"] / NANOS_PER_MS
    else:
        starts = [parse_iso_to_nano(h["_source"]["startTime"]) for h in hits]
        ends = [parse_iso_to_nano(h["_source"]["endTime"]) for h in hits]
        latency, fallback = (max(ends) - min(starts)) / NANOS_PER_MS, True
    status = group_fields.get("statusCode")
    errors = 1 if status is not None and int(status) == 2 else 0
    if errors == 0:
        errors = 1 if any(span_is_error_in_gantt(h["_source"]) for h in hits) else 0
    return {
        "trace_id": first.get("traceId") or "-",
        "trace_group": first.get("traceGroup") or "-",
        "last_updated": group_fields.get("endTime") or first.get("endTime"),
        "latency": f"{latency:.2f} ms",
        "error_count": errors,
        "fallbackValueUsed": fallback,
    }


def service_breakdown(hits: list[dict]) -> dict[str, float]:
    """trace_view_helpers.tsx ``getServiceBreakdownData``: per service its share (%) of
    the summed span durations of the trace."""
    per_service: dict[str, float] = {}
    for hit in hits:
        source = hit["_source"]
        latency = 0.0
        if source.get("durationInNanos"):
            latency = source["durationInNanos"] / NANOS_PER_MS
        elif (source.get("traceGroupFields") or {}).get("durationInNanos"):
            latency = source["traceGroupFields"]["durationInNanos"] / NANOS_PER_MS
        if source.get("serviceName"):
            per_service[source["serviceName"]] = per_service.get(source["serviceName"], 0) + latency
    total = sum(per_service.values())
    return {name: 100 if total == 0 else value / total * 100 for name, value in per_service.items()}


def status_code(source: dict) -> int | None:
    """A span document's status code, written as a ``status`` object or a dotted key."""
    if "status.code" in source:
        return source["status.code"]
    return (source.get("status") or {}).get("code")


def span_is_error_in_gantt(source: dict) -> bool:
    """traces_request_handler.ts ``hitsToSpanDetailData``: the Gantt chart's error mark
    (reads ``status.code`` nested or as a dotted key)."""
    return (source.get("status") or {}).get("code") == 2 or source.get("status.code") == 2


def span_is_error_in_flyout(source: dict) -> bool:
    """span_detail_flyout.tsx's "Errors" row and span_detail_table.tsx's ``status.code``
    column: ``span['status.code'] === 2`` (the dotted key Data Prepper writes)."""
    return source.get("status.code") == 2
