"""The gateway against real Kafka: SDK exporters, partial success, JSON, gzip, limits, auth."""

from __future__ import annotations

import asyncio
import gzip
import os

import grpc
import httpx
import orjson
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from pipeline.bench.metrics_scrape import scrape
from pipeline.config.settings import Settings
from pipeline.wire.otlp import ExportTraceServiceRequest, ExportTraceServiceResponse
from pipeline.wire.partitioner import partition_for_trace
from tests.integration.conftest import running_gateway
from tests.integration.kafka_helpers import read_spans

pytestmark = pytest.mark.integration

PROTOBUF = {"content-type": "application/x-protobuf"}
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def gateway(pipeline_settings: Settings):
    with running_gateway(pipeline_settings) as settings:
        yield settings


def http_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.gateway_http_port}/v1/traces"


def build_request(
    spans: int, service: str = "frontend", trace_id: bytes | None = None
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = service
    scope = resource_spans.scope_spans.add()
    for number in range(spans):
        scope.spans.add(
            trace_id=trace_id or os.urandom(16),
            span_id=os.urandom(8),
            name=f"op{number}",
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_000_100_000_000,
        )
    return request


def export_with_sdk(exporter, service: str) -> set[bytes]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    trace_ids = set()
    for _ in range(5):
        with tracer.start_as_current_span("parent") as parent, tracer.start_as_current_span("kid"):
            trace_ids.add(parent.get_span_context().trace_id.to_bytes(16, "big"))
    provider.shutdown()
    return trace_ids


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_sdk_exporters_reach_kafka_partitioned_by_trace(gateway: Settings, transport: str):
    if transport == "http":
        exporter = HttpExporter(endpoint=http_url(gateway), compression=Compression.Gzip)
    else:
        exporter = GrpcExporter(
            endpoint=f"127.0.0.1:{gateway.gateway_grpc_port}",
            insecure=True,
            compression=grpc.Compression.Gzip,
        )
    trace_ids = export_with_sdk(exporter, f"sdk-{transport}")

    found = read_spans(gateway, trace_ids, expected=10)
    assert len(found) == 10  # 5 traces x 2 spans
    for partition, span in found.values():
        assert partition == partition_for_trace(span.trace_id, gateway.partitions)


def test_partial_success_over_http_protobuf(gateway: Settings):
    request = build_request(3)
    bad = request.resource_spans[0].scope_spans[0].spans
    bad[0].trace_id = bytes(16)  # all-zero trace id
    bad[1].end_time_unix_nano = bad[1].start_time_unix_nano - 1  # ends before it starts
    good_trace = bad[2].trace_id

    reply = httpx.post(http_url(gateway), content=request.SerializeToString(), headers=PROTOBUF)

    assert reply.status_code == 200
    response = ExportTraceServiceResponse.FromString(reply.content)
    assert response.partial_success.rejected_spans == 2
    assert "trace_id must be 16 bytes" in response.partial_success.error_message
    assert "before start" in response.partial_success.error_message
    assert len(read_spans(gateway, {good_trace}, expected=1)) == 1


def test_partial_success_over_grpc(gateway: Settings):
    request = build_request(2)
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01\x02"
    with grpc.insecure_channel(f"127.0.0.1:{gateway.gateway_grpc_port}") as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        raw = export(request.SerializeToString(), timeout=10)
    response = ExportTraceServiceResponse.FromString(raw)
    assert response.partial_success.rejected_spans == 1
    assert "span_id must be 8 bytes" in response.partial_success.error_message


def test_otlp_json_with_hex_ids_and_string_ints(gateway: Settings):
    trace_id = os.urandom(16)
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id.hex(),
                                "spanId": os.urandom(8).hex(),
                                "name": "json-op",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": 1700000000500000000,
                                "status": {"code": 2},
                                "someFutureField": {"ignored": True},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    reply = httpx.post(
        http_url(gateway), content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {}
    [(_, span)] = read_spans(gateway, {trace_id}, expected=1).values()
    assert (span.name, span.kind, span.status.code) == ("json-op", 2, 2)


def test_json_errors_name_the_field(gateway: Settings):
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}
    reply = httpx.post(
        http_url(gateway), content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId" in reply.json()["message"]


def test_gzip_bodies_and_bombs(gateway: Settings):
    trace_id = os.urandom(16)
    body = build_request(4, trace_id=trace_id).SerializeToString()
    reply = httpx.post(
        http_url(gateway),
        content=gzip.compress(body),
        headers={**PROTOBUF, "content-encoding": "gzip"},
    )
    assert reply.status_code == 200
    assert len(read_spans(gateway, {trace_id}, expected=4)) == 4

    bomb = gzip.compress(bytes(gateway.gateway_max_decompressed_bytes + 1))
    reply = httpx.post(
        http_url(gateway), content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"}
    )
    assert reply.status_code == 413
    assert "decompressed body exceeds" in status_pb2.Status.FromString(reply.content).message

    reply = httpx.post(
        http_url(gateway), content=b"not gzip", headers={**PROTOBUF, "content-encoding": "gzip"}
    )
    assert reply.status_code == 400


def test_limits_and_bad_input(gateway: Settings):
    too_big = bytes(gateway.gateway_max_body_bytes + 1)
    assert httpx.post(http_url(gateway), content=too_big, headers=PROTOBUF).status_code == 413
    reply = httpx.post(http_url(gateway), content=b"{}", headers={"content-type": "text/plain"})
    assert reply.status_code == 415
    reply = httpx.post(http_url(gateway), content=b"\xff\xff\xff", headers=PROTOBUF)
    assert reply.status_code == 400
    assert "malformed OTLP protobuf" in status_pb2.Status.FromString(reply.content).message


def test_too_many_spans(pipeline_settings: Settings):
    with running_gateway(pipeline_settings, gateway_max_spans_per_request=10) as gateway:
        body = build_request(11).SerializeToString()
        reply = httpx.post(http_url(gateway), content=body, headers=PROTOBUF)
        assert reply.status_code == 413
        assert "limit is 10" in status_pb2.Status.FromString(reply.content).message
        address = f"127.0.0.1:{gateway.gateway_grpc_port}"
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary(EXPORT_METHOD)(body, timeout=10)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "limit is 10" in failure.value.details()


def test_api_keys_and_service_allow_list(pipeline_settings: Settings, tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# key services\nfront-key frontend\n")
    with running_gateway(
        pipeline_settings, gateway_api_keys="admin-key", gateway_api_keys_file=keys_file
    ) as gateway:
        body = build_request(1, service="checkout").SerializeToString()
        url = http_url(gateway)
        assert httpx.post(url, content=body, headers=PROTOBUF).status_code == 401
        wrong = {**PROTOBUF, "authorization": "Bearer nope"}
        assert httpx.post(url, content=body, headers=wrong).status_code == 401
        bearer = {**PROTOBUF, "authorization": "Bearer admin-key"}
        assert httpx.post(url, content=body, headers=bearer).status_code == 200
        header = {**PROTOBUF, "x-api-key": "admin-key"}
        assert httpx.post(url, content=body, headers=header).status_code == 200

        limited = {**PROTOBUF, "x-api-key": "front-key"}
        reply = httpx.post(url, content=body, headers=limited)
        assert reply.status_code == 200
        partial = ExportTraceServiceResponse.FromString(reply.content).partial_success
        assert partial.rejected_spans == 1
        assert "not allowed" in partial.error_message

        with grpc.insecure_channel(f"127.0.0.1:{gateway.gateway_grpc_port}") as channel:
            export = channel.unary_unary(EXPORT_METHOD)
            with pytest.raises(grpc.RpcError) as refused:
                export(body, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            export(body, timeout=10, metadata=(("authorization", "Bearer admin-key"),))


def test_pii_is_redacted_before_kafka(pipeline_settings: Settings, tmp_path):
    config = tmp_path / "redaction.yaml"
    config.write_text(
        "allow_all_keys: true\n"
        "blocked_key_patterns: ['(?i)password']\n"
        "builtin_patterns: [credit_card, email]\n"
        "summary: info\n"
    )
    request = build_request(1)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="db.password").value.string_value = "hunter2"
    span.attributes.add(key="note").value.string_value = "card 4111 1111 1111 1111 ok"
    span.attributes.add(key="user").value.string_value = "mail jane@example.com now"
    with running_gateway(pipeline_settings, gateway_redaction=config) as gateway:
        reply = httpx.post(http_url(gateway), content=request.SerializeToString(), headers=PROTOBUF)
        assert reply.status_code == 200
    [(_, stored)] = read_spans(gateway, {span.trace_id}, expected=1).values()
    values = {kv.key: kv.value for kv in stored.attributes}
    assert values["db.password"].string_value == "****"
    assert values["note"].string_value == "card **** ok"
    assert values["user"].string_value == "mail **** now"
    assert values["redaction.masked.count"].int_value == 3


def test_inflight_cap_answers_429_and_metrics_count_outcomes(pipeline_settings: Settings):
    body = build_request(200).SerializeToString()
    with running_gateway(pipeline_settings, gateway_max_inflight_bytes=len(body) + 1) as gateway:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                sends = [
                    client.post(http_url(gateway), content=body, headers=PROTOBUF)
                    for _ in range(40)
                ]
                return await asyncio.gather(*sends)

        replies = asyncio.run(burst())
        codes = [reply.status_code for reply in replies]
        assert set(codes) <= {200, 429}
        assert 200 in codes and 429 in codes
        assert all(r.headers["retry-after"] == "1" for r in replies if r.status_code == 429)

        text = httpx.get(f"http://127.0.0.1:{gateway.gateway_metrics_port}/metrics").text
        overloaded = 'spansieve_gateway_requests_total{outcome="overloaded",transport="http"}'
        assert f"{overloaded} {codes.count(429)}.0" in text
        assert f"spansieve_gateway_spans_accepted_total {codes.count(200) * 200}.0" in text


def test_concurrent_requests_share_one_message_per_partition(gateway: Settings):
    """Twenty requests sent at once, two of them holding spans of one trace: fewer Kafka
    messages than requests (unbatched, each would touch several partitions), and the
    trace arrives whole on its partition. Merging a trace's pieces is unit-tested."""
    shared_trace = os.urandom(16)
    requests = [build_request(4) for _ in range(18)]
    requests += [build_request(3, trace_id=shared_trace) for _ in range(2)]
    metrics_url = f"http://127.0.0.1:{gateway.gateway_metrics_port}/metrics"
    before = scrape(metrics_url).get("spansieve_gateway_kafka_messages_sent_total", 0.0)

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            replies = await asyncio.gather(
                *(
                    client.post(http_url(gateway), content=r.SerializeToString(), headers=PROTOBUF)
                    for r in requests
                )
            )
        return [reply.status_code for reply in replies]

    assert asyncio.run(send_all()) == [200] * len(requests)
    sent = scrape(metrics_url)["spansieve_gateway_kafka_messages_sent_total"] - before
    assert sent < len(requests)
    found = read_spans(gateway, {shared_trace}, expected=6)
    assert len(found) == 6
    assert len({partition for partition, _ in found.values()}) == 1


def with_payload(request: ExportTraceServiceRequest, size: int) -> ExportTraceServiceRequest:
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.attributes.add(key="payload").value.string_value = "x" * size
    return request


def test_requests_larger_than_a_kafka_message_per_partition_arrive_whole(gateway: Settings):
    """8 MB of spans of 100 traces: about 1 MB per partition, sent as several messages."""
    request = ExportTraceServiceRequest()
    for _ in range(100):
        request.resource_spans.extend(
            with_payload(build_request(8, trace_id=os.urandom(16)), 10_000).resource_spans
        )
    trace_ids = {rs.scope_spans[0].spans[0].trace_id for rs in request.resource_spans}
    body = request.SerializeToString()
    assert len(body) > 8_000_000

    reply = httpx.post(http_url(gateway), content=body, headers=PROTOBUF, timeout=30)

    assert reply.status_code == 200
    assert len(read_spans(gateway, trace_ids, expected=800, timeout=60)) == 800


def test_a_trace_too_large_for_one_message_is_refused_alone(gateway: Settings):
    huge = with_payload(build_request(120, trace_id=os.urandom(16)), 10_000)  # 1.2 MB
    small = build_request(2)

    async def send_both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(http_url(gateway), content=r.SerializeToString(), headers=PROTOBUF)
                    for r in (huge, small)
                )
            )

    refused, accepted = asyncio.run(send_both())
    assert refused.status_code == 413
    assert "one trace has" in status_pb2.Status.FromString(refused.content).message
    assert accepted.status_code == 200  # not failed along with it
    address = f"127.0.0.1:{gateway.gateway_grpc_port}"
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as failure:
        channel.unary_unary(EXPORT_METHOD)(huge.SerializeToString(), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
