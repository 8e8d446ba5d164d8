"""spansieve: a tail-sampling tracing backend (OTLP -> Kafka -> Faust -> OpenSearch)."""
