"""Requests built, and answers read, the way two clients of the Jaeger HTTP API do it.

Pure functions, no fixtures: ``test_client_contracts.py`` sends what these build to a
real `spansieve query` and checks the answers with what these read. Each function names
the client code it restates (rewritten from reading it, not copied):

* Grafana's Jaeger data source in HTTP mode, whose Go backend builds every URL:
  grafana/grafana-jaeger-datasource v13.0.1 (commit 9d46d95bdbb6326d110a44564cc47d9e29832813)
  ``pkg/jaeger/client.go``, ``querydata.go``, ``utils/client_utils.go``,
  ``types/types.go`` (the same client lives in grafana/grafana ``pkg/tsdb/jaeger``);
  and the older in-browser data source (``public/app/plugins/datasource/jaeger/
  datasource.ts`` of grafana/grafana, the ``jaegerBackendMigration``-off branch);
* the Jaeger UI (jaegertracing/jaeger-ui ``packages/jaeger-ui/src``): ``api/jaeger.ts``
  (``getJSON``, ``fetchTrace``, ``fetchDependencies``, ``fetchMetrics``,
  ``searchTraces`` up to v2.18.0), ``model/transform-trace-data.ts``,
  ``reducers/metrics.ts``, ``components/DependencyGraph/index.tsx``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote, quote_plus

JSON = dict[str, Any]

# --- encoders -------------------------------------------------------------------------------


def go_escaped_path(path: str) -> str:
    """Go's ``url.URL.EscapedPath`` for a path it must escape itself (``escape(p,
    encodePath)``): unreserved characters and ``$&+,/:;=@`` stay, everything else
    (space, ``?``, ``#``, ``(``, ``)``, non-ASCII bytes ...) becomes ``%XX``."""
    return quote(path, safe="$&+,/:;=@")


def go_join_path(*elements: str) -> str:
    """The path of ``url.JoinPath(base, elements...)`` with a base URL without a path, as
    the Go client calls it: the elements are joined and cleaned like ``path.Join`` (no
    empty segments), then escaped by ``EscapedPath``. The elements count as already
    escaped text, so they must hold no ``%`` (none of the names used here do)."""
    assert not any("%" in element for element in elements), "a % would be unescaped first"
    segments = [part for element in elements for part in element.split("/") if part]
    assert ".." not in segments and "." not in segments, "path.Join would clean these"
    return go_escaped_path("/" + "/".join(segments))


def go_query_escape(text: str) -> str:
    """Go's ``url.QueryEscape``: only unreserved characters stay, space is ``+``."""
    return quote_plus(text, safe="")


def go_values_encode(params: Mapping[str, str]) -> str:
    """Go's ``url.Values.Encode()`` of single values: sorted by key, both sides
    ``QueryEscape``d."""
    return "&".join(
        f"{go_query_escape(key)}={go_query_escape(params[key])}" for key in sorted(params)
    )


def js_encode_uri_component(text: str) -> str:
    """JavaScript's ``encodeURIComponent``: letters, digits and ``-_.!~*'()`` stay."""
    return quote(text, safe="!~*'()")


def query_string_stringify(query: Mapping[str, Any]) -> str:
    """``queryString.stringify(query)`` of the npm package ``query-string`` with its
    defaults, as the Jaeger UI calls it: keys sorted, ``undefined`` (None here as
    ``UNDEFINED``) left out, ``null`` written as the bare key, arrays as repeated keys,
    strict encoding (``encodeURIComponent`` plus ``!'()*``)."""

    def encode(value: Any) -> str:
        if isinstance(value, bool):
            value = "true" if value else "false"
        return quote(str(value), safe="")

    parts: list[str] = []
    for key in sorted(query):
        value = query[key]
        if value is UNDEFINED:
            continue
        if value is None:
            parts.append(encode(key))
        elif isinstance(value, list | tuple):
            parts.extend(f"{encode(key)}={encode(item)}" for item in value)
        else:
            parts.append(f"{encode(key)}={encode(value)}")
    return "&".join(parts)


class _Undefined:
    """JavaScript's ``undefined`` in a query object (``None`` stands for ``null``)."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()


# --- logfmt tags -> the JSON of ``tags=`` ------------------------------------------------

_LOGFMT_PAIR = re.compile(r'([^\s="]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?')


def _logfmt_pairs(text: str) -> list[tuple[str, str | None]]:
    """(key, value) pairs of one logfmt line; ``None`` for a bare key. Quoted values are
    unquoted with JSON's escapes, as both decoders do."""
    pairs: list[tuple[str, str | None]] = []
    for match in _LOGFMT_PAIR.finditer(text):
        key, raw = match.group(1), match.group(2)
        if raw is None:
            pairs.append((key, None))
        elif raw.startswith('"'):
            pairs.append((key, json.loads(raw)))
        else:
            pairs.append((key, raw))
    return pairs


def grafana_tags_json(tags: str) -> str:
    """``JaegerClient.Search``'s tags: decoded with go-logfmt into a ``map[string]string``
    (a bare key has value ""), then ``json.Marshal``: keys sorted, no spaces, and Go's
    HTML escaping of ``<``, ``>`` and ``&``."""
    found = {key: value or "" for key, value in _logfmt_pairs(tags)}
    text = json.dumps(dict(sorted(found.items())), separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    return text


def jaeger_ui_tags_json(tags: str) -> str:
    """``convTagsLogfmt`` (Jaeger UI ``SearchForm.tsx``, also Grafana's old ``util.ts``):
    parsed with the npm ``logfmt`` parser (a bare key is ``true``), every value turned
    into a string, ``JSON.stringify`` in the order written."""
    found = {key: "true" if value is None else value for key, value in _logfmt_pairs(tags)}
    return json.dumps(found, separators=(",", ":"), ensure_ascii=False)


# --- Grafana's Go backend: what it decodes and the frames it builds ----------------------


def go_int(value: Any) -> bool:
    """Whether Go's ``json.Unmarshal`` takes ``value`` into an ``int``/``int64`` field."""
    return isinstance(value, int) and not isinstance(value, bool)


def go_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def check_go_key_values(items: Any) -> None:
    """``[]KeyValueType``: key and type strings, any value."""
    assert _optional(items, list)
    for item in items or []:
        assert isinstance(item["key"], str) and _optional(item.get("type"), str)


def check_go_trace(trace: JSON) -> None:
    """What ``json.Unmarshal`` into ``types.TraceResponse`` needs: every field it reads of
    the type of its struct field (a float for an ``int64`` or a number for a string is a
    decoding error there, and the whole query fails)."""
    assert isinstance(trace["traceID"], str) and trace["traceID"]
    assert _optional(trace.get("warnings"), list)
    for process in trace["processes"].values():
        assert isinstance(process["serviceName"], str)
        check_go_key_values(process.get("tags"))
    for span in trace["spans"]:
        for field in ("traceID", "spanID", "processID", "operationName"):
            assert isinstance(span[field], str), field
        assert go_int(span["startTime"]) and go_int(span["duration"])
        assert go_int(span.get("flags", 0))
        assert _optional(span.get("warnings"), list)
        for ref in span.get("references") or []:
            assert all(isinstance(ref[field], str) for field in ("refType", "spanID", "traceID"))
        check_go_key_values(span.get("tags"))
        for log in span.get("logs") or []:
            assert go_number(log["timestamp"])
            check_go_key_values(log["fields"])


def grafana_search_rows(traces: list[JSON]) -> list[tuple[str, str, int, int]]:
    """``utils.TransformSearchResponse``: per trace its earliest span ("root"), newest
    first: (traceID, "<service>: <operation>", start µs, duration µs). It indexes
    ``Spans[0]`` while sorting, so a trace without spans would panic the plugin."""
    for trace in traces:
        check_go_trace(trace)
        assert trace["spans"], "TransformSearchResponse reads Spans[0] of every trace"

    def root(trace: JSON) -> JSON:
        return min(trace["spans"], key=lambda span: span["startTime"])

    rows = []
    for trace in sorted(traces, key=lambda t: root(t)["startTime"], reverse=True):
        span = root(trace)
        process = trace["processes"].get(span["processID"], {})
        name = f"{process.get('serviceName', '')}: {span['operationName']}"
        rows.append((trace["traceID"], name, span["startTime"], span["duration"]))
    return rows


def grafana_trace_rows(trace: JSON) -> dict[str, JSON]:
    """``utils.TransformTraceResponse``, one row per span keyed by operation name: the
    parent is the first CHILD_OF reference, the other references stay; times become ms
    (floats), log timestamps too; service name and tags come from ``processes``."""
    check_go_trace(trace)
    rows: dict[str, JSON] = {}
    for span in trace["spans"]:
        references = span.get("references") or []
        parent = next((r["spanID"] for r in references if r["refType"] == "CHILD_OF"), None)
        process = trace["processes"].get(span["processID"])
        rows[span["operationName"]] = {
            "traceID": span["traceID"],
            "spanID": span["spanID"],
            "parentSpanID": parent,
            "serviceName": process["serviceName"] if process else "",
            "serviceTags": process.get("tags") if process else [],
            "startTime": span["startTime"] / 1000,
            "duration": span["duration"] / 1000,
            "logs": [
                {"timestamp": log["timestamp"] / 1000, "fields": log["fields"]}
                for log in span.get("logs") or []
            ],
            "references": [r for r in references if parent is None or r["spanID"] != parent],
            "tags": span.get("tags"),
        }
    return rows


def grafana_dependency_frames(body: JSON) -> tuple[list[str], list[tuple[str, str, str, int]]]:
    """``queryData`` for a dependency graph: decoded into ``types.DependenciesResponse``;
    any entry in ``errors`` fails the query ("error while fetching dependencies"), else
    ``transformDependenciesResponse`` builds the node frame (service names, sorted) and the
    edge frame (id "parent--child", source, target, call count)."""
    errors = body.get("errors") or []
    assert not errors, f"Grafana would show: error while fetching dependencies: {errors[0]}"
    nodes: set[str] = set()
    edges = []
    for link in body["data"] or []:
        assert isinstance(link["parent"], str) and isinstance(link["child"], str)
        assert go_int(link["callCount"])
        nodes.update((link["parent"], link["child"]))
        edges.append(
            (f"{link['parent']}--{link['child']}", link["parent"], link["child"], link["callCount"])
        )
    return sorted(nodes), edges


# --- the Jaeger UI: what its reducers and pages make of the answers ----------------------


def ui_transform_trace(trace: JSON) -> JSON:
    """The parts of ``transformTraceData`` a page shows: it gives up (None) without a
    ``traceID``; a span whose ``processID`` is not in ``processes`` becomes
    "unknown-service"; a span's parent is its first CHILD_OF or FOLLOWS_FROM reference
    found in the trace, a span with references but none found counts as an orphan."""
    if not trace.get("traceID"):
        return {}
    by_id = {span["spanID"]: span for span in trace["spans"]}
    services: dict[str, int] = {}
    roots, orphans = [], 0
    for span in trace["spans"]:
        process = trace["processes"].get(span["processID"]) or {"serviceName": "unknown-service"}
        services[process["serviceName"]] = services.get(process["serviceName"], 0) + 1
        references = span.get("references") or []
        parent = next(
            (
                by_id[ref["spanID"]]
                for ref in references
                if ref["refType"] in ("CHILD_OF", "FOLLOWS_FROM") and ref["spanID"] in by_id
            ),
            None,
        )
        if parent is None:
            roots.append(span["operationName"])
            orphans += bool(references)
    start = min(span["startTime"] for span in trace["spans"])
    end = max(span["startTime"] + span["duration"] for span in trace["spans"])
    return {
        "traceID": trace["traceID"],
        "services": services,
        "roots": roots,
        "orphanSpanCount": orphans,
        "duration": end - start,
    }


def js_to_fixed_2(value: float) -> float:
    """``parseFloat(value.toFixed(2))``: the exact binary value rounded half up."""
    return float(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _points(metric: JSON) -> list[tuple[int, float]]:
    """(x, y) as the reducers map ``metricPoints``: ``new Date(timestamp).getTime()`` and
    ``parseFloat(gaugeValue.doubleValue.toFixed(2))`` (``toFixed`` needs a number)."""
    found = []
    for point in metric["metricPoints"]:
        value = point["gaugeValue"]["doubleValue"]
        assert go_number(value), f"toFixed would throw on {value!r}"
        stamp = datetime.fromisoformat(point["timestamp"].replace("Z", "+00:00"))
        found.append((round(stamp.timestamp() * 1000), js_to_fixed_2(value)))
    return found


def ui_service_metrics(families: Iterable[JSON]) -> JSON:
    """``fetchServiceMetricsDone`` over the fulfilled answers of
    ``fetchAllServiceMetrics``: each family (with the ``quantile`` ``fetchMetrics`` adds)
    reads ``metrics[0]`` (so ``metrics`` must be a list), its ``labels[0].value`` as the
    service, its points; it is filed under its ``name``, the latencies in a list."""
    state: JSON = {"service_latencies": None, "service_call_rate": None, "service_error_rate": None}
    for family in families:
        if not family["metrics"]:
            continue
        metric = family["metrics"][0]
        points = _points(metric)
        entry = {
            "serviceName": metric["labels"][0]["value"],
            "quantile": family.get("quantile"),
            "max": max([0.0, *(y for _x, y in points)]),
            "metricPoints": points,
        }
        if family["name"] == "service_latencies":
            state["service_latencies"] = [*(state["service_latencies"] or []), entry]
        else:
            state[family["name"]] = entry
    return state


OPS_NAMES = ("service_operation_latencies", "service_operation_call_rate",
             "service_operation_error_rate")  # fmt: skip


def ui_operation_metrics(families: Iterable[JSON]) -> dict[str, JSON]:
    """``fetchOpsMetricsDone`` over the fulfilled answers of
    ``fetchAggregatedServiceMetrics``: per metric, the label named ``operation`` names the
    row; its points are filed under the family's ``name`` and averaged (two decimals).
    A family whose name is not one of ``OPS_NAMES`` lands in no column."""
    rows: dict[str, JSON] = {}
    for family in families:
        for metric in family.get("metrics") or []:
            operation = next(
                (label["value"] for label in metric["labels"] if label["name"] == "operation"),
                None,
            )
            if not operation:
                continue
            row = rows.setdefault(operation, {"avg": dict.fromkeys(OPS_NAMES)})
            ys = [y for _x, y in _points(metric)]
            row[family["name"]] = ys
            row["avg"][family["name"]] = js_to_fixed_2(sum(ys) / len(ys)) if ys else None
    return rows


def ui_dependency_graph(body: Any) -> tuple[list[str], list[tuple[str, str, str]]]:
    """``normalizeDependenciesResponse`` (``data`` when it is a list, else nothing) then
    ``formatServiceCalls`` with no service selected: nodes in order of appearance, one
    edge per link with the call count as its label; links with a blank end are dropped."""
    data = body.get("data") if isinstance(body, dict) else body
    links = data if isinstance(data, list) else []
    nodes: list[str] = []
    edges = []
    for link in links:
        if link["parent"].strip() and link["child"].strip():
            for name in (link["parent"], link["child"]):
                if name not in nodes:
                    nodes.append(name)
            edges.append((link["parent"], link["child"], f"{link['callCount']}"))
    return nodes, edges
