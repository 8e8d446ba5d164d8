"""OTLP/gRPC receiver: opentelemetry.proto.collector.trace.v1.TraceService/Export.

The method handler takes the raw request bytes so parsing errors become precise
INVALID_ARGUMENT answers instead of opaque deserialization failures. grpcio itself
inflates gzip-compressed requests and enforces the message size limit.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from pipeline.config.settings import Settings
from pipeline.gateway import metrics
from pipeline.gateway.auth import ApiKeyAuth
from pipeline.gateway.ingest import (
    KafkaUnavailable,
    Overloaded,
    SpanIngestor,
    TooManySpans,
    TraceTooLarge,
)
from pipeline.wire.otlp import DecodeError, ExportTraceServiceResponse, parse_export_request

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
RETRY_DELAY_SECONDS = 1


def _retryable_details(code: int, message: str) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying google.rpc.Status with RetryInfo (OTLP's retry hint)."""
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=RETRY_DELAY_SECONDS)
    )
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=code, message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


# Ingest failures -> (gRPC status, metric label, google.rpc code when retryable).
_FAILURES = {
    TooManySpans: (grpc.StatusCode.INVALID_ARGUMENT, "too_many_spans", None),
    TraceTooLarge: (grpc.StatusCode.INVALID_ARGUMENT, "trace_too_large", None),
    Overloaded: (grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded", code_pb2.RESOURCE_EXHAUSTED),
    KafkaUnavailable: (grpc.StatusCode.UNAVAILABLE, "unavailable", code_pb2.UNAVAILABLE),
}


class TraceServiceHandler:
    """Export: authenticate, parse, ingest; map failures to OTLP's gRPC status codes."""

    def __init__(self, ingestor: SpanIngestor, auth: ApiKeyAuth) -> None:
        self._ingestor = ingestor
        self._auth = auth

    async def export(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata() or ())
        principal = self._auth.authenticate(
            metadata.get("authorization"), metadata.get("x-api-key")
        )
        if principal is None:
            metrics.REQUESTS.labels("grpc", "unauthenticated").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key")
        metrics.BYTES_RECEIVED.inc(len(raw))
        try:
            request = parse_export_request(raw)
        except DecodeError as exc:
            metrics.REQUESTS.labels("grpc", "malformed").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OTLP protobuf: {exc}")
        try:
            outcome = await self._ingestor.ingest(request, len(raw), principal)
        except (TooManySpans, TraceTooLarge, Overloaded, KafkaUnavailable) as exc:
            status, label, retry_code = _FAILURES[type(exc)]
            metrics.REQUESTS.labels("grpc", label).inc()
            # grpc.aio wants a tuple of trailing metadata, never None (None fails the call
            # with UNKNOWN instead of the status meant).
            retry = _retryable_details(retry_code, str(exc)) if retry_code is not None else ()
            await context.abort(status, str(exc), retry)
        metrics.REQUESTS.labels("grpc", "partial" if outcome.rejected else "ok").inc()
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        return response.SerializeToString()


def _read(path) -> bytes:
    return path.read_bytes()


def build_grpc_server(
    settings: Settings, ingestor: SpanIngestor, auth: ApiKeyAuth
) -> grpc.aio.Server:
    """A grpc.aio server with the trace service on the gateway's gRPC port (TLS if set)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.gateway_max_decompressed_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    handler = TraceServiceHandler(ingestor, auth)
    method = grpc.unary_unary_rpc_method_handler(handler.export)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Export": method}),)
    )
    address = f"{settings.gateway_host}:{settings.gateway_grpc_port}"
    if settings.gateway_tls_cert and settings.gateway_tls_key:
        client_ca = settings.gateway_tls_client_ca
        credentials = grpc.ssl_server_credentials(
            [(_read(settings.gateway_tls_key), _read(settings.gateway_tls_cert))],
            root_certificates=_read(client_ca) if client_ca else None,
            require_client_auth=client_ca is not None,
        )
        server.add_secure_port(address, credentials)
    else:
        server.add_insecure_port(address)
    return server
