"""Gateway benchmark: spans per gateway CPU-second over HTTP and gRPC into real Kafka.

"Per core" divides the spans the gateway accepted by the CPU seconds (user + system) its
own process used, so the load client, Kafka and OpenSearch sharing the machine do not
distort the figure. Ceilings measured in the same run: raw protobuf parse rate of the same
requests, and a raw confluent-kafka produce of the same bytes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
import httpx
import psutil
from confluent_kafka import Producer

from pipeline.bench.cpu import cpu_seconds
from pipeline.bench.workload import build_request_bodies, produce_waiting
from pipeline.config.settings import Settings
from pipeline.gateway.validation import span_problem
from pipeline.kafka.topics import ensure_topics
from pipeline.local.run import start_component, stop_components, wait_until
from pipeline.wire.otlp import ExportTraceServiceRequest, count_spans
from pipeline.wire.pieces import gateway_messages, split_by_partition

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def spans_in(body: bytes) -> int:
    return count_spans(ExportTraceServiceRequest.FromString(body))


def parse_ceiling(bodies: list[bytes], seconds: float) -> float:
    """Spans/s of upb parsing alone (one thread): the cost floor of any OTLP receiver."""
    spans_per_body = spans_in(bodies[0])
    parsed = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for body in bodies:
            ExportTraceServiceRequest.FromString(body)
            parsed += spans_per_body
    return parsed / (time.perf_counter() - started)


def cost_breakdown(bodies: list[bytes], partitions: int) -> dict[str, float]:
    """Microseconds per span of each in-process step of the gateway's hot path."""
    spans = spans_in(bodies[0]) * len(bodies)
    t0 = time.perf_counter()
    requests = [ExportTraceServiceRequest.FromString(body) for body in bodies]
    t1 = time.perf_counter()

    def accept(span) -> bool:
        return span_problem(span) is None

    groups = [split_by_partition(r.resource_spans, partitions, accept) for r in requests]
    t2 = time.perf_counter()
    for group in groups:
        for message in group.values():
            message.value()
            message.header()
    t3 = time.perf_counter()
    per_span = 1e6 / spans
    return {
        "parse_us": (t1 - t0) * per_span,
        "validate_split_us": (t2 - t1) * per_span,
        "serialize_us": (t3 - t2) * per_span,
    }


def kafka_produce_ceiling(settings: Settings, bodies: list[bytes], seconds: float) -> float:
    """Spans/s of producing the same per-partition messages straight with confluent-kafka."""
    topic = settings.topic("spans")
    payloads = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        payloads.append(gateway_messages(request.resource_spans, settings.partitions))
    spans_per_body = spans_in(bodies[0])
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
        }
    )
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for messages in payloads:
            produce_waiting(producer, topic, messages)
            sent += spans_per_body
    producer.flush(30)
    return sent / (time.perf_counter() - started)


async def _drive(
    send: Callable[[bytes], Awaitable[bool]], bodies: list[bytes], seconds: float, workers: int
) -> tuple[int, int]:
    """Send bodies round-robin from several workers for seconds; (accepted, refused)."""
    accepted = refused = 0
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal accepted, refused
        index = offset
        while time.monotonic() < deadline:
            if await send(bodies[index % len(bodies)]):
                accepted += 1
            else:
                refused += 1
            index += workers

    await asyncio.gather(*(worker(n) for n in range(workers)))
    return accepted, refused


async def _http_load(url: str, bodies: list[bytes], seconds: float, workers: int):
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        headers = {"content-type": "application/x-protobuf"}

        async def send(body: bytes) -> bool:
            reply = await client.post(url, content=body, headers=headers)
            return reply.status_code == 200

        return await _drive(send, bodies, seconds, workers)


async def _grpc_load(target: str, bodies: list[bytes], seconds: float, workers: int):
    async with grpc.aio.insecure_channel(target) as channel:
        export = channel.unary_unary(EXPORT_METHOD)

        async def send(body: bytes) -> bool:
            try:
                await export(body, timeout=30)
                return True
            except grpc.aio.AioRpcError:
                return False

        return await _drive(send, bodies, seconds, workers)


def _measure(process: psutil.Process, load) -> tuple[int, int, float, float]:
    before = cpu_seconds(process)
    started = time.perf_counter()
    accepted, refused = asyncio.run(load)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(process) - before
    return accepted, refused, cpu, wall


def bench_gateway(base: Settings, seconds: float, workers: int = 8) -> dict:
    """Run a gateway on private topics and measure it over HTTP and gRPC."""
    settings = base.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}"})
    ensure_topics(settings)
    bodies = build_request_bodies(32)
    spans_per_body = spans_in(bodies[0])
    result: dict = {
        "request_spans": spans_per_body,
        "request_bytes": sum(map(len, bodies)) // len(bodies),
        "parse_ceiling_spans_per_s": parse_ceiling(bodies, min(seconds, 3)),
        "breakdown_us_per_span": cost_breakdown(bodies, settings.partitions),
        "kafka_produce_ceiling_spans_per_s": kafka_produce_ceiling(
            settings, bodies, min(seconds, 5)
        ),
    }
    child = start_component("gateway", settings)
    try:
        ready = f"http://127.0.0.1:{settings.gateway_metrics_port}/readyz"
        if not wait_until(lambda: httpx.get(ready).status_code == 200, "gateway starting", 60):
            raise RuntimeError("gateway did not become ready")
        process = psutil.Process(child.pid)
        url = f"http://127.0.0.1:{settings.gateway_http_port}/v1/traces"
        target = f"127.0.0.1:{settings.gateway_grpc_port}"
        for transport, load in (
            ("http", lambda: _http_load(url, bodies, seconds, workers)),
            ("grpc", lambda: _grpc_load(target, bodies, seconds, workers)),
        ):
            accepted, refused, cpu, wall = _measure(process, load())
            spans = accepted * spans_per_body
            result[transport] = {
                "requests_ok": accepted,
                "requests_refused": refused,
                "spans_per_s_wall": spans / wall,
                "gateway_cpu_s": cpu,
                "spans_per_core_s": spans / cpu if cpu else 0.0,
            }
            result[transport]["ratio_to_parse_ceiling"] = (
                result[transport]["spans_per_core_s"] / result["parse_ceiling_spans_per_s"]
            )
    finally:
        stop_components([child])
    return result
