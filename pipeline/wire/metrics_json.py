"""Wire encodings of the span-metrics messages: OTLP protobuf or OTLP/JSON.

In ``pipeline.wire`` because both sides use it: the sampler's span metrics encode, the
sink's metrics store and ``spansieve metrics top`` decode (:func:`decode_any` tells the
two apart by their first byte).

The sampler publishes every closed window (``pipeline.metrics.otlp``) on
``<prefix>-red-metrics`` / ``<prefix>-service-graph`` as one ``ExportMetricsServiceRequest``
in one of two encodings, chosen by the setting ``span_metrics_encoding``:

* ``"protobuf"``: the request's binary protobuf serialization (the OpenTelemetry
  Collector's Kafka receiver encoding ``otlp_proto``); content type
  ``application/x-protobuf``;
* ``"json"``: the OTLP/JSON encoding the OTLP specification defines (the Kafka receiver
  encoding ``otlp_json``); content type ``application/json``. It is the proto3 JSON
  mapping with the specification's exceptions: lowerCamelCase field names, 64-bit
  integers (``timeUnixNano``, ``asInt``, ``count``, ``bucketCounts``, ...) as decimal
  strings, enum values as integers (``"aggregationTemporality": 1`` for DELTA), fields
  holding their default value left out, and ``traceId`` / ``spanId`` as lowercase hex
  strings instead of the base64 that proto3 JSON uses for bytes.

``schemas/otlp-metrics-message.schema.json`` (package ``pipeline.schemas``) describes the
JSON messages; ``docs/metrics-topics.md`` shows them. :func:`decode` reads both encodings
back (for consumers and tests); reading JSON it follows the specification's receiver
rules: unknown fields are ignored, enums may be names or integers, 64-bit integers strings
or numbers, ids hex in either case.

Pure: protobuf classes, ``json_format`` and orjson only.
"""

from __future__ import annotations

import base64
import copy
from importlib import resources
from typing import Any, Literal, get_args

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

Encoding = Literal["protobuf", "json"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)
# The Kafka header ``content-type`` of a message in each encoding (OTLP/HTTP's types).
CONTENT_TYPES: dict[str, str] = {
    "protobuf": "application/x-protobuf",
    "json": "application/json",
}
CONTENT_TYPE_HEADER = "content-type"
# The JSON Schema of the JSON messages (package data of pipeline.schemas).
SCHEMA_PACKAGE = "pipeline.schemas"
SCHEMA_NAME = "otlp-metrics-message.schema.json"

# The bytes fields that OTLP/JSON writes in hex rather than base64 (in a metrics message:
# an exemplar's ids). The snake_case spellings are only read (proto3 JSON parsers accept
# them); hex under them would otherwise pass as base64 and decode to other bytes.
_ID_KEYS = frozenset({"traceId", "spanId", "trace_id", "span_id"})


class MessageDecodeError(ValueError):
    """A span-metrics message that is not a valid request in the given encoding."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every JSON message of both topics satisfies."""
    return orjson.loads((resources.files(SCHEMA_PACKAGE) / SCHEMA_NAME).read_bytes())


def _check(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown span-metrics encoding {encoding!r}: not one of {ENCODINGS}")


def _base64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _hex_to_base64(value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MessageDecodeError(f"trace or span id {value!r} is not hex") from None
    return base64.b64encode(raw).decode("ascii")


def _convert_ids(node: Any, convert) -> None:
    """Apply ``convert`` to every id string under ``node`` (dicts and lists, in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = convert(value)
            elif isinstance(value, dict | list):
                _convert_ids(value, convert)
    elif isinstance(node, list):
        for item in node:
            if not isinstance(item, dict | list):
                return  # a list of scalars (bucketCounts, explicitBounds): nothing below
            _convert_ids(item, convert)


def to_json_dict(request: ExportMetricsServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON form of a request as plain Python values (what :func:`encode` writes)."""
    # Default values are left out: MessageToDict's default in every protobuf release (the
    # option's name changed in 5.26, so it is not passed).
    data = json_format.MessageToDict(
        request,
        preserving_proto_field_name=False,  # lowerCamelCase (the fields' json_name)
        use_integers_for_enums=True,
    )
    _convert_ids(data, _base64_to_hex)
    return data


def _parse(data: Any) -> ExportMetricsServiceRequest:
    """Parsed OTLP/JSON -> the message (fixes the ids of ``data`` in place)."""
    if not isinstance(data, dict):
        raise MessageDecodeError("an OTLP/JSON message is a JSON object")
    _convert_ids(data, _hex_to_base64)
    request = ExportMetricsServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise MessageDecodeError(str(exc)) from None
    return request


def from_json_dict(data: dict[str, Any]) -> ExportMetricsServiceRequest:
    """An OTLP/JSON request as plain Python values -> the message (``data`` is not changed)."""
    return _parse(copy.deepcopy(data))


def encode(request: ExportMetricsServiceRequest, encoding: str) -> bytes:
    """A request -> message value in ``encoding`` (``"protobuf"`` or ``"json"``).

    An empty request is ``b""`` in protobuf and ``b"{}"`` in JSON (the sampler sends
    neither).
    """
    _check(encoding)
    if encoding == "protobuf":
        return request.SerializeToString()
    return orjson.dumps(to_json_dict(request))


def decode(value: bytes, encoding: str) -> ExportMetricsServiceRequest:
    """A message value in ``encoding`` -> the request; :class:`MessageDecodeError` if invalid."""
    _check(encoding)
    if encoding == "protobuf":
        try:
            return ExportMetricsServiceRequest.FromString(value)
        except DecodeError as exc:
            raise MessageDecodeError(str(exc)) from None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MessageDecodeError(str(exc)) from None
    return _parse(data)


def decode_any(value: bytes) -> ExportMetricsServiceRequest:
    """Either encoding: a JSON message is an object (``{``); a protobuf request never
    starts with that byte (its first field's tag is 0x0a)."""
    return decode(value, "json" if value[:1] == b"{" else "protobuf")


def encoding_of(content_type: str | bytes | None, default: str = "protobuf") -> str:
    """The encoding a ``content-type`` header names (``default`` when absent or unknown).

    Parameters (``; charset=utf-8``) and case are ignored.
    """
    if content_type is None:
        return default
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    media = content_type.split(";", 1)[0].strip().lower()
    for encoding, known in CONTENT_TYPES.items():
        if media == known:
            return encoding
    return default
