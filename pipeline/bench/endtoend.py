"""End-to-end benchmark: load generator -> gateway -> Kafka -> worker -> OpenSearch.

One gateway and one worker (sampler + sink) run on private topics and a private index,
with the policies "keep errors, keep 1 % of the rest". The load generator plays the
30-service estate at a paced rate while this module follows the run:

* every trace the policies must keep (an error, or the probabilistic hash says so) is
  polled for in OpenSearch until all its spans are searchable: visibility latency is
  that moment minus the time the request carrying the trace was sent;
* the gateway's accepted and the worker's received span counters are sampled twice a
  second: after a burst, catch-up time is how long the worker needs to consume what the
  gateway had accepted by the end of the burst; the gateway's /readyz answer time shows
  whether it stayed responsive;
* CPU seconds of the gateway and worker processes give spans per core under this load.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from opensearchpy import OpenSearch

from pipeline.bench.cpu import cpu_seconds
from pipeline.bench.metrics_scrape import scrape
from pipeline.bench.sampler import histogram_quantile
from pipeline.bench.stats import quantile
from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.loadgen import Burst, LoadgenResult, TraceRecord, run_loadgen
from pipeline.loadgen.ledger import Ledger
from pipeline.local.run import free_port, start_component, stop_components, wait_until
from pipeline.policies.probabilistic import is_sampled
from pipeline.store.indices import store_names

KEEP_PERCENT = 1.0
POLICIES = """\
decision_wait: {wait}s
policies:
  - name: errors
    type: status_code
    status_code:
      status_codes: [ERROR]
  - name: one-percent
    type: probabilistic
    probabilistic:
      sampling_percentage: {percent}
"""
POLL_SECONDS = 0.5
ACCEPTED = "spansieve_gateway_spans_accepted_total"
RECEIVED = "spansieve_sampler_spans_received_total"
LATENCY = "spansieve_sampler_decision_latency_seconds"


@dataclass
class Pipeline:
    settings: Settings
    gateway: psutil.Process
    worker: psutil.Process
    client: OpenSearch
    decision_wait: float

    @property
    def gateway_metrics(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_metrics_port}/metrics"

    @property
    def worker_metrics(self) -> str:
        return f"http://127.0.0.1:{self.settings.worker_web_port}/metrics"

    @property
    def span_alias(self) -> str:
        return store_names(self.settings).span_alias


@contextmanager
def running_pipeline(
    base: Settings,
    folder: Path,
    decision_wait: float,
    policies_text: str | None = None,
    **overrides: object,
) -> Iterator[Pipeline]:
    """A gateway and a sampler+sink worker on private topics and index, ready for load
    (``policies_text``: a policy file instead of "keep errors, keep 1 %", with its own
    decision_wait; ``overrides``: more settings, e.g. ``span_metrics=True`` or
    ``worker_roles="sampler"``)."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    policies = folder / "policies.yaml"
    policies.write_text(policies_text or POLICIES.format(wait=decision_wait, percent=KEEP_PERCENT))
    settings = base.model_copy(
        update={
            "topic_prefix": prefix,
            "store_index_prefix": f"{prefix}-",
            "state_dir": folder,
            "policies": policies,
            "worker_roles": "sampler,sink",
            "gateway_http_port": free_port(),
            "gateway_grpc_port": free_port(),
            "gateway_metrics_port": free_port(),
            "worker_web_port": free_port(),
            **overrides,
        }
    )
    ensure_topics(settings)
    client = OpenSearch(hosts=[settings.opensearch_url], timeout=30)
    with ExitStack() as stack:
        children = [start_component("gateway", settings), start_component("worker", settings)]
        stack.callback(stop_components, children)
        stack.callback(_delete_indices, client, settings)
        gateway, worker = (psutil.Process(child.pid) for child in children)
        pipeline = Pipeline(settings, gateway, worker, client, decision_wait)
        ready = f"http://127.0.0.1:{settings.gateway_metrics_port}/readyz"
        if not wait_until(lambda: httpx.get(ready).status_code == 200, "gateway", 60):
            raise RuntimeError(f"gateway did not get ready; see {folder}/logs")

        def worker_ready() -> bool:
            adopted = scrape(pipeline.worker_metrics).get(
                "spansieve_sampler_partitions_adopted_total", 0
            )
            if "sink" not in settings.worker_roles:
                return adopted >= settings.partitions
            return adopted >= settings.partitions and client.indices.exists_alias(
                name=pipeline.span_alias
            )

        if not wait_until(worker_ready, "worker", 120):
            raise RuntimeError(f"worker did not get ready; see {folder}/logs")
        yield pipeline


def _delete_indices(client: OpenSearch, settings: Settings) -> None:
    client.indices.delete(index=f"{settings.store_index_prefix}*", ignore_unavailable=True)
    for template in client.indices.get_index_template(
        name=f"{settings.store_index_prefix}*", ignore=[404]
    ).get("index_templates", []):
        client.indices.delete_index_template(name=template["name"], ignore=[404])


