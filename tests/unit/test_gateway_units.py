"""Pure pieces of the gateway: auth, exposure guard, span checks, gzip guard, OTLP/JSON."""

from __future__ import annotations

import contextlib
import gzip
import os

import orjson
import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.config.listen import ExposureError
from pipeline.config.settings import Settings
from pipeline.gateway.auth import ApiKeyAuth, AuthConfigError, load_api_keys
from pipeline.gateway.http import RequestRejected, inflate_gzip, parse_body
from pipeline.gateway.server import check_exposure
from pipeline.gateway.validation import rejection_message, span_problem
from pipeline.wire.otlp import ExportTraceServiceRequest
from pipeline.wire.otlp_json import JsonRequestError, parse_json_request


def test_api_keys_from_variable_and_file(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# comment\nk2 frontend,checkout\n\nk3\n")
    auth = ApiKeyAuth(load_api_keys("k1, ", keys))
    assert auth.enabled
    assert auth.authenticate("Bearer k1", None).allowed_services is None
    assert auth.authenticate(None, "k2").allowed_services == {"frontend", "checkout"}
    assert auth.authenticate("bearer k3", None) is not None
    assert auth.authenticate("Bearer k4", None) is None
    assert auth.authenticate("Basic k1", None) is None
    assert auth.authenticate(None, None) is None


def test_api_key_file_errors_name_file_and_line(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("ok\nkey a b\n")
    with pytest.raises(AuthConfigError, match=rf"{keys}:2: expected"):
        load_api_keys("", keys)


def test_no_keys_means_auth_off():
    auth = ApiKeyAuth(load_api_keys("", None))
    assert not auth.enabled
    assert auth.authenticate(None, None) is not None


def test_exposure_guard(tmp_path):
    no_auth = ApiKeyAuth([])
    check_exposure(Settings(gateway_host="127.0.0.1"), no_auth)
    with pytest.raises(ExposureError, match="API keys and TLS"):
        check_exposure(Settings(gateway_host="0.0.0.0"), no_auth)
    check_exposure(Settings(gateway_host="0.0.0.0", gateway_allow_insecure=True), no_auth)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    protected = Settings(gateway_host="0.0.0.0", gateway_tls_cert=cert, gateway_tls_key=key)
    check_exposure(protected, ApiKeyAuth([(b"k", None)]))
    with pytest.raises(ExposureError, match="TLS"):
        check_exposure(Settings(gateway_host="0.0.0.0"), ApiKeyAuth([(b"k", None)]))
    with pytest.raises(ExposureError, match="both"):
        check_exposure(Settings(gateway_tls_cert=cert), no_auth)


def good_span() -> Span:
    return Span(
        trace_id=os.urandom(15) + b"\x01",
        span_id=os.urandom(7) + b"\x01",
        start_time_unix_nano=10,
        end_time_unix_nano=20,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"trace_id": b"\x01" * 8}, "invalid_trace_id"),
        ({"trace_id": bytes(16)}, "invalid_trace_id"),
        ({"span_id": b""}, "invalid_span_id"),
        ({"span_id": bytes(8)}, "invalid_span_id"),
        ({"parent_span_id": b"\x01" * 4}, "invalid_parent_span_id"),
        ({"end_time_unix_nano": 9}, "end_before_start"),
    ],
)
def test_span_problems(change, reason):
    span = good_span()
    for field, value in change.items():
        setattr(span, field, value)
    assert span_problem(span) == reason
    assert span_problem(good_span()) is None


def test_rejection_message():
    message = rejection_message({"invalid_span_id": 1, "end_before_start": 2})
    assert message == (
        "2 spans: end_time_unix_nano is before start_time_unix_nano; "
        "1 span: span_id must be 8 bytes, not all zero"
    )


def test_gzip_guard():
    assert inflate_gzip(gzip.compress(b"abc"), 3) == b"abc"
    with pytest.raises(RequestRejected) as too_big:
        inflate_gzip(gzip.compress(bytes(1000)), 999)
    assert too_big.value.status == 413
    with pytest.raises(RequestRejected) as truncated:
        inflate_gzip(gzip.compress(b"abcdef" * 100)[:-12], 10_000)
    assert truncated.value.status == 400


def test_json_matches_protobuf_json_with_hex_ids():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.CopyFrom(good_span())
    span.parent_span_id = os.urandom(8)
    span.name = "op"
    span.kind = Span.SPAN_KIND_CLIENT
    link = span.links.add(trace_id=os.urandom(16), span_id=os.urandom(8))
    document = json_format.MessageToDict(request)
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["traceId"] = span.trace_id.hex()
    spans[0]["spanId"] = span.span_id.hex()
    spans[0]["parentSpanId"] = span.parent_span_id.hex()
    spans[0]["links"][0] = {"traceId": link.trace_id.hex(), "spanId": link.span_id.hex()}
    assert parse_json_request(orjson.dumps(document)) == request


@given(st.binary(max_size=300))
def test_parsers_raise_only_request_errors(body):
    for content_type in ("application/x-protobuf", "application/json"):
        try:
            parse_body(content_type, body)
        except RequestRejected as exc:
            assert exc.status == 400


@given(
    st.recursive(
        st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    ["resourceSpans", "scopeSpans", "spans", "traceId", "links", "name"]
                ),
                inner,
                max_size=3,
            )
        ),
    )
)
def test_json_parser_errors_are_typed(document):
    with contextlib.suppress(JsonRequestError):
        parse_json_request(orjson.dumps(document))
