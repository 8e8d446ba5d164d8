"""Writing small derived documents (metrics, service map) to OpenSearch, until settled.

The span sink's bulk machinery (``pipeline.sink.bulk``) is built for spans: routing by
trace, a pipeline of batches in flight. The metrics store and the service-map store write
far fewer, idempotent documents (their ids make a re-sent window overwrite itself), so
they share this simpler writer: one batch at a time, every document retried with backoff
until OpenSearch settles it, a request refused as malformed split in halves down to the
document at fault, and what can never be indexed parked on the DLQ with its reason.

A store subclasses :class:`DocumentWriter` and says how messages become documents, which
indices must exist first (``prepare``) and what to do when one vanished
(``index_missing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import structlog
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError
from prometheus_client import Counter

from pipeline.config.settings import Settings
from pipeline.sink.batches import DeadLetter
from pipeline.sink.bulk import FILTER_PATH, SPLIT_STATUSES, Backoff, chunked, sort_items
from pipeline.store.client import OrjsonSerializer

log = structlog.get_logger(__name__)

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


def chunks(docs: list[IndexedDocument], max_bytes: int) -> list[list[IndexedDocument]]:
    """Documents grouped into ``_bulk`` bodies of at most ``max_bytes`` (one may exceed it)."""
    return list(chunked(docs, max_bytes, _body_bytes))


def _body_bytes(doc: IndexedDocument) -> int:
    return len(doc.source) + len(doc.index) + len(doc.id) + 40


@dataclass
class StoreBatchResult:
    """Outcome of one batch: documents indexed, what went to the DLQ, retry rounds."""

    indexed: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    retry_rounds: int = 0


@dataclass
class BulkOutcome:
    """What one round of ``_bulk`` requests did to each document."""

    indexed: int = 0
    retry: list[IndexedDocument] = field(default_factory=list)
    rejected: list[tuple[IndexedDocument, str, str]] = field(default_factory=list)
    reason: str = ""
    missing: set[str] = field(default_factory=set)  # indices found deleted

    def add(self, other: BulkOutcome) -> None:
        self.indexed += other.indexed
        self.retry.extend(other.retry)
        self.rejected.extend(other.rejected)
        self.reason = self.reason or other.reason
        self.missing |= other.missing

    @classmethod
    def of_response(cls, chunk: list[IndexedDocument], response: dict) -> BulkOutcome:
        """What a ``_bulk`` response says about each document of ``chunk``."""
        items = sort_items(chunk, response)
        missing = {doc.index for doc, kind in items.retry if kind == "index_not_found_exception"}
        retry = [doc for doc, _ in items.retry]
        return cls(items.indexed, retry, items.rejected, items.reason, missing)


@dataclass(frozen=True)
class StoreCounters:
    """A store's own Prometheus counters for retries and dead letters."""

    retries: Counter
    dead_letters: Counter  # labelled by reason


class DocumentWriter:
    """Retries, splits and dead letters for a store of derived documents."""

    name = "documents"  # for logs: "metrics", "service-map"
    stage = b"documents"  # the DLQ header naming the stage

    def __init__(
        self, settings: Settings, send_dead_letter: SendDeadLetter, counters: StoreCounters
    ) -> None:
        self.settings = settings
        self.send_dead_letter = send_dead_letter
        self.counters = counters
        self.client = AsyncOpenSearch(
            hosts=[settings.opensearch_url],
            timeout=settings.store_request_timeout,
            max_retries=0,  # retried here, with backoff and forever
            serializer=OrjsonSerializer(),
            maxsize=2,
        )

    async def prepare(self, docs: list[IndexedDocument]) -> None:
        """Before a round: make sure the documents' indices exist (a store's choice)."""

    async def index_missing(self, indices: set[str]) -> None:
        """After a round that found ``indices`` deleted: what to do before the next one."""

    async def index_documents(
        self,
        pending: list[IndexedDocument],
        result: StoreBatchResult,
        on_retry: Callable[[str, int], None] | None = None,
    ) -> None:
        """Index ``pending`` until every document is settled (indexed or rejected)."""
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
            if not pending:
                break
            result.retry_rounds += 1
            self.counters.retries.inc()
            if outcome.missing:
                await self.index_missing(outcome.missing)
            if on_retry is not None:
                on_retry(outcome.reason, result.retry_rounds)
            if result.retry_rounds == 1 or result.retry_rounds % 10 == 0:
                log.warning(
                    f"{self.name} bulk failed; retrying",
                    reason=outcome.reason[:500],
                    attempt=result.retry_rounds,
                )
            await asyncio.sleep(backoff.next())

    async def send_dead_letters(self, result: StoreBatchResult) -> None:
        """Park the batch's dead letters on the DLQ; returns once Kafka acknowledged them."""
        if not result.dead:
            return
        sent = []
        for letter in result.dead:
            headers = {"reason": letter.reason.encode(), "stage": self.stage, **letter.headers}
            sent.append(await self.send_dead_letter(letter.value, headers))
            self.counters.dead_letters.labels(letter.kind).inc()
        await asyncio.gather(*sent)
        log.error(
            f"{self.name} sent to the dlq",
            count=len(result.dead),
            topic=self.settings.topic("dlq"),
            first_reason=result.dead[0].reason[:500],
        )

    async def _round(self, docs: list[IndexedDocument]) -> BulkOutcome:
        """Send every document once; collect what must be retried."""
        try:
            await self.prepare(docs)
        except (TransportError, TimeoutError, OSError) as exc:
            return BulkOutcome(retry=docs, reason=f"creating an index: {exc!r}")
        merged = BulkOutcome()
        for chunk in chunks(docs, self.settings.store_bulk_bytes):
            merged.add(await self._send(chunk))
        return merged

    async def _send(self, chunk: list[IndexedDocument]) -> BulkOutcome:
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
            return BulkOutcome(retry=chunk, reason=f"http {status}: {exc.error}")
        except (TimeoutError, OSError) as exc:
            return BulkOutcome(retry=chunk, reason=f"request failed: {exc!r}")
        return BulkOutcome.of_response(chunk, response)

    async def _split(self, chunk: list[IndexedDocument], exc: TransportError) -> BulkOutcome:
        """A request refused as malformed: halves, down to the document at fault."""
        if len(chunk) == 1:
            reason = f"request refused ({exc.status_code}): {exc.error}"
            return BulkOutcome(rejected=[(chunk[0], str(exc.error), reason)])
        middle = len(chunk) // 2
        merged = BulkOutcome()
        for half in (chunk[:middle], chunk[middle:]):
            merged.add(await self._send(half))
        return merged
