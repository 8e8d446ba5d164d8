"""Jaeger API v3: its parameters, stored documents -> OTLP/JSON, and trace summaries.

Documents are made by the sink's own encoder from OTLP spans, so these tests read exactly
what OpenSearch holds. The expected JSON is what Jaeger's HTTP gateway writes through the
collector's pdata marshaler: hex ids, times and int64 values as decimal strings, enums as
integers, zero-valued fields left out.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.query.jaeger import Base64
from pipeline.query.params import ParamError, TraceQuery
from pipeline.query.v3 import (
    DEFAULT_SEARCH_DEPTH,
    WARNINGS_KEY,
    SearchRequest,
    TraceRequest,
    any_value,
    parse_attributes,
    parse_search,
    parse_trace_request,
    rfc3339_nanos,
    trace_summary,
    traces_data,
    v3_trace_id,
)
from pipeline.sink.documents import span_documents
from pipeline.store.fields import iso_to_nanos, nanos_to_iso
from tests.unit.otlp_builders import resource_spans
from tests.unit.test_query_jaeger import bytes_trace, sample_trace

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
OTHER_TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT, CHILD, DB, LINKED = (bytes([n]) * 8 for n in (1, 2, 3, 4))
T0 = 1_700_000_000_123_456_789
MS = 1_000_000
S = 1_000_000_000
MAX_TRACES = 1_500


def documents(data: TracesData | None = None) -> list[dict[str, Any]]:
    return [doc for _id, doc in span_documents(data or sample_trace())]


def spans_by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        span["name"]: span
        for resource in data["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    }


def string(value: str) -> dict[str, Any]:
    return {"stringValue": value}


# --- GET /api/v3/traces/{trace_id} --------------------------------------------------------


def test_trace_request_takes_camel_case_and_snake_case_names():
    hex_id = TRACE.hex()
    assert parse_trace_request(hex_id, []) == TraceRequest(hex_id)
    camel = [("startTime", "2026-08-20T10:00:00Z"), ("endTime", "2026-08-20T11:00:00.5Z")]
    snake = [("start_time", "2026-08-20T10:00:00Z"), ("end_time", "2026-08-20T11:00:00.5Z")]
    expected = TraceRequest(hex_id, 1_787_220_000 * S, 1_787_223_600 * S + S // 2)
    assert parse_trace_request(hex_id, camel) == expected
    assert parse_trace_request(hex_id, snake) == expected
    # The canonical name wins over its alias, and an empty value counts as absent.
    both = [("raw_traces", "false"), ("rawTraces", ""), ("rawTraces", "true")]
    assert parse_trace_request(hex_id, both).raw is True
    assert parse_trace_request(hex_id, [("raw_traces", "1")]).raw is True


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("startTime", "yesterday")], "startTime: 'yesterday' is not an RFC 3339 time"),
        ([("end_time", "2026-08-20")], "end_time: '2026-08-20' is not an RFC 3339 time"),
        ([("rawTraces", "yes")], "rawTraces: 'yes' is not a boolean; use true or false"),
    ],
)
def test_trace_request_errors_name_the_parameter(params, message):
    with pytest.raises(ParamError) as caught:
        parse_trace_request(TRACE.hex(), params)
    assert str(caught.value).startswith(message), str(caught.value)


def test_trace_ids_in_hex_or_base64():
    full = TRACE.hex()
    assert v3_trace_id(full.upper()) == full
    assert v3_trace_id("abc") == "abc".rjust(32, "0")  # 64-bit ids, dropped leading zeros
    assert v3_trace_id(base64.b64encode(TRACE).decode()) == full
    assert v3_trace_id(base64.b64encode(TRACE).decode().rstrip("=")) == full
    odd = bytes.fromhex("fbff" * 8)  # base64 with "+" and "/", or "-" and "_" URL-safe
    assert v3_trace_id(base64.b64encode(odd).decode()) == odd.hex()
    assert v3_trace_id(base64.urlsafe_b64encode(odd).decode()) == odd.hex()
    assert v3_trace_id(base64.b64encode(bytes(7) + b"\x01").decode()) == "1".rjust(32, "0")


@pytest.mark.parametrize(
    "text",
    ["", "trace?", "f" * 33, base64.b64encode(bytes(range(12))).decode(), "AAAA====AAAA"],
)
def test_bad_trace_ids(text):
    message = (
        f"trace_id: {text!r} is not a trace id: 1 to 32 hex digits, or base64 of 8 or 16 bytes"
    )
    with pytest.raises(ParamError) as caught:
        v3_trace_id(text)
    assert str(caught.value) == message


# --- times, booleans ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2000-01-02T12:30:08.999999998Z", 946_816_208 * S + 999_999_998),
        ("2000-04-05T21:55:16.999999992+08:00", 954_942_916 * S + 999_999_992),
        ("2026-08-20T10:00:00.5-02:30", 1_787_229_000 * S + S // 2),
        ("2026-08-20T10:00:00.123Z", 1_787_220_000 * S + 123 * MS),  # the Jaeger UI's
        ("2026-08-20t10:00:00z", 1_787_220_000 * S),
        # Grafana appends times unencoded: a local time's "+02:00" arrives as " 02:00".
        ("2026-08-20T12:00:00.000000001 02:00", 1_787_220_000 * S + 1),
    ],
)
def test_rfc3339_times_are_exact_nanoseconds(text, nanos):
    assert rfc3339_nanos("query.startTimeMin", text) == nanos


NOT_RFC3339 = "is not an RFC 3339 time such as 2026-08-20T10:00:00.123456789Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-08-20", NOT_RFC3339),
        ("2026-08-20T10:00:00", NOT_RFC3339),  # no offset
        ("2026-08-20T10:00:00.1234567890Z", NOT_RFC3339),  # ten digits
        ("1787220000", NOT_RFC3339),
        ("2026-02-30T10:00:00Z", "is not a valid time (day is out of range for month)"),
        ("2026-08-20T24:00:00Z", "is not a valid time (hour must be in 0..23)"),
        ("2026-08-20T10:00:00+24:00", "has an invalid UTC offset"),
    ],
)
def test_bad_rfc3339_times(text, message):
    with pytest.raises(ParamError) as caught:
        rfc3339_nanos("query.startTimeMax", text)
    assert str(caught.value) == f"query.startTimeMax: {text!r} {message}"


# --- searches -----------------------------------------------------------------------------


def test_search_with_the_jaeger_ui_names():
    """What the Jaeger UI's ``fetchTraceSummaries`` sends (camelCase)."""
    pairs = [
        ("query.serviceName", "frontend"),
        ("query.operationName", "GET /cart"),
        ("query.startTimeMin", "2026-08-20T10:00:00.000Z"),
        ("query.startTimeMax", "2026-08-20T11:00:00.000Z"),
        ("query.searchDepth", "20"),
        ("query.durationMin", "10ms"),
        ("query.durationMax", "1.5s"),
        ("query.attributes", '{"http.response.status_code":"200","error":"true"}'),
    ]
    assert parse_search(pairs, MAX_TRACES) == SearchRequest(
        TraceQuery(
            service="frontend",
            operation="GET /cart",
            tags=(("http.response.status_code", "200"), ("error", "true")),
            start=1_787_220_000 * S,
            end=1_787_223_600 * S - 1,  # the maximum is exclusive
            min_duration=10 * MS,
            max_duration=1_500 * MS,
            span_durations=True,  # an operation is given: its span's duration, as Jaeger
            limit=20,
        )
    )


