"""Span-metrics freshness: from a span's end to its window's counts in the metrics store.

One gateway and one worker (sampler + sink, span metrics on, the product's default
``decision_wait`` of 30 s unless told otherwise) run on private topics and indices. A
sender posts single-span traces of a service of its own, ending "now", a few times a
second; a watcher polls the OpenSearch metrics index (``pipeline.store.metrics_indices``)
twice a second and notes when each window's calls, summed over the partitions, first
equal what was sent into it. A span's freshness is that moment minus its end time: the
span waits for its trace's decision (``decision_wait``), its window's end and the grace,
a tick, the metrics topic, the sink's batch and an index refresh.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from pipeline.bench.endtoend import Pipeline, running_pipeline
from pipeline.bench.stats import quantile
from pipeline.config.settings import Settings
from pipeline.store.metrics_indices import metrics_index_base
from pipeline.wire.otlp import ExportTraceServiceRequest

NANOS = 1_000_000_000
PROTOBUF = {"content-type": "application/x-protobuf"}
POLL_SECONDS = 0.5
SPANS_PER_REQUEST = 20
REQUESTS_PER_SECOND = 5
DEFAULT_DECISION_WAIT = 30.0  # the policy file's default, as a user runs it


def _request(service: str, end_ns: int) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = service
    spans = resource_spans.scope_spans.add().spans
    for _ in range(SPANS_PER_REQUEST):
        span = spans.add(trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8])
        span.name = "GET /fresh"
        span.kind = span.SPAN_KIND_SERVER
        span.start_time_unix_nano = end_ns - 5_000_000
        span.end_time_unix_nano = end_ns
    return request.SerializeToString()


def _send(pipeline: Pipeline, service: str, seconds: float, ends: list[int]) -> None:
    """Post for ``seconds``; ``ends`` gets the end time of every span accepted."""
    url = f"http://127.0.0.1:{pipeline.settings.gateway_http_port}/v1/traces"
    with httpx.Client(timeout=30) as client:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            end_ns = time.time_ns()
            reply = client.post(url, content=_request(service, end_ns), headers=PROTOBUF)
            if reply.status_code == 200:
                ends.extend([end_ns] * SPANS_PER_REQUEST)
            time.sleep(1 / REQUESTS_PER_SECOND)


def _stored_calls(pipeline: Pipeline, service: str) -> Counter:
    """calls per window start (ns) of ``service`` in the metrics store, all partitions."""
    body = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"service.name": service}},
                    {"term": {"metric": "traces.span.metrics.calls"}},
                ]
            }
        },
        "aggs": {
            "windows": {
                "terms": {"field": "@timestamp", "size": 1000},
                "aggs": {"calls": {"sum": {"field": "calls"}}},
            }
        },
    }
    index = f"{metrics_index_base(pipeline.settings)}-*"
    reply = pipeline.client.search(index=index, body=body, ignore_unavailable=True)
    calls: Counter = Counter()
    for bucket in reply.get("aggregations", {}).get("windows", {}).get("buckets", []):
        calls[int(bucket["key"]) * 1_000_000] = int(bucket["calls"]["value"])
    return calls


def bench_freshness(
    base: Settings,
    folder: Path,
    seconds: float = 30.0,
    decision_wait: float = DEFAULT_DECISION_WAIT,
    window: float = 15.0,
    grace: float = 5.0,
) -> dict:
    """Send for ``seconds``, then wait until every window is complete in the store."""
    service = f"fresh-{uuid.uuid4().hex[:8]}"
    ends: list[int] = []
    complete_at: dict[int, float] = {}
    window_ns = int(window * NANOS)
    with running_pipeline(
        base,
        folder,
        decision_wait,
        span_metrics=True,
        span_metrics_window=window,
        span_metrics_grace=grace,
    ) as pipeline:
        sender = threading.Thread(target=_send, args=(pipeline, service, seconds, ends))
        sender.start()
        deadline = time.monotonic() + seconds + decision_wait + window + grace + 120
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            sent = Counter(end - end % window_ns for end in list(ends))
            stored = _stored_calls(pipeline, service)
            now = time.time()
            for start, count in stored.items():
                if start not in complete_at and count >= sent.get(start, 0) > 0:
                    complete_at[start] = now
            if not sender.is_alive() and sent and set(sent) <= set(complete_at):
                break
        sender.join()
    sent = Counter(end - end % window_ns for end in ends)
    missing = sorted(set(sent) - set(complete_at))
    lags = [
        complete_at[end - end % window_ns] - end / NANOS
        for end in ends
        if end - end % window_ns in complete_at
    ]
    return {
        "spans": len(ends),
        "windows": len(sent),
        "windows_incomplete": len(missing),
        "decision_wait_s": decision_wait,
        "window_s": window,
        "grace_s": grace,
        "freshness_p50_s": quantile(lags, 0.5) if lags else float("nan"),
        "freshness_p99_s": quantile(lags, 0.99) if lags else float("nan"),
        "freshness_max_s": max(lags) if lags else float("nan"),
    }
