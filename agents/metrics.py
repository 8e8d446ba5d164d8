"""Prometheus metrics of the worker (served by Faust web at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

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
HEAP_TRIM_SECONDS = Histogram(
    "spansieve_worker_heap_trim_seconds",
    "Time spent handing freed heap memory back to the OS (malloc_trim)",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
)
DOCUMENTS_INDEXED = Counter("spansieve_sink_documents_indexed_total", "Span documents indexed")
SINK_RETRIES = Counter("spansieve_sink_retries_total", "Bulk requests retried after an error")
SINK_ITEMS_RETRIED = Counter(
    "spansieve_sink_items_retried_total",
    "Span documents sent again (per-item 429/5xx, or their whole request failed)",
)
SINK_DEAD_LETTERS = Counter(
    "spansieve_sink_dead_letters_total",
    "Span documents (or messages) OpenSearch can never take, sent to the DLQ, by error type",
    ["reason"],
)
SINK_PAUSED = Gauge(
    "spansieve_sink_paused", "1 while the sink holds a batch OpenSearch has not taken yet"
)
SINK_BULK_SECONDS = Histogram(
    "spansieve_sink_bulk_seconds",
    "Duration of one _bulk request",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STORE_LIFECYCLE_ACTIONS = Counter(
    "spansieve_store_lifecycle_actions_total",
    "Rollovers and index deletions done by the worker's lifecycle (no ISM plugin)",
    ["action"],
)
