"""OTLP/HTTP receiver (POST /v1/traces, protobuf or JSON, gzip) and the health/metrics app."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import structlog
from google.protobuf import json_format
from google.rpc import status_pb2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pipeline.config.settings import Settings
from pipeline.gateway import metrics
from pipeline.gateway.auth import ApiKeyAuth
from pipeline.gateway.ingest import (
    ExportOutcome,
    KafkaUnavailable,
    Overloaded,
    SpanIngestor,
    TooManySpans,
    TraceTooLarge,
)
from pipeline.wire.otlp import DecodeError, ExportTraceServiceResponse, parse_export_request
from pipeline.wire.otlp_json import JsonRequestError, parse_json_request, response_json

log = structlog.get_logger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class RequestRejected(Exception):
    """The whole request is refused; carries the HTTP status and the reason label."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def inflate_gzip(raw: bytes, limit: int) -> bytes:
    """Undo gzip, refusing bodies that inflate past limit bytes (gzip bombs)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise RequestRejected(400, "bad_gzip", f"body is not valid gzip: {exc}") from None
    if len(body) > limit:
        raise RequestRejected(413, "too_large", f"decompressed body exceeds {limit} bytes")
    if not inflater.eof:
        raise RequestRejected(400, "bad_gzip", "gzip body is truncated")
    return body


def decode_body(raw: bytes, content_encoding: str, limit: int) -> bytes:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        return inflate_gzip(raw, limit)
    raise RequestRejected(
        415, "bad_encoding", f"unsupported Content-Encoding {content_encoding!r}; use gzip"
    )


PARSERS: dict[str, Callable] = {PROTOBUF: parse_export_request, JSON: parse_json_request}


def parse_body(content_type: str, body: bytes):
    try:
        return PARSERS[content_type](body)
    except DecodeError as exc:
        raise RequestRejected(400, "malformed", f"malformed OTLP protobuf: {exc}") from None
    except JsonRequestError as exc:
        raise RequestRejected(400, "malformed", str(exc)) from None


def encode_message(message, content_type: str) -> bytes:
    if content_type == JSON:
        if isinstance(message, ExportTraceServiceResponse):
            return response_json(message)
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def error_response(status: int, message: str, content_type: str, **headers: str) -> Response:
    """An OTLP/HTTP error: a google.rpc.Status body in the request's encoding."""
    body = encode_message(status_pb2.Status(code=status, message=message), content_type)
    return Response(body, status_code=status, media_type=content_type, headers=headers)


def success_response(outcome: ExportOutcome, content_type: str) -> Response:
    response = ExportTraceServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_spans = outcome.rejected
        response.partial_success.error_message = outcome.message
    return Response(encode_message(response, content_type), media_type=content_type)


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing to buffer more than limit bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, "too_large", f"body exceeds {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRejected(413, "too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def otlp_http_app(settings: Settings, ingestor: SpanIngestor, auth: ApiKeyAuth) -> Starlette:
    """The OTLP/HTTP traces endpoint."""

    async def export_traces(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in PARSERS:
            metrics.REQUESTS.labels("http", "unsupported_media_type").inc()
            return error_response(415, f"Content-Type must be {PROTOBUF} or {JSON}", PROTOBUF)
        principal = auth.authenticate(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )
        if principal is None:
            metrics.REQUESTS.labels("http", "unauthenticated").inc()
            return error_response(
                401, "missing or wrong API key", content_type, **{"WWW-Authenticate": "Bearer"}
            )
        try:
            raw = await read_limited(request, settings.gateway_max_body_bytes)
            metrics.BYTES_RECEIVED.inc(len(raw))
            body = decode_body(
                raw,
                request.headers.get("content-encoding", ""),
                settings.gateway_max_decompressed_bytes,
            )
            export = parse_body(content_type, body)
            outcome = await ingestor.ingest(export, len(body), principal)
        except RequestRejected as exc:
            metrics.REQUESTS.labels("http", exc.reason).inc()
            return error_response(exc.status, str(exc), content_type)
        except TooManySpans as exc:
            metrics.REQUESTS.labels("http", "too_many_spans").inc()
            return error_response(413, str(exc), content_type)
        except TraceTooLarge as exc:
            metrics.REQUESTS.labels("http", "trace_too_large").inc()
            return error_response(413, str(exc), content_type)
        except Overloaded as exc:
            metrics.REQUESTS.labels("http", "overloaded").inc()
            return error_response(429, str(exc), content_type, **{"Retry-After": "1"})
        except KafkaUnavailable as exc:
            metrics.REQUESTS.labels("http", "unavailable").inc()
            log.warning("export refused: kafka unavailable", error=str(exc))
            return error_response(503, str(exc), content_type, **{"Retry-After": "1"})
        metrics.REQUESTS.labels("http", "partial" if outcome.rejected else "ok").inc()
        return success_response(outcome, content_type)

    return Starlette(routes=[Route("/v1/traces", export_traces, methods=["POST"])])


def observability_app(is_ready: Callable[[], bool]) -> Starlette:
    """/healthz (process alive), /readyz (Kafka reachable) and /metrics."""

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_request: Request) -> Response:
        if is_ready():
            return PlainTextResponse("ready")
        return PlainTextResponse("kafka unreachable", status_code=503)

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", prometheus)]
    )
