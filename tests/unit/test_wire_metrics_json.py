"""Span-metrics messages in OTLP/JSON: the OTLP specification's mapping, the JSON Schema,
and what a consumer without spansieve's code reads back."""

from __future__ import annotations

import base64
import copy
import json
import re
from importlib import resources
from typing import get_args

import jsonschema
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.config.settings import Settings
from pipeline.metrics.otlp import encode_red_windows, encode_service_graph_windows
from pipeline.metrics.red import Dimension, RedAggregator, RedConfig
from pipeline.metrics.service_graph import ServiceGraph
from pipeline.wire.metrics_json import (
    CONTENT_TYPES,
    ENCODINGS,
    SCHEMA_NAME,
    SCHEMA_PACKAGE,
    MessageDecodeError,
    decode,
    encode,
    encoding_of,
    from_json_dict,
    json_schema,
    to_json_dict,
)
from tests.unit.metrics.spans import span, tid, trace

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_010 * S  # aligned on a 15 s window
HEX_TRACE = re.compile(r"^[0-9a-f]{32}$")
HEX_SPAN = re.compile(r"^[0-9a-f]{16}$")
INT64_FIELDS = {"startTimeUnixNano", "timeUnixNano", "asInt", "count"}


def sid(i: int) -> bytes:
    return i.to_bytes(8, "big")


def red_request(config: RedConfig | None = None) -> ExportMetricsServiceRequest:
    """Two services; a dimension, all three status codes, exemplars and an overflow series."""
    agg = RedAggregator(
        config or RedConfig(dimensions=(Dimension("http.method"),), max_series_per_service=3)
    )
    agg.add_trace(
        trace(
            span("api", "GET /", "server", T0 + S, T0 + S + 3 * MS, span_id=sid(10),
                 attributes={"http.method": "GET"}, trace_id=tid(7)),
            span("api", "GET /", "server", T0 + S, T0 + S + 120 * MS, status="error",
                 span_id=sid(11), trace_id=tid(7)),
            span("api", "POST /", "server", T0 + S, T0 + S + 7 * MS, span_id=sid(12),
                 trace_id=tid(7)),
            # api's fourth and fifth series: over the limit of 3 -> the overflow series
            span("api", "PUT /", "server", T0 + S, T0 + S + 9 * MS, span_id=sid(13),
                 trace_id=tid(7)),
            span("api", "DELETE /", "server", T0 + S, T0 + S + 1 * MS, span_id=sid(14),
                 trace_id=tid(7)),
            span("db", "SELECT", "client", T0 + 2 * S, T0 + 2 * S + MS, status="ok",
                 span_id=sid(15), trace_id=tid(7)),
        ),
        tid(7),
        True,
    )  # fmt: skip
    agg.add_trace(
        trace(span("api", "GET /", "server", T0 + 3 * S, T0 + 3 * S + 4 * MS, trace_id=tid(8))),
        tid(8),
        False,
    )
    return encode_red_windows(agg.close(T0 + 15 * S))


def add_call(g: ServiceGraph, n: int, at: int, *, kept: bool, error: bool = False) -> None:
    """frontend --CLIENT--> backend (SERVER child), ending at ``at``."""
    g.add_trace(
        trace(
            span("frontend", "GET /api", "client", at - 30 * MS, at, span_id=sid(1),
                 trace_id=tid(n)),
            span("backend", "GET /api", "server", at - 30 * MS, at - 10 * MS, span_id=sid(2),
                 parent=sid(1), trace_id=tid(n), status="error" if error else "unset"),
        ),
        tid(n),
        kept,
    )  # fmt: skip


def graph_request(*, failure: bool = True) -> ExportMetricsServiceRequest:
    """Two edges (a plain request, a database), one failure, kept and dropped exemplars."""
    g = ServiceGraph()
    add_call(g, 0xA1, T0 + 1 * S, kept=True)
    add_call(g, 0xB2, T0 + 2 * S, kept=False, error=failure)
    g.add_trace(
        trace(
            span("backend", "SELECT", "client", T0 + 3 * S, T0 + 3 * S + 5 * MS, span_id=sid(3),
                 attributes={"db.name": "orders"}, trace_id=tid(0xC3)),
        ),
        tid(0xC3),
        False,
    )  # fmt: skip
    return encode_service_graph_windows(g.close(T0 + 15 * S))


def as_json(request: ExportMetricsServiceRequest) -> dict:
    """What a consumer's plain JSON parser sees in the message value."""
    return json.loads(encode(request, "json"))


def walk(node):
    """(key, value) of every dict entry under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def metric(message: dict, name: str) -> dict:
    """The first metric of that name (RED: the first service's, api)."""
    (m,) = [
        m
        for rm in message["resourceMetrics"]
        for sm in rm["scopeMetrics"]
        for m in sm["metrics"]
        if m["name"] == name
    ][:1]
    return m


def attrs(point: dict) -> dict:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in point["attributes"]}


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=None)


