"""Prometheus metrics of the gateway (served on the metrics port at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "spansieve_gateway_requests_total",
    "Export requests by transport and outcome",
    ["transport", "outcome"],
)
SPANS_ACCEPTED = Counter("spansieve_gateway_spans_accepted_total", "Spans written to Kafka")
SPANS_REJECTED = Counter(
    "spansieve_gateway_spans_rejected_total", "Spans refused, by reason", ["reason"]
)
BYTES_RECEIVED = Counter("spansieve_gateway_bytes_received_total", "Request body bytes read")
REDACTIONS = Counter(
    "spansieve_gateway_redactions_total", "Attribute keys removed and values masked", ["action"]
)
DELIVERY_SECONDS = Histogram(
    "spansieve_gateway_kafka_delivery_seconds",
    "Time from a request's spans being batched to Kafka's acknowledgement (includes the linger)",
)
BATCHES_SENT = Counter(
    "spansieve_gateway_batches_sent_total",
    "Batches of concurrent requests' spans sent to Kafka, by what sent them",
    ["trigger"],
)
MESSAGES_SENT = Counter(
    "spansieve_gateway_kafka_messages_sent_total",
    "Spans-topic messages produced (one per partition per batch)",
)
PRODUCER_QUEUE = Gauge(
    "spansieve_gateway_producer_queue_messages", "Messages in the Kafka producer's queue"
)
INFLIGHT_BYTES = Gauge(
    "spansieve_gateway_inflight_bytes", "Request bytes awaiting Kafka acknowledgement"
)
