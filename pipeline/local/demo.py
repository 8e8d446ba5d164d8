"""A demo trace made by the real OpenTelemetry Python SDK: three services, one error.

frontend (SERVER) -> checkout (CLIENT -> SERVER) -> payments (SERVER, fails with ERROR).
Each service has its own TracerProvider and resource, as separate processes would.
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

SERVICES = ("frontend", "checkout", "payments")


def _tracer(service: str, endpoint: str) -> tuple[TracerProvider, trace.Tracer]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider, provider.get_tracer("spansieve.demo")


def send_demo_trace(gateway_http: str = "http://127.0.0.1:4318", fail: bool = True) -> str:
    """Export one three-service trace to the gateway; returns its trace id (hex).

    With ``fail`` the payments span ends with status ERROR, so the trace is kept.
    """
    endpoint = f"{gateway_http.rstrip('/')}/v1/traces"
    providers = {}
    tracers = {}
    for service in SERVICES:
        providers[service], tracers[service] = _tracer(service, endpoint)

    def payments() -> None:
        with tracers["payments"].start_as_current_span(
            "Charge", kind=SpanKind.SERVER, attributes={"payment.amount": 42.5}
        ) as charge:
            time.sleep(0.005)
            if fail:
                charge.set_status(Status(StatusCode.ERROR, "card declined"))

    def checkout() -> None:
        with tracers["checkout"].start_as_current_span("PlaceOrder", kind=SpanKind.SERVER):
            time.sleep(0.005)
            with tracers["checkout"].start_as_current_span("charge", kind=SpanKind.CLIENT):
                payments()

    frontend = tracers["frontend"]
    with frontend.start_as_current_span(
        "GET /checkout", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"}
    ) as root:
        with frontend.start_as_current_span("checkout.place", kind=SpanKind.CLIENT):
            checkout()
        trace_id = format(root.get_span_context().trace_id, "032x")
    for provider in providers.values():
        provider.shutdown()
    return trace_id
