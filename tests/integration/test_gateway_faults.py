"""Fail-open: with its Kafka stopped the gateway answers retryably at once, then recovers.

Uses a private Kafka broker (its own port and state directory) so the shared stack keeps
serving the other tests.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.run import port_is_free, wait_until
from pipeline.local.stack import stack_down, stack_up
from tests.integration.conftest import running_gateway
from tests.integration.test_gateway import EXPORT_METHOD, PROTOBUF, build_request, http_url

pytestmark = pytest.mark.integration


def free_port_pair() -> int:
    """A port p with p + 1 free too (Kafka's broker and controller ports).

    Taken below the kernel's ephemeral range: a port from that range can be handed to an
    outgoing connection (there are many, to Kafka and OpenSearch) before Kafka binds it.
    """
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20_000, ephemeral_low - 1)
        if port_is_free(port) and port_is_free(port + 1):
            return port
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def private_kafka(pipeline_settings: Settings, tmp_path_factory):
    settings = pipeline_settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{free_port_pair()}",
            "state_dir": tmp_path_factory.mktemp("private-kafka"),
        }
    )
    stack_up(settings, progress=False, only=["kafka"])
    ensure_topics(settings)
    try:
        yield settings
    finally:
        stack_down(settings, only=["kafka"])


def retry_delay(error: grpc.RpcError) -> float | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info.retry_delay.seconds
    return None


def test_kafka_down_gives_retryable_errors_then_recovers(private_kafka: Settings):
    body = build_request(3).SerializeToString()
    with running_gateway(private_kafka) as gateway:
        url = http_url(gateway)
        ready = f"http://127.0.0.1:{gateway.gateway_metrics_port}/readyz"
        assert httpx.post(url, content=body, headers=PROTOBUF).status_code == 200

        stack_down(private_kafka, only=["kafka"])
        started = time.monotonic()
        reply = httpx.post(url, content=body, headers=PROTOBUF, timeout=30)
        elapsed = time.monotonic() - started
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        # The bound is gateway_ack_timeout (1 s); the margin absorbs a loaded CI machine.
        assert elapsed < gateway.gateway_ack_timeout + 3, elapsed
        assert wait_until(lambda: httpx.get(ready).status_code == 503, "not ready", 15)

        channel_address = f"127.0.0.1:{gateway.gateway_grpc_port}"
        with (
            grpc.insecure_channel(channel_address) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            channel.unary_unary(EXPORT_METHOD)(body, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert retry_delay(refused.value) == 1

        stack_up(private_kafka, progress=False, only=["kafka"])
        assert wait_until(lambda: httpx.get(ready).status_code == 200, "ready again", 60)
        assert wait_until(
            lambda: httpx.post(url, content=body, headers=PROTOBUF).status_code == 200,
            "accepting again",
            30,
        )
