"""The OTLP/JSON encoding of trace export requests and responses.

OTLP/JSON is proto3 JSON with three differences that matter here: trace and span ids are
hex strings (not base64), enums may be integers or names, and 64-bit integers may be
strings or numbers. protobuf's json_format handles the last two; ids are rewritten from
hex to base64 before parsing. Unknown fields are ignored, as the specification requires.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from google.protobuf import json_format

from pipeline.wire.otlp import ExportTraceServiceRequest, ExportTraceServiceResponse


class JsonRequestError(ValueError):
    """The body is not a valid OTLP/JSON export request; the message says where."""


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(item: dict[str, Any], path: str) -> None:
    for field in _ID_FIELDS:
        value = item.get(field)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise JsonRequestError(f"{path}.{field}: expected a hex string, got {value!r}")
        try:
            item[field] = base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError:
            raise JsonRequestError(f"{path}.{field}: {value!r} is not hex") from None


def _list(container: dict[str, Any], field: str, path: str) -> list:
    value = container.get(field) or []
    if not isinstance(value, list):
        raise JsonRequestError(f"{path}.{field}: expected a list")
    return value


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise JsonRequestError(f"{path}: expected an object")
    return value


def parse_json_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON export request; raises JsonRequestError with a field path."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise JsonRequestError(f"body is not JSON: {exc}") from None
    document = _object(document, "request")
    for r, resource_spans in enumerate(_list(document, "resourceSpans", "request")):
        r_path = f"resourceSpans[{r}]"
        resource_spans = _object(resource_spans, r_path)
        for s, scope_spans in enumerate(_list(resource_spans, "scopeSpans", r_path)):
            s_path = f"{r_path}.scopeSpans[{s}]"
            scope_spans = _object(scope_spans, s_path)
            for n, span in enumerate(_list(scope_spans, "spans", s_path)):
                span_path = f"{s_path}.spans[{n}]"
                span = _object(span, span_path)
                _hex_ids_to_base64(span, span_path)
                for k, link in enumerate(_list(span, "links", span_path)):
                    _hex_ids_to_base64(_object(link, f"{span_path}.links[{k}]"), span_path)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise JsonRequestError(f"invalid OTLP/JSON: {exc}") from None
    return request


def response_json(response: ExportTraceServiceResponse) -> bytes:
    """The export response in OTLP/JSON (``{}`` when nothing was rejected)."""
    return orjson.dumps(json_format.MessageToDict(response))
