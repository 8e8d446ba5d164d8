"""Tail-sampling policies (OpenTelemetry Collector `tail_sampling` semantics)."""
