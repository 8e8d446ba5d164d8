"""OTLP/HTTP receiver (POST /v1/traces) and the health/metrics app, as Starlette apps."""

from __future__ import annotations

import zlib

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pipeline.gateway import metrics
from pipeline.gateway.ingest import KafkaUnavailable, SpanIngestor
from pipeline.otlp import DecodeError, ExportTraceServiceResponse, parse_export_request

log = structlog.get_logger(__name__)

PROTOBUF = "application/x-protobuf"
MAX_BODY_BYTES = 16 * 1024 * 1024
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


class BodyError(Exception):
    """The request body cannot be read as asked; carries the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_body(raw: bytes, content_encoding: str) -> bytes:
    """Undo gzip content encoding, refusing bodies that inflate past MAX_BODY_BYTES."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise BodyError(415, f"unsupported Content-Encoding {content_encoding!r}; use gzip")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, MAX_BODY_BYTES)
    except zlib.error as exc:
        raise BodyError(400, f"body is not valid gzip: {exc}") from exc
    if inflater.unconsumed_tail:
        raise BodyError(413, f"decompressed body exceeds {MAX_BODY_BYTES} bytes")
    return body


def otlp_http_app(ingestor: SpanIngestor) -> Starlette:
    """The OTLP/HTTP traces endpoint."""

    async def export_traces(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != PROTOBUF:
            metrics.REQUESTS.labels("http", "unsupported_media_type").inc()
            return PlainTextResponse(f"Content-Type must be {PROTOBUF}", status_code=415)
        raw = await request.body()
        metrics.BYTES_RECEIVED.inc(len(raw))
        if len(raw) > MAX_BODY_BYTES:
            metrics.REQUESTS.labels("http", "too_large").inc()
            return PlainTextResponse(f"body exceeds {MAX_BODY_BYTES} bytes", status_code=413)
        try:
            body = decode_body(raw, request.headers.get("content-encoding", ""))
            export = parse_export_request(body)
        except BodyError as exc:
            metrics.REQUESTS.labels("http", "bad_body").inc()
            return PlainTextResponse(str(exc), status_code=exc.status)
        except DecodeError as exc:
            metrics.REQUESTS.labels("http", "malformed").inc()
            return PlainTextResponse(f"malformed OTLP protobuf: {exc}", status_code=400)
        try:
            await ingestor.ingest(export)
        except KafkaUnavailable as exc:
            metrics.REQUESTS.labels("http", "unavailable").inc()
            log.warning("kafka unavailable", error=str(exc))
            return PlainTextResponse(
                "Kafka unavailable, retry later", status_code=503, headers={"Retry-After": "1"}
            )
        metrics.REQUESTS.labels("http", "ok").inc()
        return Response(_EMPTY_RESPONSE, media_type=PROTOBUF)

    return Starlette(routes=[Route("/v1/traces", export_traces, methods=["POST"])])


def observability_app() -> Starlette:
    """/healthz and /metrics for the gateway's metrics port."""

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", prometheus)])
