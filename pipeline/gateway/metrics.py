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
    "spansieve_gateway_kafka_delivery_seconds", "Time from produce to Kafka acknowledgement"
)
PRODUCER_QUEUE = Gauge(
    "spansieve_gateway_producer_queue_messages", "Messages in the Kafka producer's queue"
)
INFLIGHT_BYTES = Gauge(
    "spansieve_gateway_inflight_bytes", "Request bytes awaiting Kafka acknowledgement"
)