# -- the schema ------------------------------------------------------------------------


def test_schema_is_package_data_and_draft_2020_12() -> None:
    path = resources.files(SCHEMA_PACKAGE) / SCHEMA_NAME
    assert path.is_file()
    schema = json.loads(path.read_text())
    assert schema == json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(
    "request_of",
    [
        red_request,
        graph_request,
        lambda: graph_request(failure=False),
        # no bound configured: one bucket, explicitBounds left out
        lambda: red_request(RedConfig(buckets_ms=(), exemplars_per_series=0)),
    ],
    ids=["red", "service-graph", "service-graph-no-failure", "red-no-bounds-no-exemplars"],
)
def test_messages_from_real_windows_satisfy_the_schema(request_of, validator) -> None:
    message = as_json(request_of())
    errors = sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_validated_red_message_has_what_the_schema_describes(validator) -> None:
    """The red message validated above holds exemplars, an error series, an overflow series."""
    message = as_json(red_request())
    validator.validate(message)
    services = {
        rm["resource"]["attributes"][0]["value"]["stringValue"] for rm in message["resourceMetrics"]
    }
    assert services == {"api", "db"}
    points = metric(message, "traces.span.metrics.calls")["sum"]["dataPoints"]
    by_name = {attrs(p).get("span.name", "overflow"): p for p in points if attrs(p)}
    overflow = [p for p in points if attrs(p).get("otel.metric.overflow") is True]
    assert len(overflow) == 1 and attrs(overflow[0]) == {
        "service.name": "api",
        "otel.metric.overflow": True,
    }
    # PUT, DELETE and trace 8's GET (no http.method: a series of its own) are over the limit
    assert overflow[0]["asInt"] == "3"
    assert {"GET /", "POST /"} <= set(by_name)
    assert any(attrs(p).get("status.code") == "STATUS_CODE_ERROR" for p in points)
    assert all(p.get("exemplars") for p in points)
    get_ok = [
        p
        for p in points
        if attrs(p).get("http.method") == "GET" and attrs(p)["status.code"] == "STATUS_CODE_UNSET"
    ]
    (ex,) = get_ok[0]["exemplars"]
    assert ex == {
        "timeUnixNano": str(T0 + S + 3 * MS),
        "asDouble": 3.0,
        "spanId": sid(10).hex(),
        "traceId": tid(7).hex(),
    }
    duration = metric(message, "traces.span.metrics.duration")
    assert duration["unit"] == "ms"
    assert duration["histogram"]["aggregationTemporality"] == 1
    (h,) = [
        p
        for p in duration["histogram"]["dataPoints"]
        if attrs(p).get("status.code") == "STATUS_CODE_ERROR"
    ]
    assert (h["count"], h["sum"]) == ("1", 120.0)
    assert len(h["bucketCounts"]) == len(h["explicitBounds"]) + 1


def test_the_validated_graph_message_has_what_the_schema_describes(validator) -> None:
    message = as_json(graph_request())
    validator.validate(message)
    (rm,) = message["resourceMetrics"]
    assert "resource" not in rm  # empty resource: left out
    total = metric(message, "traces_service_graph_request_total")
    assert total["sum"]["aggregationTemporality"] == 1 and total["sum"]["isMonotonic"] is True
    by_edge = {tuple(attrs(p).values()): p for p in total["sum"]["dataPoints"]}
    assert set(by_edge) == {("frontend", "backend", ""), ("backend", "orders", "database")}
    assert by_edge[("frontend", "backend", "")]["asInt"] == "2"
    # connection_type "" is written: AnyValue's string is a oneof member
    assert by_edge[("frontend", "backend", "")]["attributes"][2] == {
        "key": "connection_type",
        "value": {"stringValue": ""},
    }
    (ex,) = by_edge[("frontend", "backend", "")]["exemplars"]
    assert ex == {
        "timeUnixNano": str(T0 + 15 * S),
        "asInt": "1",
        "traceId": tid(0xA1).hex(),
        "filteredAttributes": [{"key": "spansieve.trace.kept", "value": {"boolValue": True}}],
    }
    (ex,) = by_edge[("backend", "orders", "database")]["exemplars"]
    assert ex["filteredAttributes"][0]["value"] == {"boolValue": False}  # false is written
    failed = metric(message, "traces_service_graph_request_failed_total")
    (fp,) = failed["sum"]["dataPoints"]
    assert fp["asInt"] == "1" and "exemplars" not in fp
    for name in (
        "traces_service_graph_request_server_seconds",
        "traces_service_graph_request_client_seconds",
    ):
        m = metric(message, name)
        assert m["unit"] == "s"
        for p in m["histogram"]["dataPoints"]:
            assert int(p["count"]) == sum(int(c) for c in p["bucketCounts"])


