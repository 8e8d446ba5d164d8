"""Synthetic but realistic OTLP export requests for benchmarks.

A request looks like what an SDK's batch processor sends: 512 spans from many concurrent
traces of one service, each span with a dozen attributes of typical HTTP/RPC/DB shape.
"""

from __future__ import annotations

import random

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.wire.otlp import ExportTraceServiceRequest, set_any_value

SERVICES = ("frontend", "checkout", "payments", "cart", "catalog", "shipping", "users")


def _attribute(span_or_resource, key: str, value) -> None:
    set_any_value(span_or_resource.attributes.add(key=key).value, value)


def build_export_request(
    rng: random.Random, spans: int = 512, traces: int = 50, service: str | None = None
) -> ExportTraceServiceRequest:
    """One export request with ``spans`` spans spread over ``traces`` traces."""
    service = service or rng.choice(SERVICES)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (
        ("service.name", service),
        ("service.version", "1.4.2"),
        ("deployment.environment", "prod"),
        ("host.name", f"{service}-{rng.randrange(40):02d}"),
        ("telemetry.sdk.language", "python"),
    ):
        _attribute(resource_spans.resource, key, value)
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.bench"
    trace_ids = [rng.randbytes(16) for _ in range(traces)]
    # Each trace is a tree: a span's parent is one of the trace's earlier spans.
    spans_of_trace: list[list[bytes]] = [[] for _ in range(traces)]
    start = 1_700_000_000_000_000_000 + rng.randrange(10**12)
    for number in range(spans):
        duration = int(rng.lognormvariate(15, 1.2))
        earlier = spans_of_trace[number % traces]
        span_id = rng.randbytes(8)
        parent_span_id = rng.choice(earlier) if earlier else b""
        earlier.append(span_id)
        span = scope.spans.add(
            trace_id=trace_ids[number % traces],
            span_id=span_id,
            parent_span_id=parent_span_id,
            name=rng.choice(("GET /api/cart", "POST /api/checkout", "SELECT orders", "redis GET")),
            kind=rng.choice(
                (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL)
            ),
            start_time_unix_nano=start + number * 1000,
            end_time_unix_nano=start + number * 1000 + duration,
        )
        for key, value in (
            ("http.request.method", "GET"),
            ("http.route", "/api/cart/{id}"),
            ("http.response.status_code", 200),
            ("url.path", f"/api/cart/{rng.randrange(10**6)}"),
            ("server.address", "cart.internal"),
            ("network.peer.port", 8080),
            ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
            ("db.system", "postgresql"),
            ("thread.id", rng.randrange(64)),
            ("retry", False),
        ):
            _attribute(span, key, value)
        if rng.random() < 0.01:
            span.status.code = 2
            span.status.message = "upstream timeout"
    return request


def build_request_bodies(count: int, seed: int = 1, spans: int = 512) -> list[bytes]:
    rng = random.Random(seed)
    return [build_export_request(rng, spans).SerializeToString() for _ in range(count)]


def produce_waiting(producer, topic: str, messages: list[tuple]) -> None:
    """Produce (partition, value[, headers]) tuples, waiting whenever librdkafka's queue is full."""
    for partition, value, *headers in messages:
        while True:
            try:
                producer.produce(
                    topic, value, partition=partition, headers=headers[0] if headers else None
                )
                break
            except BufferError:
                producer.poll(0.05)
    producer.poll(0)
