"""The sink: kept traces -> span documents -> idempotent ``_bulk`` into OpenSearch.

* ``documents``: OTLP -> trace-analytics JSON documents, spliced from cached pieces;
* ``bulk``: ``BulkIndexer``, retries until OpenSearch took each document or refused it;
* ``batches``: a batch of kept-trace messages through documents and bulk, in order;
* ``writer``: ``TraceSink``, what the agent calls: store installation, holds, DLQ;
* ``metrics``: its Prometheus metrics.

May import ``config``, ``wire``, ``store`` and opensearch-py; never ``agents``.
"""
