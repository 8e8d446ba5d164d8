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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import structlog
from opensearchpy import AsyncOpenSearch, OpenSearch
from opensearchpy.exceptions import RequestError, TransportError
from prometheus_client import Counter

from pipeline.config.settings import Settings
from pipeline.sink.batches import DeadLetter
from pipeline.sink.bulk import FILTER_PATH, SPLIT_STATUSES, Backoff, classify_item
from pipeline.sink.metrics_documents import MetricDocument, MetricsMessageError, metric_documents
from pipeline.store.client import OrjsonSerializer
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
STAGE = b"metrics-store"

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

# Parks what can never be indexed (value, headers); the awaitable it returns settles once
# Kafka acknowledged it (as for the span sink).
SendDeadLetter = Callable[[bytes, dict[str, bytes]], Awaitable[Awaitable]]


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    """A document bound for one index: ``_index``, ``_id`` and its JSON source."""

    index: str
    id: str
    source: bytes

    def lines(self) -> bytes:
        action = orjson.dumps({"index": {"_index": self.index, "_id": self.id}})
        return action + b"\n" + self.source + b"\n"


@dataclass
class MetricsBatchResult:
    """Outcome of one batch of metrics messages."""

    indexed: int = 0
    expired: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    retry_rounds: int = 0


@dataclass
class _Outcome:
    indexed: int = 0
    retry: list[IndexedDocument] = field(default_factory=list)
    rejected: list[tuple[IndexedDocument, str, str]] = field(default_factory=list)
    reason: str = ""

    def add(self, other: _Outcome) -> None:
        self.indexed += other.indexed
        self.retry.extend(other.retry)
        self.rejected.extend(other.rejected)
        self.reason = self.reason or other.reason


def chunks(docs: list[IndexedDocument], max_bytes: int) -> list[list[IndexedDocument]]:
    """Documents grouped into ``_bulk`` bodies of at most ``max_bytes`` (one may exceed it)."""
    out: list[list[IndexedDocument]] = []
    chunk: list[IndexedDocument] = []
    size = 0
    for doc in docs:
        doc_size = len(doc.source) + len(doc.index) + len(doc.id) + 40
        if chunk and size + doc_size > max_bytes:
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(doc)
        size += doc_size
    if chunk:
        out.append(chunk)
    return out


class MetricsWriter:
    """The metrics store's state: OpenSearch client, template installation, DLQ."""

    def __init__(self, settings: Settings, send_dead_letter: SendDeadLetter) -> None:
        self.settings = settings
        self.base = metrics_index_base(settings)
        self.retention = metrics_retention_seconds(settings)
        self.send_dead_letter = send_dead_letter
        self.client = AsyncOpenSearch(
            hosts=[settings.opensearch_url],
            timeout=settings.store_request_timeout,
            max_retries=0,  # retried here, with backoff and forever
            serializer=OrjsonSerializer(),
            maxsize=2,
        )
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
        pending = self.documents(messages, result)
        backoff = Backoff(maximum=self.settings.store_max_backoff)
        while pending:
            outcome = await self._round(pending)
            result.indexed += outcome.indexed
            for doc, error_type, reason in outcome.rejected:
                headers = {"document-id": doc.id.encode(), "index": doc.index.encode()}
                result.dead.append(
                    DeadLetter(doc.source, error_type, f"{error_type}: {reason}", headers)
                )
            pending = outcome.retry
            if pending:
                result.retry_rounds += 1
                RETRIES.inc()
                if on_retry is not None:
                    on_retry(outcome.reason, result.retry_rounds)
                if result.retry_rounds == 1 or result.retry_rounds % 10 == 0:
                    log.warning(
                        "metrics bulk failed; retrying",
                        reason=outcome.reason[:500],
                        attempt=result.retry_rounds,
                    )
                await asyncio.sleep(backoff.next())
        return result

    async def settle(self, result: MetricsBatchResult) -> None:
        """After a batch: dead letters acknowledged by Kafka, counters."""
        if result.dead:
            sent = []
            for letter in result.dead:
                headers = {"reason": letter.reason.encode(), "stage": STAGE, **letter.headers}
                sent.append(await self.send_dead_letter(letter.value, headers))
                DEAD_LETTERS.labels(letter.kind).inc()
            await asyncio.gather(*sent)
            log.error(
                "metrics sent to the dlq",
                count=len(result.dead),
                topic=self.settings.topic("dlq"),
                first_reason=result.dead[0].reason[:500],
            )
        DOCUMENTS_INDEXED.inc(result.indexed)
        if result.expired:
            EXPIRED_SKIPPED.inc(result.expired)

    # --- one round of _bulk -------------------------------------------------------------

    async def _ensure_indices(self, names: set[str]) -> None:
        """Create the monthly indices not known to exist (from the template)."""
        for name in sorted(names - self._indices):
            try:
                await self.client.indices.create(index=name)
                log.info("metrics index created", index=name)
            except RequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
            self._indices.add(name)

    async def _round(self, docs: list[IndexedDocument]) -> _Outcome:
        """Send every document once; collect what must be retried."""
        try:
            await self._ensure_indices({doc.index for doc in docs})
        except (TransportError, TimeoutError, OSError) as exc:
            return _Outcome(retry=docs, reason=f"creating a metrics index: {exc!r}")
        merged = _Outcome()
        for chunk in chunks(docs, self.settings.store_bulk_bytes):
            merged.add(await self._send(chunk))
        return merged

    async def _send(self, chunk: list[IndexedDocument]) -> _Outcome:
        try:
            response = await self.client.bulk(
                body=b"".join(doc.lines() for doc in chunk),
                filter_path=FILTER_PATH,
                request_timeout=self.settings.store_request_timeout,
            )
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            if status in SPLIT_STATUSES:
                return await self._split(chunk, exc)
            return _Outcome(retry=chunk, reason=f"http {status}: {exc.error}")
        except (TimeoutError, OSError) as exc:
            return _Outcome(retry=chunk, reason=f"request failed: {exc!r}")
        if not response.get("errors"):
            return _Outcome(indexed=len(chunk))
        outcome = _Outcome()
        for doc, item in zip(chunk, response["items"], strict=True):
            verdict, error_type, reason = classify_item(item)
            if verdict == "ok":
                outcome.indexed += 1
            elif verdict == "retry":
                outcome.retry.append(doc)
                outcome.reason = outcome.reason or f"{error_type}: {reason}"
                if error_type == "index_not_found_exception":
                    self._indices.discard(doc.index)  # deleted under us: create it again
            else:
                outcome.rejected.append((doc, error_type, reason))
        return outcome

    async def _split(self, chunk: list[IndexedDocument], exc: TransportError) -> _Outcome:
        if len(chunk) == 1:
            reason = f"request refused ({exc.status_code}): {exc.error}"
            return _Outcome(rejected=[(chunk[0], str(exc.error), reason)])
        middle = len(chunk) // 2
        merged = _Outcome()
        for half in (chunk[:middle], chunk[middle:]):
            merged.add(await self._send(half))
        return merged