def test_search_with_the_snake_case_names():
    """What Grafana's ``GrpcSearch`` sends, and Jaeger's older clients."""
    pairs = [
        ("query.service_name", "cart"),
        ("query.operation_name", "cart.get"),
        ("query.start_time_min", "2026-08-20T10:00:00Z"),
        ("query.start_time_max", "2026-08-20T11:00:00Z"),
        ("query.duration_min", "1ms"),
        ("query.duration_max", "2ms"),
        ("query.num_traces", "7"),
        ("query.raw_traces", "true"),
    ]
    search = parse_search(pairs, MAX_TRACES)
    assert search.raw is True
    query = search.query
    assert (query.service, query.operation, query.limit) == ("cart", "cart.get", 7)
    assert (query.min_duration, query.max_duration) == (MS, 2 * MS)
    assert parse_search([("query.search_depth", "9")], MAX_TRACES).query.limit == 9


def test_search_defaults_and_caps():
    assert parse_search([], MAX_TRACES) == SearchRequest(TraceQuery(limit=DEFAULT_SEARCH_DEPTH))
    assert parse_search([("query.searchDepth", "0")], MAX_TRACES).query.limit == 100
    assert parse_search([("query.searchDepth", "5000")], MAX_TRACES).query.limit == MAX_TRACES
    assert parse_search([("query.serviceName", "")], MAX_TRACES).query.service is None
    camel_wins = [("query.service_name", "old"), ("query.serviceName", "new")]
    assert parse_search(camel_wins, MAX_TRACES).query.service == "new"


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (
            [
                ("query.startTimeMin", "2026-08-20T11:00:00Z"),
                ("query.startTimeMax", "2026-08-20T11:00:00Z"),
            ],
            "query.startTimeMin: must be before query.startTimeMax",
        ),
        ([("query.start_time_min", "now")], "query.start_time_min: 'now' is not an RFC 3339 time"),
        ([("query.durationMin", "10")], "query.durationMin: invalid duration '10'"),
        (
            [("query.duration_max", "-1s")],
            "query.duration_max: duration '-1s' must not be negative",
        ),
        (
            [("query.durationMin", "2s"), ("query.durationMax", "1s")],
            "query.durationMin: is greater than query.durationMax",
        ),
        ([("query.searchDepth", "ten")], "query.searchDepth: 'ten' is not an integer"),
        ([("query.num_traces", "-1")], "query.num_traces: -1 must not be negative"),
        ([("query.rawTraces", "maybe")], "query.rawTraces: 'maybe' is not a boolean"),
        (
            [("query.filter", '{"op":"eq"}')],
            "query.filter: structured filters are not supported; use query.attributes instead",
        ),
        ([("query.attributes", "a=b")], "query.attributes: not valid JSON"),
    ],
)
def test_search_errors_name_the_parameter(pairs, message):
    with pytest.raises(ParamError) as caught:
        parse_search(pairs, MAX_TRACES)
    assert str(caught.value).startswith(message), str(caught.value)


