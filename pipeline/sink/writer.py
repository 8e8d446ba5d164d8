"""The sink: bulk-index kept traces into OpenSearch, losing nothing across outages.

* Offsets are acknowledged only after OpenSearch took every document of a batch (or the
  document went to the DLQ and Kafka acknowledged that). The batch loop
  (``agents/sink.py``) is Faust's ``noack_take``: unlike ``take``, it never acks by
  itself, not even when the batch is abandoned at shutdown, so an unindexed batch is read
  again by whoever owns the partition next. Document ids make that replay harmless.
  ``store_batches_in_flight`` batches are indexed at once (building one batch's documents
  overlaps indexing the previous one); they are acknowledged in order as they finish.
* While OpenSearch fails, the sink keeps retrying the batch in hand with backoff and takes
  no new one; Faust's flow control then stops fetching the sampled topic's partitions, so
  the backlog waits in Kafka, not in memory. It carries on by itself once a retry
  succeeds (see ``TraceSink.hold``).
* A document OpenSearch can never take (a mapping error, a value out of range) goes to
  ``<prefix>-dlq`` with a ``reason`` header, the rest of the batch proceeds.
* At start, and again whenever the alias is found missing, the store is installed
  (``pipeline.store.setup``). Without the ISM plugin, the group leader runs the index
  lifecycle (rollover, retention) on a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from opensearchpy import AsyncOpenSearch, OpenSearch

from pipeline.config.settings import Settings
from pipeline.sink import metrics
from pipeline.sink.batches import BatchResult, DeadLetter, write_batch
from pipeline.sink.bulk import BulkIndexer
from pipeline.store.client import OrjsonSerializer
from pipeline.store.indices import store_names
from pipeline.store.lifecycle import run_worker_lifecycle
from pipeline.store.setup import StoreState, ensure_store

log = structlog.get_logger(__name__)

SETUP_RETRY_SECONDS = 5.0

# Parks a message OpenSearch can never take (value, headers); the awaitable it returns
# settles once Kafka acknowledged it.
SendDeadLetter = Callable[[bytes, dict[str, bytes]], Awaitable[Awaitable]]


class TraceSink:
    """The sink's state: OpenSearch clients, the indexer, hold state, DLQ."""

    def __init__(self, settings: Settings, send_dead_letter: SendDeadLetter) -> None:
        self.settings = settings
        self.alias = store_names(settings).span_alias
        self.send_dead_letter = send_dead_letter
        self.client = AsyncOpenSearch(
            hosts=[settings.opensearch_url],
            timeout=settings.store_request_timeout,
            max_retries=0,  # the indexer retries, with backoff and forever
            serializer=OrjsonSerializer(),
            maxsize=settings.store_bulk_concurrency + 2,
        )
        self.indexer = BulkIndexer(
            self.client,
            self.alias,
            max_bytes=settings.store_bulk_bytes,
            concurrency=settings.store_bulk_concurrency,
            timeout=settings.store_request_timeout,
            max_backoff=settings.store_max_backoff,
            on_request=metrics.SINK_BULK_SECONDS.observe,
        )
        self.state: StoreState | None = None
        self.setup_wanted = asyncio.Event()
        self.setup_wanted.set()
        self.held = False

    # --- store installation ---------------------------------------------------------

    def _sync_client(self) -> OpenSearch:
        return OpenSearch(hosts=[self.settings.opensearch_url], timeout=30, max_retries=0)

    async def keep_store_installed(self) -> None:
        """Install templates/alias/lifecycle at start and whenever asked; retry until done."""
        while True:
            await self.setup_wanted.wait()
            try:
                client = self._sync_client()
                self.state = await asyncio.to_thread(ensure_store, client, self.settings)
            except Exception as exc:
                log.warning("store setup failed; retrying", error=str(exc))
                await asyncio.sleep(SETUP_RETRY_SECONDS)
                continue
            self.setup_wanted.clear()
            log.info(
                "store ready",
                alias=self.state.span_alias,
                write_index=self.state.write_index,
                lifecycle=self.state.lifecycle,
                codec=self.state.codec,
            )

    async def lifecycle_pass(self) -> None:
        """The worker's fallback lifecycle (only when the cluster has no ISM)."""
        if self.state is None or self.state.lifecycle != "worker":
            return
        try:
            report = await asyncio.to_thread(
                run_worker_lifecycle, self._sync_client(), self.settings, self.alias
            )
        except Exception as exc:
            log.warning("lifecycle pass failed; next interval retries", error=str(exc))
            return
        if report.rolled_over_to:
            metrics.STORE_LIFECYCLE_ACTIONS.labels("rollover").inc()
        if report.deleted:
            metrics.STORE_LIFECYCLE_ACTIONS.labels("delete").inc(len(report.deleted))

    # --- holding back -------------------------------------------------------------------

    def hold(self, reason: str) -> None:
        """Note that the sink holds a batch it cannot index yet (gauge and one log line).

        Consumption stops by itself: the agent does not take the next batch, the stream's
        buffer fills, and Faust's flow control stops fetching those partitions until the
        buffer drains. The sink must not call ``consumer.pause_partitions`` itself: in
        faust-streaming 0.15 records already fetched for a partition paused that way are
        dropped, and the offsets they leave out are later committed as a "gap" (this lost
        traces in the outage test).
        """
        if not self.held:
            self.held = True
            metrics.SINK_PAUSED.set(1)
            log.warning("sink holding; the backlog waits in kafka", reason=reason[:500])

    def release(self) -> None:
        if self.held:
            self.held = False
            metrics.SINK_PAUSED.set(0)
            log.info("sink indexing again")

    def _on_retry(self, reason: str, attempt: int) -> None:
        metrics.SINK_RETRIES.inc()
        if "index_not_found_exception" in reason:
            self.setup_wanted.set()  # the alias is gone: install the store again
        self.hold(reason)
        if attempt == 1 or attempt % 10 == 0:
            log.warning("bulk index failed; retrying", reason=reason[:500], attempt=attempt)

    # --- batches ----------------------------------------------------------------------

    async def write(self, values: list[bytes]) -> BatchResult:
        """Index one batch of kept traces; returns once every document is settled."""
        while self.state is None:
            self.hold("store not installed yet (is OpenSearch up?)")
            await asyncio.sleep(0.5)
        return await write_batch(self.indexer, values, self._on_retry)

    async def settle(self, result: BatchResult) -> None:
        """After a batch: dead letters acknowledged by Kafka, metrics, hold released."""
        if result.dead:
            await self._send_dead_letters(result.dead)
        metrics.DOCUMENTS_INDEXED.inc(result.indexed)
        if result.items_retried:
            metrics.SINK_ITEMS_RETRIED.inc(result.items_retried)
        self.release()

    async def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        """Park what can never be indexed; waits for Kafka's acks before the batch is acked."""
        sent = []
        for letter in dead:
            headers = {"reason": letter.reason.encode(), "stage": b"sink", **letter.headers}
            sent.append(await self.send_dead_letter(letter.value, headers))
            metrics.SINK_DEAD_LETTERS.labels(letter.kind).inc()
        await asyncio.gather(*sent)
        log.error(
            "documents sent to the dlq",
            count=len(dead),
            topic=self.settings.topic("dlq"),
            first_reason=dead[0].reason[:500],
        )
