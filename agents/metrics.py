"""Prometheus metrics of the worker (served by Faust web at /metrics)."""

from prometheus_client import Counter, Gauge

SPANS_BUFFERED = Counter("spansieve_sampler_spans_received_total", "Spans put in trace buffers")
TRACES_DECIDED = Counter(
    "spansieve_sampler_traces_decided_total", "Traces decided, by outcome and policy",
    ["decision", "policy"],
)
TRACES_IN_BUFFER = Gauge("spansieve_sampler_traces_buffered", "Traces waiting for a decision")
DOCUMENTS_INDEXED = Counter("spansieve_sink_documents_indexed_total", "Span documents indexed")
SINK_RETRIES = Counter("spansieve_sink_retries_total", "Bulk requests retried after an error")