@pytest.mark.parametrize("request_of", [red_request, graph_request], ids=["red", "graph"])
def test_otlp_json_mapping_strings_hex_camel_case_defaults_left_out(request_of) -> None:
    message = as_json(request_of())
    seen_ids = 0
    for key, value in walk(message):
        assert re.fullmatch(r"[a-z][A-Za-z]*", key), f"{key!r} is not lowerCamelCase"
        if key in INT64_FIELDS:
            assert isinstance(value, str) and value.isdigit(), (key, value)
        if key == "bucketCounts":
            assert value and all(isinstance(c, str) and c.isdigit() for c in value)
        if key == "aggregationTemporality":
            assert value == 1  # DELTA, as an integer (not "AGGREGATION_TEMPORALITY_DELTA")
        if key == "traceId":
            assert HEX_TRACE.match(value), value
            seen_ids += 1
        if key == "spanId":
            assert HEX_SPAN.match(value), value
            seen_ids += 1
        # default values are left out (nothing here sets these)
        assert key not in {"flags", "schemaUrl", "description", "droppedAttributesCount"}
        if key == "isMonotonic":
            assert value is True
    assert seen_ids > 0
    for m in (m for k, v in walk(message) if k == "metrics" for m in v):
        if m["name"].endswith(".calls") or m["name"].endswith("_total"):
            assert "unit" not in m  # "" left out


# -- an outside consumer ----------------------------------------------------------------


def consumer_parse(value: bytes) -> ExportMetricsServiceRequest:
    """How a consumer with only json, json_format and the OTLP proto classes reads a message:
    OTLP/JSON's ids are hex where proto3 JSON expects base64, so convert them first."""
    data = json.loads(value)
    for rm in data.get("resourceMetrics", []):
        for sm in rm.get("scopeMetrics", []):
            for m in sm.get("metrics", []):
                for kind in ("sum", "gauge", "histogram", "exponentialHistogram"):
                    for point in m.get(kind, {}).get("dataPoints", []):
                        for ex in point.get("exemplars", []):
                            for field in ("traceId", "spanId"):
                                if field in ex:
                                    raw = bytes.fromhex(ex[field])
                                    ex[field] = base64.b64encode(raw).decode()
    request = ExportMetricsServiceRequest()
    json_format.ParseDict(data, request)
    return request


@pytest.mark.parametrize("request_of", [red_request, graph_request], ids=["red", "graph"])
def test_outside_consumer_reads_the_same_message_as_protobuf(request_of) -> None:
    request = request_of()
    from_protobuf = ExportMetricsServiceRequest.FromString(encode(request, "protobuf"))
    from_json = consumer_parse(encode(request, "json"))
    assert from_json == from_protobuf == request
    assert from_json.SerializeToString(deterministic=True) == request.SerializeToString(
        deterministic=True
    )


# -- encode / decode --------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "request_of",
    [red_request, graph_request, ExportMetricsServiceRequest],
    ids=["red", "graph", "empty"],
)
def test_decode_encode_round_trip(encoding: str, request_of) -> None:
    request = request_of()
    value = encode(request, encoding)
    assert isinstance(value, bytes)
    assert decode(value, encoding) == request
    assert from_json_dict(to_json_dict(request)) == request


def test_protobuf_encoding_is_the_plain_serialization() -> None:
    request = red_request()
    assert encode(request, "protobuf") == request.SerializeToString()
    assert encode(ExportMetricsServiceRequest(), "protobuf") == b""
    assert encode(ExportMetricsServiceRequest(), "json") == b"{}"


def test_decode_follows_the_receiver_rules_of_the_specification() -> None:
    """Upper-case hex, 64-bit integers as numbers, enum names, unknown fields: all read."""
    request = graph_request()
    data = to_json_dict(request)
    lenient = copy.deepcopy(data)
    sm = lenient["resourceMetrics"][0]["scopeMetrics"][0]
    sm["someFutureField"] = {"x": 1}
    total = sm["metrics"][0]
    assert total["name"] == "traces_service_graph_request_total"
    total["sum"]["aggregationTemporality"] = "AGGREGATION_TEMPORALITY_DELTA"
    for point in total["sum"]["dataPoints"]:
        point["asInt"] = int(point["asInt"])
        point["timeUnixNano"] = int(point["timeUnixNano"])
        for ex in point["exemplars"]:
            ex["traceId"] = ex["traceId"].upper()
    assert decode(json.dumps(lenient).encode(), "json") == request
    assert from_json_dict(lenient) == request
    # from_json_dict leaves its input alone
    assert [ex["traceId"] for p in total["sum"]["dataPoints"] for ex in p["exemplars"]] == [
        tid(0xC3).hex().upper(),
        tid(0xA1).hex().upper(),
    ]


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        (b"{not json", "json"),
        (b"[]", "json"),
        (b'{"resourceMetrics": 3}', "json"),
        (b"\xff\xff\xff", "protobuf"),
    ],
)
def test_decode_rejects_what_is_not_a_request(value: bytes, encoding: str) -> None:
    with pytest.raises(MessageDecodeError):
        decode(value, encoding)