def test_attributes():
    text = '{"http.route":"/cart","retry":true,"code":200,"ratio":0.5,"span.kind":"server"}'
    assert parse_attributes("query.attributes", text) == (
        ("http.route", "/cart"),
        ("retry", "true"),  # Jaeger's clients send strings; JSON scalars are read as text
        ("code", "200"),
        ("ratio", "0.5"),
        ("span.kind", "server"),
    )
    assert parse_attributes("query.attributes", "{}") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", 'query.attributes: must be a JSON object such as {"http.status_code":"200"}'),
        ('"x"', "query.attributes: must be a JSON object"),
        ('{"a":{"b":"c"}}', "query.attributes: the value of 'a' must be a string"),
        ('{"a":null}', "query.attributes: the value of 'a' must be a string"),
        ('{"":"x"}', "query.attributes: an attribute name must not be empty"),
        ('{"span.kind":"sideways"}', "query.attributes: unknown span kind 'sideways'"),
        (
            '{"otel.status_code":"BAD"}',
            "query.attributes: otel.status_code must be one of UNSET, OK, ERROR",
        ),
    ],
)
def test_attribute_errors(text, message):
    with pytest.raises(ParamError) as caught:
        parse_attributes("query.attributes", text)
    assert str(caught.value).startswith(message), str(caught.value)


# --- documents -> OTLP/JSON ---------------------------------------------------------------


def test_a_span_in_otlp_json():
    data = traces_data([(TRACE.hex(), documents())], 0)
    spans = spans_by_name(data)
    assert spans["GET /cart"] == {
        "traceId": TRACE.hex(),
        "spanId": ROOT.hex(),
        "traceState": "vendor=1",
        "name": "GET /cart",
        "kind": 2,
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 250_000_999),
        "attributes": [
            {"key": "http.request.method", "value": string("GET")},
            {"key": "http.response.status_code", "value": {"intValue": "200"}},
            {"key": "ratio", "value": {"doubleValue": 0.25}},
        ],
        "status": {"code": 1},
    }
    assert spans["cart.get"] == {
        "traceId": TRACE.hex(),
        "spanId": CHILD.hex(),
        "parentSpanId": ROOT.hex(),
        "name": "cart.get",
        "kind": 1,
        "startTimeUnixNano": str(T0 + 1_000),
        "endTimeUnixNano": str(T0 + 200 * MS),
        "attributes": [
            {"key": "retry", "value": {"boolValue": True}},
            {"key": "tags.list", "value": string('["a","b"]')},  # arrays are stored as text
        ],
        "events": [
            {
                "timeUnixNano": str(T0 + 5_000),
                "name": "exception",
                "attributes": [
                    {"key": "exception.type", "value": string("KeyError")},
                    {"key": "attempt", "value": {"intValue": "3"}},
                ],
            }
        ],
        "links": [{"traceId": OTHER_TRACE.hex(), "spanId": LINKED.hex(), "traceState": "k=v"}],
        "status": {"message": "boom", "code": 2},
    }
    # Unset status and no attributes: only what has a value, and ``status`` always.
    assert spans["SELECT cart"]["status"] == {}
    assert "attributes" not in spans["SELECT cart"] and "events" not in spans["SELECT cart"]


