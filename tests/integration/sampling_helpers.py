"""Building traces, sending them through the gateway, and the sampling pipeline fixture."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.bench.metrics_scrape import scrape
from pipeline.config.settings import Settings
from pipeline.local.run import start_component, stop_components, wait_until
from pipeline.wire.otlp import ExportTraceServiceRequest
from tests.integration.conftest import free_port, running_gateway

PROTOBUF = {"content-type": "application/x-protobuf"}
BASE_NS = 1_700_000_000_000_000_000

POLICIES = """\
decision_wait: 3s
decision_cache_ttl: 5m
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow
    type: latency
    latency: {threshold_ms: 1000}
  - name: sample-10pct
    type: probabilistic
    probabilistic: {sampling_percentage: 10}
"""


def make_span(
    trace_id: bytes,
    parent: bytes = b"",
    name: str = "op",
    start_ms: int = 0,
    duration_ms: int = 10,
    error: bool = False,
) -> Span:
    span = Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=BASE_NS + start_ms * 1_000_000,
        end_time_unix_nano=BASE_NS + (start_ms + duration_ms) * 1_000_000,
    )
    if error:
        span.status.code = 2
    return span


def request_of(spans_by_service: dict[str, list[Span]]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for service, spans in spans_by_service.items():
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name").value.string_value = service
        resource_spans.scope_spans.add().spans.extend(spans)
    return request


def post(settings: Settings, request: ExportTraceServiceRequest) -> None:
    url = f"http://127.0.0.1:{settings.gateway_http_port}/v1/traces"
    reply = httpx.post(url, content=request.SerializeToString(), headers=PROTOBUF, timeout=30)
    assert reply.status_code == 200, reply.text


def worker_metrics(settings: Settings) -> dict[str, float]:
    return scrape(f"http://127.0.0.1:{settings.worker_web_port}/metrics")


def decided_total(settings: Settings) -> float:
    return worker_metrics(settings).get("spansieve_sampler_traces_decided_total:sum", 0.0)


@contextmanager
def running_worker(settings: Settings, name: str = "worker") -> Iterator:
    """A worker process with its own state directory and web port."""
    settings = settings.model_copy(
        update={"worker_web_port": free_port(), "state_dir": settings.state_dir / name}
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    child = start_component("worker", settings)
    try:
        url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
        if not wait_until(lambda: httpx.get(url).status_code == 200, "worker", 120):
            raise RuntimeError(f"worker did not start; see {settings.state_dir}/logs")
        yield settings, child
    finally:
        stop_components([child])


@contextmanager
def sampling_pipeline(
    base: Settings, folder: Path, policies: str = POLICIES, workers: int = 1
) -> Iterator[tuple[Settings, list]]:
    """Gateway + sampler workers on private topics, with a policy file in ``folder``."""
    policy_file = folder / "policies.yaml"
    policy_file.write_text(policies)
    settings = base.model_copy(
        update={
            "topic_prefix": f"smp-{uuid.uuid4().hex[:8]}",
            "state_dir": folder,
            "policies": policy_file,
            "worker_roles": "sampler",
        }
    )
    with ExitStack() as stack:
        gateway = stack.enter_context(running_gateway(settings))
        started = [
            stack.enter_context(running_worker(gateway, f"worker-{n}")) for n in range(workers)
        ]
        yield gateway, started