def test_decode_rejects_a_base64_trace_id() -> None:
    data = to_json_dict(graph_request())
    ex = data["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0][
        "exemplars"
    ][0]
    ex["traceId"] = base64.b64encode(tid(0xA1)).decode()
    with pytest.raises(MessageDecodeError, match="not hex"):
        decode(json.dumps(data).encode(), "json")


def test_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="xml"):
        encode(ExportMetricsServiceRequest(), "xml")
    with pytest.raises(ValueError, match="xml"):
        decode(b"", "xml")


# -- the schema rejects -----------------------------------------------------------------


def first_sum(message: dict) -> dict:
    return first_metric(message)["sum"]


def first_metric(message: dict) -> dict:
    return message["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]


def in_sum(key: str, value):
    return lambda m: first_sum(m).__setitem__(key, value)


def in_point(key: str, value):
    return lambda m: first_sum(m)["dataPoints"][0].__setitem__(key, value)


def in_exemplar(key: str, value):
    return lambda m: first_sum(m)["dataPoints"][0]["exemplars"][0].__setitem__(key, value)


DELTA_NAME = "AGGREGATION_TEMPORALITY_DELTA"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


REJECTED = {
    # cumulative instead of delta
    "red-cumulative": (red_request, in_sum("aggregationTemporality", 2)),
    "graph-cumulative": (graph_request, in_sum("aggregationTemporality", 2)),
    # the enum's name instead of its integer
    "temporality-name": (red_request, in_sum("aggregationTemporality", DELTA_NAME)),
    # base64 ids (proto3 JSON's bytes) instead of hex
    "red-base64-trace-id": (red_request, in_exemplar("traceId", b64(tid(7)))),
    "graph-base64-trace-id": (graph_request, in_exemplar("traceId", b64(tid(0xC3)))),
    "base64-span-id": (red_request, in_exemplar("spanId", b64(sid(10)))),
    # upper-case hex: decoders read it, spansieve never writes it
    "upper-case-hex": (red_request, in_exemplar("traceId", "0A" * 16)),
    # 64-bit integers as JSON numbers
    "asInt-number": (red_request, in_point("asInt", 1)),
    "time-number": (red_request, in_point("timeUnixNano", T0)),
    # snake_case field names
    "snake-case": (red_request, lambda m: in_sum("data_points", first_sum(m).pop("dataPoints"))(m)),
    # a metric spansieve does not emit
    "unknown-metric": (red_request, lambda m: first_metric(m).__setitem__("name", "calls")),
    # not monotonic
    "not-monotonic": (graph_request, lambda m: first_sum(m).pop("isMonotonic")),
    # a RED resource without service.name
    "red-no-resource": (red_request, lambda m: m["resourceMetrics"][0].pop("resource")),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REJECTED))
def test_schema_rejects(case: str, validator) -> None:
    request_of, change = REJECTED[case]
    message = as_json(request_of())
    assert validator.is_valid(message)
    change(message)
    assert not validator.is_valid(message)


# -- the setting and the header ---------------------------------------------------------


def test_setting_content_types_and_encodings_agree() -> None:
    annotation = Settings.model_fields["span_metrics_encoding"].annotation
    assert set(get_args(annotation)) == set(ENCODINGS) == set(CONTENT_TYPES)
    assert Settings.model_fields["span_metrics_encoding"].default == "protobuf"
    description = Settings.model_fields["span_metrics_encoding"].description
    assert "otlp_proto" in description and "otlp_json" in description
    assert CONTENT_TYPES == {"protobuf": "application/x-protobuf", "json": "application/json"}


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANSIEVE_SPAN_METRICS_ENCODING", "json")
    assert Settings().span_metrics_encoding == "json"
    monkeypatch.setenv("SPANSIEVE_SPAN_METRICS_ENCODING", "avro")
    with pytest.raises(ValueError):
        Settings()


def test_encoding_of_a_content_type_header() -> None:
    assert encoding_of(b"application/json") == "json"
    assert encoding_of("Application/JSON; charset=utf-8") == "json"
    assert encoding_of(b"application/x-protobuf") == "protobuf"
    assert encoding_of(None) == "protobuf"  # messages sent before the header existed
    assert encoding_of("text/plain", default="json") == "json"
