"""spansieve: a tail-sampling tracing backend (OTLP -> Kafka -> Faust -> OpenSearch).

One sub-package per stage of the data flow; ``docs/architecture.md`` maps each to its
entry function, and ``tests/unit/test_layering.py`` holds the rules below.

Shared foundations (import nothing of the stages):
  config/    settings (SPANSIEVE_*), the YAML layer with file:line:col errors, durations, logs
  wire/      OTLP codecs, per-trace pieces, the partitioner (pure: no Kafka, no HTTP)
  kafka/     Kafka plumbing: topic creation, an awaitable producer, range re-reads
  store/     the OpenSearch trace store: document field names, templates, setup, lifecycle
  shared/    state shared by all workers through Redis (pooled percentiles), with fallback

Stages, in the order spans meet them:
  gateway/   OTLP/gRPC and OTLP/HTTP in, auth, validation, redaction, Kafka out
  policies/  tail-sampling policies (the collector's language), pure
  sampler/   per-trace buffers in RocksDB, decisions, the decision cache
  sink/      kept traces -> span documents -> idempotent _bulk
  query/     the Jaeger-compatible API and the web UI

Apart from the product (only ``cli`` imports them):
  edge/      app-side middleware for W3C / B3 headers at an application's edge
  local/     the Docker-free local stack, ``spansieve run`` and its demo trace
  loadgen/   synthetic estates played against the gateway
  bench/     ``spansieve bench``
"""