def test_resources_and_scopes_group_the_spans():
    data = traces_data([(TRACE.hex(), reversed(documents()))], 0)
    frontend, cart = data["resourceSpans"]  # in the order of their first span
    assert frontend["resource"] == {
        "attributes": [
            {"key": "service.name", "value": string("frontend")},
            {"key": "host.name", "value": string("a")},
        ]
    }
    [scope] = frontend["scopeSpans"]
    assert scope["scope"] == {"name": "otel.http", "version": "1.2"}
    assert cart["resource"]["attributes"][2] == {"key": "cpu.count", "value": {"intValue": "4"}}
    [scope] = cart["scopeSpans"]  # the db span's resource is the same: one resource
    assert scope["scope"] == {}
    assert [span["name"] for span in scope["spans"]] == ["cart.get", "SELECT cart"]


def test_traces_stay_apart_and_spans_show_once():
    docs = documents()
    other = documents()
    for doc in other:
        doc["traceId"] = OTHER_TRACE.hex()
    data = traces_data([(TRACE.hex(), docs + docs), (OTHER_TRACE.hex(), other)], 0)
    assert len(data["resourceSpans"]) == 4  # two per trace, never shared
    trace_ids = [
        {span["traceId"] for scope in resource["scopeSpans"] for span in scope["spans"]}
        for resource in data["resourceSpans"]
    ]
    assert trace_ids == [{TRACE.hex()}] * 2 + [{OTHER_TRACE.hex()}] * 2
    assert sum(len(s["spans"]) for r in data["resourceSpans"] for s in r["scopeSpans"]) == 6
    assert traces_data([], 0) == {}  # pdata leaves an empty resourceSpans out


def skewed_trace() -> TracesData:
    """A client on host web-1 and the server it called on api-7, whose clock runs 45 ms
    behind: the server seems to start before its caller."""
    data = TracesData()
    web = resource_spans(data, {"service.name": "web", "host.name": "web-1"})
    api = resource_spans(data, {"service.name": "api", "host.name": "api-7"})
    web.add(
        trace_id=TRACE,
        span_id=ROOT,
        name="GET /",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 100 * MS,
    )
    handle = api.add(
        trace_id=TRACE,
        span_id=CHILD,
        parent_span_id=ROOT,
        name="handle",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=T0 - 45 * MS,
        end_time_unix_nano=T0 - 25 * MS,
    )
    handle.events.add(name="parsed", time_unix_nano=T0 - 40 * MS)
    return data


def test_clock_skew_is_corrected_unless_raw():
    docs = documents(skewed_trace())
    handle = spans_by_name(traces_data([(TRACE.hex(), docs)], 5_000_000))["handle"]
    shift = 85 * MS  # centred in its 100 ms parent: (100 - 20) / 2 ms after its start
    assert handle["startTimeUnixNano"] == str(T0 - 45 * MS + shift)
    assert handle["endTimeUnixNano"] == str(T0 - 25 * MS + shift)
    assert handle["events"][0]["timeUnixNano"] == str(T0 - 40 * MS + shift)
    assert handle["attributes"] == [
        {
            "key": WARNINGS_KEY,
            "value": {
                "arrayValue": {
                    "values": [string("timestamps shifted by 85000 µs to correct clock skew")]
                }
            },
        }
    ]
    raw = spans_by_name(traces_data([(TRACE.hex(), docs)], 0))["handle"]
    assert raw["startTimeUnixNano"] == str(T0 - 45 * MS) and "attributes" not in raw
    capped = spans_by_name(traces_data([(TRACE.hex(), docs)], 10_000))["handle"]
    assert capped["startTimeUnixNano"] == str(T0 - 45 * MS)
    [warning] = capped["attributes"][0]["value"]["arrayValue"]["values"]
    assert "exceeds the maximum adjustment" in warning["stringValue"]


