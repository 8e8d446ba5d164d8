"""The OTLP ingestion gateway: receives spans, groups them by trace partition, writes Kafka."""