def must_keep(record: TraceRecord) -> bool:
    """What the bench policies keep: errors, and the collector-compatible 1 % hash."""
    return record.error or is_sampled(bytes.fromhex(record.trace_id), KEEP_PERCENT)


@dataclass
class KeptTraceWatch:
    """Follows the traces the policies must keep until each is searchable and complete."""

    client: OpenSearch
    alias: str
    pending: dict[str, TraceRecord] = field(default_factory=dict)
    visible_after: dict[str, float] = field(default_factory=dict)  # trace -> seconds
    sent: list[TraceRecord] = field(default_factory=list)

    def expect(self, records: list[TraceRecord]) -> None:
        self.sent.extend(records)
        self.pending.update((r.trace_id, r) for r in records if must_keep(r))

    def poll(self) -> None:
        ids = list(self.pending)
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            counts = self.span_counts(chunk)
            now = time.time()
            for trace_id in chunk:
                record = self.pending[trace_id]
                if counts.get(trace_id, 0) >= record.spans:
                    self.visible_after[trace_id] = now - record.sent_at
                    del self.pending[trace_id]

    def span_counts(self, trace_ids: list[str]) -> dict[str, int]:
        if not self.client.indices.exists_alias(name=self.alias):
            return {}
        reply = self.client.search(
            index=self.alias,
            body={
                "size": 0,
                "query": {"terms": {"traceId": trace_ids}},
                "aggs": {"traces": {"terms": {"field": "traceId", "size": len(trace_ids)}}},
            },
        )
        buckets = reply["aggregations"]["traces"]["buckets"]
        return {bucket["key"]: bucket["doc_count"] for bucket in buckets}

    def stored_trace_ids(self) -> set[str]:
        """Every trace in the index (kept by any rule, expected or not)."""
        self.client.indices.refresh(index=self.alias)
        found: set[str] = set()
        after = None
        while True:
            composite = {"size": 5000, "sources": [{"t": {"terms": {"field": "traceId"}}}]}
            if after:
                composite["after"] = after
            reply = self.client.search(
                index=self.alias, body={"size": 0, "aggs": {"ids": {"composite": composite}}}
            )
            ids = reply["aggregations"]["ids"]
            found.update(bucket["key"]["t"] for bucket in ids["buckets"])
            after = ids.get("after_key")
            if not ids["buckets"] or after is None:
                return found


@dataclass
class FlowWatch:
    """Samples the gateway's accepted and the worker's received spans, and /readyz times."""

    pipeline: Pipeline
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    ready_ms: list[float] = field(default_factory=list)

    def sample(self) -> None:
        ready = f"http://127.0.0.1:{self.pipeline.settings.gateway_metrics_port}/readyz"
        started = time.perf_counter()
        httpx.get(ready, timeout=30)
        self.ready_ms.append((time.perf_counter() - started) * 1000)
        accepted = scrape(self.pipeline.gateway_metrics).get(ACCEPTED, 0.0)
        received = scrape(self.pipeline.worker_metrics).get(RECEIVED, 0.0)
        self.samples.append((time.time(), accepted, received))

    def caught_up(self) -> bool:
        return bool(self.samples) and self.samples[-1][2] >= self.samples[-1][1]

    def catch_up_seconds(self, since: float) -> float | None:
        """Time after ``since`` until the worker had received what was accepted by then."""
        backlog = [accepted for at, accepted, _ in self.samples if at <= since]
        target = backlog[-1] if backlog else 0.0
        for at, _, received in self.samples:
            if at >= since and received >= target:
                return at - since
        return None

    def max_lag(self) -> float:
        return max((accepted - received for _, accepted, received in self.samples), default=0)


def run_scenario(
    pipeline: Pipeline,
    rate: float,
    duration: float,
    *,
    burst: Burst | None = None,
    seed: int = 1,
    settle: float = 60.0,
) -> tuple[dict, list[TraceRecord]]:
    """Play the estate at ``rate`` (with an optional burst) and measure the pipeline."""
    holder: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: holder.update(
            result=run_loadgen(
                pipeline.settings,
                rate=rate,
                duration=duration,
                seed=seed,
                burst=burst or False,
                on_start=lambda ledger: holder.update(ledger=ledger),
            )
        ),
        name="loadgen",
        daemon=True,
    )
    watch = KeptTraceWatch(pipeline.client, pipeline.span_alias)
    flow = FlowWatch(pipeline)
    before = scrape(pipeline.worker_metrics)
    gateway_cpu, worker_cpu = cpu_seconds(pipeline.gateway), cpu_seconds(pipeline.worker)
    flow.sample()
    thread.start()
    position, deadline = 0, None
    while True:
        ledger = holder.get("ledger")
        if isinstance(ledger, Ledger):
            position, records = ledger.delivered_since(position)
            watch.expect(records)
        watch.poll()
        flow.sample()
        if not thread.is_alive():
            deadline = deadline or time.time() + settle
            if (not watch.pending and flow.caught_up()) or time.time() > deadline:
                break
        time.sleep(POLL_SECONDS)
    thread.join()
    loadgen: LoadgenResult = holder["result"]  # type: ignore[assignment]
    _, records = loadgen.ledger.delivered_since(position)
    watch.expect(records)
    watch.poll()
    gateway_cpu = cpu_seconds(pipeline.gateway) - gateway_cpu
    worker_cpu = cpu_seconds(pipeline.worker) - worker_cpu
    after = scrape(pipeline.worker_metrics)
    result = _scenario_result(
        pipeline, loadgen, watch, flow, before, after, gateway_cpu, worker_cpu
    )
    return result, watch.sent


