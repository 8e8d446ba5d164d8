"""Sampler benchmark: spans per worker CPU-second from Kafka in to decisions out.

The spans topic is preloaded with gateway-shaped messages (per-trace pieces per partition
per export request; ~10 spans per trace spread over several requests; ~1 % of traces
carry an error and are kept), then one worker drains it. Ceiling in the same run: a raw
confluent-kafka consume of the same messages. A second run with a long decision_wait
measures resident memory per buffered span. Another saturated pass with span metrics on
(``span_metrics``: RED + service graph) drains the same messages, preloaded again under a
fresh topic prefix into a fresh worker exactly as the first pass, so the two figures differ
only by the setting: ``metrics_cost_ratio`` is the extra worker CPU per span, between the
cheapest of two interleaved passes of each setting (see ``metrics_on_pass``). The same
pair runs once more on the load generator's estate (``build_estate_messages``): its traces
have client spans paired with server spans, database calls and messaging, which the
synthetic traces (server spans only) do not, and the service graph pays for them. A last
pair compares the plain policies (errors, latency > 800 ms, 1 %) with the same intent in
spansieve's own types (errors, latency_percentile p99 pooled in Redis, adaptive target):
``adaptive_cost_ratio``, between the cheapest of three interleaved passes of each.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.bench.cpu import cpu_seconds
from pipeline.bench.metrics_scrape import scrape
from pipeline.bench.workload import produce_waiting
from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.loadgen import DEFAULT_TOPOLOGY
from pipeline.loadgen.generator import TraceGenerator, encode_request
from pipeline.loadgen.topology import load_topology
from pipeline.local.run import start_component, stop_components, wait_until
from pipeline.wire.otlp import ExportTraceServiceRequest
from pipeline.wire.pieces import gateway_messages, header_of, iter_header

SPANS_PER_TRACE = 10
TRIM_COUNT = "spansieve_worker_heap_trim_seconds_count"
SPANS_RECEIVED = "spansieve_sampler_spans_received_total"
DECIDED = "spansieve_sampler_traces_decided_total"
SPAN_METRICS_CPU = "spansieve_sampler_span_metrics_cpu_seconds_total"
POLICIES_CPU = "spansieve_sampler_policies_cpu_seconds_total"
ERROR_SHARE = 0.01


def build_messages(traces: int, partitions: int, seed: int = 7) -> tuple[list[tuple], int]:
    """Gateway-shaped Kafka messages for ``traces`` traces; returns (messages, error traces)."""
    rng = random.Random(seed)
    services = [f"svc-{n}" for n in range(6)]
    messages: list[tuple] = []
    errors = 0
    window = 100  # traces in flight at once: their spans interleave across requests
    base = 1_700_000_000_000_000_000
    for first in range(0, traces, window):
        pending = []
        for _ in range(min(window, traces - first)):
            trace_id = rng.randbytes(16)
            failing = rng.random() < ERROR_SHARE
            errors += failing
            root = rng.randbytes(8)
            for number in range(SPANS_PER_TRACE):
                span = Span(
                    trace_id=trace_id,
                    span_id=root if number == 0 else rng.randbytes(8),
                    parent_span_id=b"" if number == 0 else root,
                    name=f"op-{number}",
                    kind=Span.SPAN_KIND_SERVER,
                    start_time_unix_nano=base + number,
                    end_time_unix_nano=base + number + 1_000_000,
                )
                for key in ("http.route", "http.request.method", "server.address"):
                    span.attributes.add(key=key).value.string_value = f"{key}-value"
                span.attributes.add(key="http.response.status_code").value.int_value = 200
                if failing and number == SPANS_PER_TRACE - 1:
                    span.status.code = 2
                pending.append((rng.choice(services), span))
        rng.shuffle(pending)
        for start in range(0, len(pending), 512):
            request = ExportTraceServiceRequest()
            by_service = {}
            for service, span in pending[start : start + 512]:
                scope = by_service.get(service)
                if scope is None:
                    resource_spans = request.resource_spans.add()
                    resource_spans.resource.attributes.add(
                        key="service.name"
                    ).value.string_value = service
                    scope = by_service[service] = resource_spans.scope_spans.add()
                scope.spans.append(span)
            messages.extend(gateway_messages(request.resource_spans, partitions))
    return messages, errors


def build_estate_messages(
    spans: int, partitions: int, seed: int = 3
) -> tuple[list[tuple], int, int]:
    """Gateway-shaped messages of about ``spans`` spans of the shipped estate's traces, 20
    user requests per export request; returns (messages, traces, spans)."""
    generator = TraceGenerator(load_topology(DEFAULT_TOPOLOGY), seed=seed)
    start = 1_700_000_000_000_000_000
    messages: list[tuple] = []
    trace_ids: set[bytes] = set()
    batch: list = []
    made = request = 0
    while made < spans:
        batch += generator.generate(start + request * 1_000_000)
        request += 1
        if len(batch) >= 20:
            resource_spans = encode_request(batch).resource_spans
            batch = []
            made += sum(len(ss.spans) for rs in resource_spans for ss in rs.scope_spans)
            for message in gateway_messages(resource_spans, partitions):
                messages.append(message)
                header = header_of(message[2]) or b""
                trace_ids.update(entry[0] for entry in iter_header(header))
    return messages, len(trace_ids), made


def estate_metrics_cost(base: Settings, folder: Path, spans: int) -> dict:
    """The span-metrics cost pair (see ``metrics_on_pass``) and the adaptive policies'
    (see ``adaptive_policies_pass``) on the estate's traces."""
    settings = _worker_settings(base, folder / "off", decision_wait=2.0)
    messages, traces, made = build_estate_messages(spans, settings.partitions)
    off = saturated_pass(settings, messages, traces)
    cost = metrics_on_pass(base, folder, messages, traces, made, off)
    cost.update(adaptive_policies_pass(base, folder / "adaptive", messages, traces, made, off))
    return {
        "estate_spans": made,
        "estate_traces": traces,
        "estate_spans_per_core_s": made / off["cpu"] if off["cpu"] else 0.0,
        **{f"estate_{key}": value for key, value in cost.items()},
    }


