"""Prometheus metrics of the sampler (the worker serves them at /metrics)."""

from collections.abc import Callable
from functools import cache

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.policies.adaptive import Adaptive
from pipeline.policies.engine import PolicyEngine

SPANS_RECEIVED = Counter("spansieve_sampler_spans_received_total", "Spans read from Kafka")
TRACES_DECIDED = Counter(
    "spansieve_sampler_traces_decided_total",
    "Traces decided, by outcome and deciding policy",
    ["decision", "policy"],
)
POLICY_DECISIONS = Counter(
    "spansieve_sampler_policy_decisions_total",
    "Per-policy verdicts on evaluated traces",
    ["policy", "decision"],
)
EARLY_DECISIONS = Counter(
    "spansieve_sampler_early_decisions_total",
    "Traces decided before their time because the buffer was full",
)
LATE_SPANS = Counter(
    "spansieve_sampler_late_spans_total",
    "Spans that arrived after their trace was decided, by the cached decision",
    ["decision"],
)
TRACES_BUFFERED = Gauge("spansieve_sampler_traces_buffered", "Traces waiting for a decision")
BYTES_BUFFERED = Gauge("spansieve_sampler_bytes_buffered", "Span bytes waiting for a decision")
DECISIONS_CACHED = Gauge("spansieve_sampler_decisions_cached", "Entries in the decision cache")
DECISION_LATENCY = Histogram(
    "spansieve_sampler_decision_latency_seconds",
    "From a trace's first span to its decision",
    buckets=(0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 32, 35, 40, 60, 120, 300),
)
PARTITIONS_ADOPTED = Counter(
    "spansieve_sampler_partitions_adopted_total",
    "Partitions indexed after start-up or rebalance (recovery)",
)
SPANS_REPLAYED = Counter(
    "spansieve_sampler_spans_replayed_total",
    "Spans re-read from the spans topic after taking a partition over",
)
TRACES_RECOVERED = Counter(
    "spansieve_sampler_traces_recovered_total", "Buffered traces found again after recovery"
)
MALFORMED_MESSAGES = Counter(
    "spansieve_sampler_malformed_messages_total",
    "Spans-topic messages that are not OTLP (sent to the DLQ)",
)
POLICY_RELOADS = Counter(
    "spansieve_sampler_policy_reloads_total", "Policy file reloads, by result", ["result"]
)
TRACES_OVERSIZED = Counter(
    "spansieve_sampler_traces_oversized_total",
    "Traces dropped for exceeding maximum_trace_size_bytes",
)
REPLAY_GAP_OFFSETS = Counter(
    "spansieve_sampler_replay_gap_offsets_total",
    "Offsets of the spans topic a takeover had to re-read but retention had deleted",
)
SPANS_RESENT = Counter(
    "spansieve_sampler_spans_resent_total",
    "Spans of kept traces sent again after a takeover: the previous owner may have died "
    "before Kafka acknowledged them",
)
SPAN_METRICS_CPU = Counter(
    "spansieve_sampler_span_metrics_cpu_seconds",
    "CPU seconds of the sampler's thread spent on span metrics (RED, service graph, "
    "checkpoints, closing windows): their cost, measured where it is paid",
)
POLICIES_CPU = Counter(
    "spansieve_sampler_policies_cpu_seconds",
    "CPU seconds of the sampler's thread spent deciding traces with the policies (with the "
    "reads of the trace they make): what the policy file costs",
)
OFFSETS_SKIPPED_BY_CONSUMER = Counter(
    "spansieve_sampler_offsets_skipped_by_consumer_total",
    "Spans-topic offsets the consumer never delivered (Faust drops messages of an older "
    "consumer generation); read again from Kafka",
)
EVENTS_REDELIVERED = Counter(
    "spansieve_sampler_events_redelivered_total",
    "Spans-topic events delivered again after a seek, already handled: skipped",
)


# Every decided trace bumps a labelled series per policy. ``labels()`` takes a lock and
# builds a key each time (about 1.5 us); the children are looked up once instead.


@cache
def policy_decisions(policy: str, decision: str):
    """POLICY_DECISIONS' series for one policy and verdict."""
    return POLICY_DECISIONS.labels(policy, decision)


@cache
def traces_decided(decision: str, policy: str):
    """TRACES_DECIDED's series for one outcome and deciding policy."""
    return TRACES_DECIDED.labels(decision, policy)


#: per-operation probability series exposed per adaptive policy: the busiest operations
ADAPTIVE_OPERATIONS_EXPOSED = 50


class AdaptiveCollector(Collector):
    """The adaptive policies' state at scrape time: target, what the last interval kept
    and offered, and the probabilities of its busiest operations (at most
    ``ADAPTIVE_OPERATIONS_EXPOSED`` per policy, so the series stay bounded). Redis
    fallback is ``spansieve_redis_fallback`` (``pipeline.shared.health``)."""

    def __init__(self, engine_of: Callable[[], PolicyEngine]) -> None:
        self.engine_of = engine_of  # the current engine (policies are reloaded)

    def collect(self):
        target = GaugeMetricFamily(
            "spansieve_adaptive_target_spans_per_second",
            "The adaptive policy's target for the whole fleet",
            labels=["policy"],
        )
        kept = GaugeMetricFamily(
            "spansieve_adaptive_kept_spans_per_second",
            "Spans kept by all policies in the last interval (the fleet's when pooled)",
            labels=["policy"],
        )
        offered = GaugeMetricFamily(
            "spansieve_adaptive_offered_spans_per_second",
            "Spans of traces no other policy kept in the last interval (the fleet's when pooled)",
            labels=["policy"],
        )
        pooled = GaugeMetricFamily(
            "spansieve_adaptive_pooled",
            "1 when the probabilities come from the whole fleet's traffic (Redis), 0 when"
            " from this worker's own",
            labels=["policy"],
        )
        probability = GaugeMetricFamily(
            "spansieve_adaptive_probability",
            "Sampling probability of a root operation (the busiest ones)",
            labels=["policy", "service", "operation"],
        )
        for policy in self.engine_of().policies:
            if not isinstance(policy, Adaptive):
                continue
            rates = policy.rates
            target.add_metric([policy.name], rates.target)
            kept.add_metric([policy.name], rates.last_kept)
            offered.add_metric([policy.name], rates.last_rest)
            pooled.add_metric([policy.name], 1.0 if rates.pooled else 0.0)
            busiest = sorted(
                rates.last_rest_by_operation.items(), key=lambda item: item[1], reverse=True
            )[:ADAPTIVE_OPERATIONS_EXPOSED]
            for (service, operation), _ in busiest:
                value = rates.probabilities.get((service, operation), rates.default)
                probability.add_metric([policy.name, service, operation], value)
        yield from (target, kept, offered, pooled, probability)