def _scenario_result(
    pipeline: Pipeline,
    loadgen: LoadgenResult,
    watch: KeptTraceWatch,
    flow: FlowWatch,
    before: dict[str, float],
    after: dict[str, float],
    gateway_cpu: float,
    worker_cpu: float,
) -> dict:
    accepted = flow.samples[-1][1] - flow.samples[0][1]
    received = after.get(RECEIVED, 0) - before.get(RECEIVED, 0)
    latencies = sorted(watch.visible_after.values())
    errors = [r for r in watch.sent if r.error]
    others = [r for r in watch.sent if not r.error]
    kept_errors = sum(1 for r in errors if r.trace_id in watch.visible_after)
    kept_others = sum(1 for r in others if r.trace_id in watch.visible_after)
    predicted_others = sum(1 for r in others if must_keep(r))
    decision = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key.startswith(f"{LATENCY}_bucket{{")
    }
    result = {
        "rate_spans_per_s": loadgen.target_rate,
        "duration_s": loadgen.duration,
        "decision_wait_s": pipeline.decision_wait,
        "spans_sent": loadgen.spans_sent,
        "traces_sent": loadgen.traces_sent,
        "requests_refused": loadgen.throttled + loadgen.failed_requests,
        "spans_failed": loadgen.failed_spans + loadgen.rejected_spans,
        "gateway_spans_per_core_s": accepted / gateway_cpu if gateway_cpu else 0.0,
        "worker_spans_per_core_s": received / worker_cpu if worker_cpu else 0.0,
        "gateway_cpu_s": gateway_cpu,
        "worker_cpu_s": worker_cpu,
        "visibility_p50_s": quantile(latencies, 0.50),
        "visibility_p99_s": quantile(latencies, 0.99),
        "decision_latency_p50_s": histogram_quantile(decision, LATENCY, 0.50),
        "decision_latency_p99_s": histogram_quantile(decision, LATENCY, 0.99),
        "error_traces_sent": len(errors),
        "error_traces_kept_complete": kept_errors,
        "must_keep_missing": len(watch.pending),
        "probabilistic_expected_share": KEEP_PERCENT / 100,
        "probabilistic_kept_share": kept_others / len(others) if others else 0.0,
        "probabilistic_predicted_kept": predicted_others,
        "probabilistic_kept": kept_others,
        "must_keep_traces": sum(1 for r in watch.sent if must_keep(r)),
        "gateway_ready_p99_ms": quantile(flow.ready_ms, 0.99),
        "gateway_ready_max_ms": max(flow.ready_ms, default=0.0),
        "max_worker_lag_spans": flow.max_lag(),
    }
    if loadgen.burst:
        burst_end = loadgen.started_at + loadgen.burst["at"] + loadgen.burst["duration"]
        result["burst"] = loadgen.burst
        result["burst_catch_up_s"] = flow.catch_up_seconds(burst_end)
    return result


def bench_endtoend(
    base: Settings,
    folder: Path,
    rate: float,
    seconds: float,
    burst_seconds: float,
    decision_wait: float = 2.0,
) -> dict:
    """A steady run (latencies, correctness), then a 10x burst (catch-up, no loss)."""
    with running_pipeline(base, folder, decision_wait) as pipeline:
        steady, steady_sent = run_scenario(pipeline, rate, seconds, seed=1)
        lead = min(10.0, seconds / 2)
        burst = Burst(multiplier=10, at=lead, duration=burst_seconds)
        bursting, burst_sent = run_scenario(
            pipeline, rate, lead + burst_seconds + lead, burst=burst, seed=2, settle=180.0
        )
        stored = KeptTraceWatch(pipeline.client, pipeline.span_alias).stored_trace_ids()
    predicted = {r.trace_id for r in steady_sent + burst_sent if must_keep(r)}
    return {
        "steady": steady,
        "burst": bursting,
        "kept_as_predicted": stored == predicted,
        "kept_unexpected": len(stored - predicted),
        "kept_missing": len(predicted - stored),
    }
