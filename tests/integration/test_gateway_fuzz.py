"""Random and mutated bodies against the real gateway: 2xx or 4xx, never 5xx, never a crash."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.settings import Settings
from tests.integration.test_gateway import build_request, http_url

pytestmark = pytest.mark.integration

VALID = build_request(3).SerializeToString()
VALID_JSON = orjson.dumps(
    {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "x",
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                            }
                        ]
                    }
                ]
            }
        ]
    }
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceSpans",
                    "scopeSpans",
                    "spans",
                    "traceId",
                    "spanId",
                    "name",
                    "kind",
                    "attributes",
                    "key",
                    "value",
                    "status",
                    "links",
                    "startTimeUnixNano",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[position]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


bodies = st.one_of(
    st.tuples(st.just("application/x-protobuf"), st.binary(max_size=512)),
    st.tuples(st.just("application/x-protobuf"), mutated(VALID)),
    st.tuples(st.just("application/json"), json_values.map(orjson.dumps)),
    st.tuples(st.just("application/json"), mutated(VALID_JSON)),
    st.tuples(st.just("application/json"), st.binary(max_size=256)),
)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=30) as session:
        yield session


@given(body=bodies, compress=st.booleans())
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_never_a_server_error(
    pipeline_settings: Settings, client: httpx.Client, body, compress: bool
):
    content_type, payload = body
    headers = {"content-type": content_type}
    if compress:
        payload = gzip.compress(payload)
        headers["content-encoding"] = "gzip"
    reply = client.post(http_url(pipeline_settings), content=payload, headers=headers)
    assert reply.status_code < 500, reply.content
    assert reply.status_code in (200, 400, 413), reply.content


def test_gateway_still_healthy_after_fuzzing(pipeline_settings: Settings):
    health = f"http://127.0.0.1:{pipeline_settings.gateway_metrics_port}/readyz"
    assert httpx.get(health).status_code == 200