def test_attribute_values():
    assert any_value("x") == {"stringValue": "x"}
    assert any_value(True) == {"boolValue": True}
    assert any_value(2**62) == {"intValue": str(2**62)}
    assert any_value(-1.5) == {"doubleValue": -1.5}
    assert any_value(Base64("AP8=")) == {"bytesValue": "AP8="}


def test_bytes_are_bytes_values_in_base64():
    """As Jaeger's API v3 (pdata's JSON) writes an OTLP bytes attribute: ``bytesValue``."""
    docs = documents(bytes_trace())
    [resource] = traces_data([(TRACE.hex(), docs)], 0)["resourceSpans"]
    assert resource["resource"]["attributes"] == [
        {"key": "service.name", "value": string("vault")},
        {"key": "host.id", "value": {"bytesValue": "AQID"}},
    ]
    [span] = resource["scopeSpans"][0]["spans"]
    assert span["attributes"] == [
        {"key": "digest", "value": {"bytesValue": "+/8="}},
        {"key": "digest.text", "value": string("+/8=")},
    ]
    assert span["events"][0]["attributes"] == [
        {"key": "signature", "value": {"bytesValue": "AA=="}},
        {"key": "length", "value": {"intValue": "1"}},
    ]
    assert span["links"][0]["attributes"] == [{"key": "token", "value": {"bytesValue": "Bw=="}}]
    # The same text as a string is another resource.
    other = dict(docs[0], spanId="09" * 8, binaryAttributes=["span.attributes.digest"])
    assert len(traces_data([(TRACE.hex(), [docs[0], other])], 0)["resourceSpans"]) == 2


def test_documents_from_before_schema_6_give_bytes_as_strings():
    [doc] = documents(bytes_trace())
    del doc["binaryAttributes"]
    doc["span.attributes.digest"] = "fbff"
    del doc["links"][0]["binaryAttributes"]
    [span] = spans_by_name(traces_data([(TRACE.hex(), [doc])], 0)).values()
    assert span["attributes"][0] == {"key": "digest", "value": string("fbff")}
    assert span["links"][0]["attributes"] == [{"key": "token", "value": string("Bw==")}]


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_stored_times_read_back_to_the_nanosecond(nanos):
    assert iso_to_nanos(nanos_to_iso(nanos)) == nanos


# --- trace summaries ----------------------------------------------------------------------


def test_trace_summary():
    assert trace_summary(TRACE.hex(), documents(), 0) == {
        "traceId": TRACE.hex(),
        "rootServiceName": "frontend",
        "rootOperationName": "GET /cart",
        "minStartTimeUnixNano": str(T0),
        "maxEndTimeUnixNano": str(T0 + 250_000_999),
        "spanCount": 3,
        "errorSpanCount": 1,
        "orphanSpanCount": 0,
        "services": [
            {"name": "cart", "spanCount": 2, "errorSpanCount": 1},
            {"name": "frontend", "spanCount": 1, "errorSpanCount": 0},
        ],
    }


def test_summary_without_a_root_counts_orphans():
    docs = [doc for doc in documents() if doc["name"] != "GET /cart"]
    summary = trace_summary(TRACE.hex(), docs + docs, 0)
    assert summary["rootServiceName"] == "" and summary["rootOperationName"] == ""
    assert summary["spanCount"] == 2 and summary["orphanSpanCount"] == 1  # cart.get's parent
    assert summary["minStartTimeUnixNano"] == str(T0 + 1_000)


def test_summary_times_are_clock_skew_corrected():
    docs = documents(skewed_trace())
    assert trace_summary(TRACE.hex(), docs, 0)["minStartTimeUnixNano"] == str(T0 - 45 * MS)
    adjusted = trace_summary(TRACE.hex(), docs, 5_000_000)
    assert adjusted["minStartTimeUnixNano"] == str(T0)
    assert adjusted["maxEndTimeUnixNano"] == str(T0 + 100 * MS)
