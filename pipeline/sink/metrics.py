"""Prometheus metrics of the sink and the worker-side store lifecycle."""

from prometheus_client import Counter, Gauge, Histogram

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