def preload(settings: Settings, messages: list[tuple]) -> None:
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "compression.type": "lz4"}
    )
    produce_waiting(producer, settings.topic("spans"), messages)
    producer.flush(60)


def consume_ceiling(settings: Settings, count: int) -> float:
    """Messages per CPU second of a bare confluent-kafka consumer reading the preloaded
    messages (this process's CPU, librdkafka's threads included: "per core", as for the
    worker).

    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"ceiling-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    topic = settings.topic("spans")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    seen = 0
    started = cpu_seconds()
    deadline = time.perf_counter() + 120
    while seen < count and time.perf_counter() < deadline:
        seen += sum(1 for m in consume_batch(consumer) if m.value())
    used = cpu_seconds() - started
    consumer.close()
    return seen / used if used > 0 else 0.0


def consume_batch(consumer: Consumer):
    return [m for m in consumer.consume(1000, timeout=1.0) if not m.error()]


PLAIN_POLICIES = (
    "  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n"
    "  - {name: slow, type: latency, latency: {threshold_ms: 800}}\n"
    "  - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 1}}\n"
)
# The same intent with spansieve's own types: slow for its operation (pooled in Redis),
# and a kept-volume target instead of a fixed share.
ADAPTIVE_POLICIES = (
    "  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n"
    "  - {name: slow, type: latency_percentile, latency_percentile: {percentile: 99}}\n"
    "  - {name: baseline, type: adaptive, adaptive: {target_spans_per_second: 2000}}\n"
)


def _worker_settings(
    base: Settings,
    folder: Path,
    decision_wait: float,
    span_metrics: bool = False,
    policies_text: str = PLAIN_POLICIES,
) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    policies = folder / "policies.yaml"
    policies.write_text(f"decision_wait: {decision_wait}\npolicies:\n{policies_text}")
    return base.model_copy(
        update={
            "topic_prefix": f"bench-{uuid.uuid4().hex[:8]}",
            "state_dir": folder,
            "policies": policies,
            "worker_roles": "sampler",
            "span_metrics": span_metrics,
        }
    )


def saturated_pass(settings: Settings, messages: list[tuple], traces: int) -> dict:
    """One worker drains ``messages`` preloaded into its (fresh) spans topic; returns the
    wall and worker CPU seconds until every trace is decided and the last metrics scrape."""
    ensure_topics(settings)
    with ready_worker(settings) as (process, metrics_url):
        cpu_before = cpu_seconds(process)
        started = time.perf_counter()
        preload(settings, messages)
        # Only the one counter while polling: rendering every span-metric series twice a
        # second would charge the bench's polling to the worker.
        decided = f"{metrics_url}?name[]={DECIDED}"
        wait_until(
            lambda: scrape(decided).get(f"{DECIDED}:sum", 0) >= traces, "sampler draining", 600
        )
        wall = time.perf_counter() - started
        cpu = cpu_seconds(process) - cpu_before
        final = scrape(metrics_url)
    return {"wall": wall, "cpu": cpu, "final": final}


def bench_sampler(
    base: Settings, folder: Path, traces: int = 20_000, rss_traces: int = 60_000
) -> dict:
    settings = _worker_settings(base, folder / "throughput", decision_wait=2.0)
    messages, errors = build_messages(traces, settings.partitions)
    spans = traces * SPANS_PER_TRACE
    off = saturated_pass(settings, messages, traces)
    wall, cpu, final = off["wall"], off["cpu"], off["final"]
    consume_rate = consume_ceiling(settings, len(messages))
    kept = final.get(
        'spansieve_sampler_traces_decided_total{decision="sampled",policy="errors"}', 0
    )
    result = {
        "traces": traces,
        "spans": spans,
        "messages": len(messages),
        "error_traces": errors,
        "kept_traces": kept,
        "wall_s": wall,
        "worker_cpu_s": cpu,
        "spans_per_core_s": spans / cpu if cpu else 0.0,
        "kafka_consume_ceiling_spans_per_s": consume_rate * spans / len(messages),
    }
    result["ratio_to_consume_ceiling"] = (
        result["spans_per_core_s"] / result["kafka_consume_ceiling_spans_per_s"]
    )
    result["decision_latency_p99_s"] = histogram_quantile(
        final, "spansieve_sampler_decision_latency_seconds", 0.99
    )
    result["decision_wait_s"] = 2.0
    result.update(
        metrics_on_pass(base, folder / "throughput-metrics", messages, traces, spans, off)
    )
    result.update(
        adaptive_policies_pass(base, folder / "throughput-adaptive", messages, traces, spans, off)
    )
    result.update(estate_metrics_cost(base, folder / "estate-metrics", spans))
    result.update(rss_per_span(base, folder / "memory", rss_traces))
    return result


def interleaved_passes(
    base: Settings,
    folder: Path,
    messages: list[tuple],
    traces: int,
    first_off: dict,
    variant: dict,
    rounds: int = 2,
) -> tuple[list[dict], list[dict]]:
    """Saturated passes with the ``variant`` settings against passes without (the first
    of which ran already, ``first_off``): (variant passes, passes without).

    A pass of this size spends a few CPU-seconds, and a shared machine moves that by
    10-20 %: so the pair is run ``rounds`` times, interleaved (off, on, off, on, ...,
    each on fresh topics and a fresh worker), and costs are taken between the cheapest
    pass of each.
    """
    on_passes: list[dict] = []
    off_passes = [first_off]
    for round_number in range(rounds):
        if round_number:
            again = _worker_settings(base, folder / f"off-{round_number}", decision_wait=2.0)
            off_passes.append(saturated_pass(again, messages, traces))
        settings = _worker_settings(
            base, folder / f"on-{round_number}", decision_wait=2.0, **variant
        )
        on_passes.append(saturated_pass(settings, messages, traces))
    return on_passes, off_passes


def metrics_on_pass(
    base: Settings, folder: Path, messages: list[tuple], traces: int, spans: int, first: dict
) -> dict:
    """The passes with ``span_metrics`` on against those off (see ``interleaved_passes``);
    ``first``: the pass without that ran already, over ``spans`` spans."""
    on_passes, off_passes = interleaved_passes(
        base, folder, messages, traces, first, {"span_metrics": True}
    )
    off_cpu = [p["cpu"] for p in off_passes]
    on_cpu = [on["cpu"] for on in on_passes]
    in_run = []
    for on in on_passes:
        spent = on["final"].get(f"{SPAN_METRICS_CPU}:sum", 0.0)
        in_run.append(spent / (on["cpu"] - spent) if on["cpu"] > spent else float("nan"))
    best_on, best_off = min(on_cpu), min(off_cpu)
    rate = spans / best_on if best_on else 0.0
    return {
        # The worker's own account (CPU seconds it spent on span metrics, against the rest
        # of the same pass): free of the noise between two worker processes.
        "metrics_cost_in_run": min(in_run),
        "metrics_cost_in_run_passes": in_run,
        "wall_s_metrics_on": min(on["wall"] for on in on_passes),
        "worker_cpu_s_metrics_on": best_on,
        "worker_cpu_s_metrics_off_best": best_off,
        "worker_cpu_s_metrics_on_passes": on_cpu,
        "worker_cpu_s_metrics_off_passes": off_cpu,
        "spans_per_core_s_metrics_on": rate,
        "metrics_cost_ratio": best_on / best_off - 1 if best_off else float("nan"),
    }


def adaptive_policies_pass(
    base: Settings, folder: Path, messages: list[tuple], traces: int, spans: int, first: dict
) -> dict:
    """Three passes with ``ADAPTIVE_POLICIES`` (latency_percentile pooled in Redis,
    adaptive) against three with the plain ones (see ``interleaved_passes``).

    Besides the ratio of whole-worker CPU, which moves 10-20 % between two passes on a
    shared machine, the cost from the workers' own account: the policies' CPU seconds
    (``POLICIES_CPU``, the same code timed in every pass) of the cheapest pass of each,
    their difference over the cheapest plain pass's whole CPU.
    """
    on_passes, off_passes = interleaved_passes(
        base, folder, messages, traces, first, {"policies_text": ADAPTIVE_POLICIES}, rounds=3
    )
    off_cpu = [p["cpu"] for p in off_passes]
    best_on, best_off = min(on["cpu"] for on in on_passes), min(off_cpu)
    policies_on = min(on["final"].get(f"{POLICIES_CPU}:sum", 0.0) for on in on_passes)
    policies_off = min(p["final"].get(f"{POLICIES_CPU}:sum", 0.0) for p in off_passes)
    return {
        "spans_per_core_s_adaptive": spans / best_on if best_on else 0.0,
        "worker_cpu_s_adaptive_passes": [on["cpu"] for on in on_passes],
        "worker_cpu_s_plain_passes": off_cpu,
        "adaptive_cost_ratio": best_on / best_off - 1 if best_off else float("nan"),
        "policies_cpu_s_adaptive": policies_on,
        "policies_cpu_s_plain": policies_off,
        "adaptive_cost_in_run": (policies_on - policies_off) / best_off
        if best_off
        else float("nan"),
    }


def histogram_quantile(samples: dict[str, float], name: str, quantile: float) -> float:
    """Upper bucket bound under which ``quantile`` of a Prometheus histogram's counts fall."""
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), value)
        for key, value in samples.items()
        if key.startswith(f"{name}_bucket{{")
    )
    total = buckets[-1][1] if buckets else 0
    for bound, count in buckets:
        if total and count >= quantile * total:
            return bound
    return float("inf")


