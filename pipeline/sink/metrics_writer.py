"""The metrics store's writer: span-metrics messages -> monthly OpenSearch indices.

What the metrics-store agent (``agents/metrics_store.py``) calls, batch by batch, as the
span sink's agent calls ``TraceSink``:

* documents from ``metrics_documents`` (one per series and window, with ids that make a
  replayed window overwrite itself), each to the monthly index of its window start
  (``pipeline.store.metrics_indices``); an index is created (from the template installed
  first) before its first document, so the mapping never comes from dynamic guessing;
* ``_bulk`` retried with backoff until OpenSearch took every document, as
  ``pipeline.sink.bulk`` does for spans (same error classes: 429/5xx, cluster blocks and
  failed requests are retried forever, a request refused as malformed or too large is
  split until the culprit stands alone); the agent acknowledges the batch's offsets only
  when ``write`` returned, so a batch that never finished is read again;
* what can never be indexed (a message that is no metrics window, a document OpenSearch
  refuses) goes to ``<prefix>-dlq`` with a ``reason`` header, and the batch proceeds;
* a window whose month is already past ``metrics_retention_days`` is skipped (counted):
  writing it would recreate an index the lifecycle just deleted;
* the group leader runs the retention pass (``pipeline.store.metrics_lifecycle``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError
from prometheus_client import Counter

from pipeline.config.settings import Settings
from pipeline.sink.batches import DeadLetter
from pipeline.sink.document_store import (
    DocumentWriter,
    IndexedDocument,
    SendDeadLetter,
    StoreBatchResult,
    StoreCounters,
)
from pipeline.sink.metrics_documents import MetricDocument, MetricsMessageError, metric_documents
from pipeline.store.metrics_indices import (
    install_metrics_template,
    metrics_index,
    metrics_index_base,
)
from pipeline.store.metrics_lifecycle import (
    is_expired,
    metrics_retention_seconds,
    run_metrics_lifecycle,
)

log = structlog.get_logger(__name__)

SETUP_RETRY_SECONDS = 5.0

DOCUMENTS_INDEXED = Counter(
    "spansieve_metrics_store_documents_indexed_total",
    "Span-metrics documents (one series in one window) indexed or overwritten",
)
EXPIRED_SKIPPED = Counter(
    "spansieve_metrics_store_expired_total",
    "Span-metrics documents not written: their month is past metrics_retention_days",
)
RETRIES = Counter(
    "spansieve_metrics_store_retries_total", "Metrics _bulk rounds retried after an error"
)
DEAD_LETTERS = Counter(
    "spansieve_metrics_store_dead_letters_total",
    "Metrics messages or documents sent to the DLQ, by error type",
    ["reason"],
)
INDICES_DELETED = Counter(
    "spansieve_metrics_store_indices_deleted_total",
    "Monthly span-metrics indices deleted by the retention pass",
)


@dataclass
class MetricsBatchResult(StoreBatchResult):
    """Outcome of one batch of metrics messages."""

    expired: int = 0


class MetricsWriter(DocumentWriter):
    """The metrics store's state: OpenSearch client, template installation, DLQ."""

    name = "metrics"
    stage = b"metrics-store"

    def __init__(self, settings: Settings, send_dead_letter: SendDeadLetter) -> None:
        super().__init__(settings, send_dead_letter, StoreCounters(RETRIES, DEAD_LETTERS))
        self.base = metrics_index_base(settings)
        self.retention = metrics_retention_seconds(settings)
        self.installed = asyncio.Event()
        self._indices: set[str] = set()  # monthly indices known to exist

    # --- set-up and lifecycle ---------------------------------------------------------

    def _sync_client(self) -> OpenSearch:
        return OpenSearch(hosts=[self.settings.opensearch_url], timeout=30, max_retries=0)

    async def keep_template_installed(self) -> None:
        """Install the metrics index template at start; retry until it is done."""
        while not self.installed.is_set():
            try:
                await asyncio.to_thread(
                    install_metrics_template, self._sync_client(), self.settings
                )
            except Exception as exc:
                log.warning("metrics template install failed; retrying", error=str(exc))
                await asyncio.sleep(SETUP_RETRY_SECONDS)
                continue
            self.installed.set()
            log.info("metrics store ready", indices=f"{self.base}-YYYY.MM")

    async def lifecycle_pass(self) -> list[str]:
        """Delete the monthly indices past retention (core APIs: runs without ISM)."""
        try:
            deleted = await asyncio.to_thread(
                run_metrics_lifecycle, self._sync_client(), self.settings
            )
        except Exception as exc:
            log.warning("metrics lifecycle pass failed; next interval retries", error=str(exc))
            return []
        self._indices.difference_update(deleted)
        INDICES_DELETED.inc(len(deleted))
        return deleted

    # --- batches ------------------------------------------------------------------------

    def documents(
        self,
        messages: list[tuple[bytes | None, bytes]],
        result: MetricsBatchResult,
        now: float | None = None,
    ) -> list[IndexedDocument]:
        """The batch's documents, each bound for its monthly index; malformed messages and
        expired windows are noted in ``result``."""
        now = time.time() if now is None else now
        docs: dict[tuple[str, str], IndexedDocument] = {}
        for key, value in messages:
            try:
                built: list[MetricDocument] = metric_documents(value, key)
            except MetricsMessageError as exc:
                headers = {"key": key or b""}
                result.dead.append(DeadLetter(value, "malformed", f"malformed: {exc}", headers))
                continue
            for doc in built:
                index = metrics_index(self.base, doc.start_unix_nanos)
                if is_expired(self.base, index, self.retention, now):
                    result.expired += 1
                    continue
                # The same series and window twice in one batch: the later one wins, as
                # it would across batches.
                docs[(index, doc.id)] = IndexedDocument(index, doc.id, doc.encoded())
        return list(docs.values())

    async def write(
        self,
        messages: list[tuple[bytes | None, bytes]],
        on_retry: Callable[[str, int], None] | None = None,
    ) -> MetricsBatchResult:
        """Index one batch of metrics messages (key, value); returns once all are settled."""
        await self.installed.wait()
        result = MetricsBatchResult()
        await self.index_documents(self.documents(messages, result), result, on_retry)
        return result

    async def settle(self, result: MetricsBatchResult) -> None:
        """After a batch: dead letters acknowledged by Kafka, counters."""
        await self.send_dead_letters(result)
        DOCUMENTS_INDEXED.inc(result.indexed)
        if result.expired:
            EXPIRED_SKIPPED.inc(result.expired)

    # --- indices ------------------------------------------------------------------------

    async def prepare(self, docs: list[IndexedDocument]) -> None:
        """Create the monthly indices not known to exist (from the template)."""
        for name in sorted({doc.index for doc in docs} - self._indices):
            try:
                await self.client.indices.create(index=name)
                log.info("metrics index created", index=name)
            except RequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
            self._indices.add(name)

    async def index_missing(self, indices: set[str]) -> None:
        """Deleted under us: created again before the next round."""
        self._indices -= indices