@contextmanager
def ready_worker(settings: Settings) -> Iterator[tuple[psutil.Process, str]]:
    """A worker process that owns every partition (ticks reached them all), then stopped."""
    metrics_url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    child = start_component("worker", settings)

    def owns_all() -> bool:
        adopted = scrape(metrics_url).get("spansieve_sampler_partitions_adopted_total", 0)
        return adopted >= settings.partitions

    try:
        if not wait_until(owns_all, "worker starting", 120):
            raise RuntimeError(f"worker did not start; see {settings.state_dir}/logs")
        yield psutil.Process(child.pid), metrics_url
    finally:
        stop_components([child])


def rss_after_trim(process: psutil.Process, metrics_url: str) -> int:
    """RSS right after the worker's next malloc_trim (agents/memory.py).

    RSS then counts what the worker holds, not freed memory that glibc kept.
    """
    trims = scrape(metrics_url).get(TRIM_COUNT, 0)
    wait_until(lambda: scrape(metrics_url).get(TRIM_COUNT, 0) > trims, "heap trim", 30)
    return process.memory_info().rss


def rss_per_span(base: Settings, folder: Path, traces: int) -> dict:
    """Resident memory growth of a worker per buffered span (nothing decided meanwhile).

    The growth includes RocksDB's memtables (4 MiB x 2 per partition database), which
    fill with the first ~64 MiB of spans and then stay that size: the figure falls as
    more spans are buffered.
    """
    settings = _worker_settings(base, folder, decision_wait=3600.0)
    ensure_topics(settings)
    messages, _ = build_messages(traces, settings.partitions, seed=11)
    spans = traces * SPANS_PER_TRACE
    with ready_worker(settings) as (process, metrics_url):
        rss_before = rss_after_trim(process, metrics_url)
        preload(settings, messages)
        wait_until(lambda: scrape(metrics_url).get(SPANS_RECEIVED, 0) >= spans, "buffering", 600)
        rss_after = rss_after_trim(process, metrics_url)
    return {
        "buffered_spans": spans,
        "rss_growth_bytes": rss_after - rss_before,
        "rss_bytes_per_buffered_span": (rss_after - rss_before) / spans,
    }
