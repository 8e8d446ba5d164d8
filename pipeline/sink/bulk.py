"""Idempotent bulk indexing of span documents, retried until OpenSearch took each one.

Documents go to the write alias in NDJSON ``_bulk`` bodies of at most ``max_bytes``, with
at most ``concurrency`` requests in flight per indexer (shared by concurrent ``index``
calls); bodies are built while earlier ones are being indexed.
``require_alias`` makes a vanished alias an error instead of silently creating a plain
index of that name. Every document has a fixed id (trace id + span id) and is routed by
trace id, so sending it again overwrites it with itself: retries and Kafka redeliveries
are harmless.

What happens to a document, by the answer it gets:

* created / updated: done;
* 429, 5xx, cluster blocks, missing alias, unavailable shards; or the whole request
  failed (connection refused or reset, timeout, 429/5xx): retried, with exponential backoff,
  for as long as it takes;
* any other per-item 4xx (mapping errors and the like): it can never be indexed, and is
  handed back as *rejected* with the reason, so the caller can dead-letter it;
* a whole request refused as too large (413) or malformed (400): split in halves until the
  culprit stands alone, then rejected. Other whole-request errors (401, 403, 404 from a
  proxy, ...) are retried: they are about the cluster, not the documents.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConnectionError as TransportConnectionError
from opensearchpy.exceptions import TransportError

# Per-item errors that go away by themselves (or after we recreate the alias).
RETRYABLE_TYPES = frozenset(
    {
        "cluster_block_exception",
        "index_not_found_exception",
        "unavailable_shards_exception",
        "es_rejected_execution_exception",
        "rejected_execution_exception",
        "circuit_breaking_exception",
        "process_cluster_event_timeout_exception",
        "no_shard_available_action_exception",
    }
)
SPLIT_STATUSES = frozenset({400, 413})
FILTER_PATH = (
    "errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.reason"
)
D = TypeVar("D")  # a document of any store: span documents here, derived ones elsewhere


@dataclass(slots=True)  # not frozen: its __init__ would cost 0.2 µs more per document
class Doc:
    """One encoded span document: id, routing key and JSON source."""

    id: str
    routing: str
    source: bytes

    def lines(self) -> bytes:
        action = f'{{"index":{{"_id":"{self.id}","routing":"{self.routing}"}}}}\n'
        return action.encode() + self.source + b"\n"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A document OpenSearch will never take, with its reason (``type: reason``)."""

    doc: Doc
    error_type: str
    reason: str


@dataclass
class BulkReport:
    """Outcome of indexing one set of documents."""

    indexed: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    retry_rounds: int = 0
    items_retried: int = 0


@dataclass
class _Outcome:
    indexed: int = 0
    retry: list[Doc] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    reason: str = ""


class Backoff:
    """Exponential backoff with jitter, capped: 0.5 s, 1 s, 2 s, ... up to ``maximum``."""

    def __init__(self, initial: float = 0.5, maximum: float = 10.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)


def bulk_body(docs: list[Doc]) -> bytes:
    """The NDJSON body for ``docs`` (action line, source, action line, ...), one join."""
    parts: list[bytes] = []
    add = parts.append
    for doc in docs:
        add(f'{{"index":{{"_id":"{doc.id}","routing":"{doc.routing}"}}}}\n'.encode())
        add(doc.source)
        add(b"\n")
    return b"".join(parts)


def _body_bytes(doc: Doc) -> int:
    """A document's share of a ``_bulk`` body (its source and action line)."""
    return len(doc.source) + len(doc.id) + len(doc.routing) + 40


def chunked(
    docs: Iterable[D], max_bytes: int, body_bytes: Callable[[D], int] = _body_bytes
) -> Iterator[list[D]]:
    """Group documents lazily into bodies of at most ``max_bytes`` (one doc may exceed
    it); ``body_bytes`` tells a document's share of a body."""
    chunk: list[D] = []
    size = 0
    for doc in docs:
        doc_size = body_bytes(doc)
        if chunk and size + doc_size > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(doc)
        size += doc_size
    if chunk:
        yield chunk


def classify_item(item: dict) -> tuple[str, str, str]:
    """("ok" | "retry" | "reject", error type, reason) of one ``_bulk`` response item."""
    result = next(iter(item.values()))
    status = int(result.get("status", 500))
    if status < 300:
        return "ok", "", ""
    error = result.get("error") or {}
    error_type = error.get("type", f"http_{status}")
    reason = error.get("reason", "")
    caused_by = (error.get("caused_by") or {}).get("reason")
    if caused_by:
        reason = f"{reason}: {caused_by}"
    if status == 429 or status >= 500 or error_type in RETRYABLE_TYPES:
        return "retry", error_type, reason
    return "reject", error_type, reason


@dataclass
class SortedItems(Generic[D]):
    """A ``_bulk`` response, document by document: how many were indexed, those to send
    again (with their error type), those refused (error type, reason), and the first
    retryable error (for logs)."""

    indexed: int = 0
    retry: list[tuple[D, str]] = field(default_factory=list)
    rejected: list[tuple[D, str, str]] = field(default_factory=list)
    reason: str = ""


def sort_items(chunk: list[D], response: dict) -> SortedItems[D]:
    """Sort the documents of ``chunk`` by what the ``_bulk`` response says of each."""
    if not response.get("errors"):
        return SortedItems(indexed=len(chunk))
    out: SortedItems[D] = SortedItems()
    for doc, item in zip(chunk, response["items"], strict=True):
        verdict, error_type, reason = classify_item(item)
        if verdict == "ok":
            out.indexed += 1
        elif verdict == "retry":
            out.retry.append((doc, error_type))
            out.reason = out.reason or f"{error_type}: {reason}"
        else:
            out.rejected.append((doc, error_type, reason))
    return out


class BulkIndexer:
    """Index documents into one alias until each is indexed or known to be unindexable."""

    YIELD_EVERY = 256  # documents built between two turns of the event loop (~2 ms)

    def __init__(
        self,
        client: AsyncOpenSearch,
        alias: str,
        *,
        max_bytes: int = 4 * 1024**2,
        concurrency: int = 2,
        timeout: float = 30.0,
        max_backoff: float = 10.0,
        on_request: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.alias = alias
        self.max_bytes = max_bytes
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.on_request = on_request
        # One budget of requests in flight for every index() call sharing this indexer,
        # and one chunk built at a time (see _round).
        self._slots = asyncio.Semaphore(concurrency)
        self._builder = asyncio.Lock()

    async def index(
        self,
        docs: Iterable[Doc],
        on_retry: Callable[[str, int], Awaitable[None] | None] | None = None,
    ) -> BulkReport:
        """Index ``docs`` (consumed lazily); returns only when none is left to retry.

        ``on_retry(reason, round)`` is called before each backoff pause, so the caller can
        stop consuming while OpenSearch is in trouble.
        """
        report = BulkReport()
        backoff = Backoff(maximum=self.max_backoff)
        pending = await self._round(docs, report)
        while pending.retry:
            report.retry_rounds += 1
            report.items_retried += len(pending.retry)
            if on_retry is not None:
                maybe = on_retry(pending.reason, report.retry_rounds)
                if maybe is not None:
                    await maybe
            await asyncio.sleep(backoff.next())
            pending = await self._round(pending.retry, report)
        return report

    async def _round(self, docs: Iterable[Doc], report: BulkReport) -> _Outcome:
        """Send every chunk once; collect what must be retried.

        Building documents is CPU work that blocks the event loop. So that OpenSearch does
        not wait for it, the next chunk is built while ``concurrency`` requests are in
        flight and then waits, ready, for a slot; while it is built the loop gets a turn
        every ``YIELD_EVERY`` documents, so a finished request is noticed at once. One
        chunk is built at a time across all rounds sharing this indexer (the builder
        lock): two batches building in turns would each finish late.
        """
        slots = self._slots
        tasks: list[asyncio.Task[_Outcome]] = []
        remaining = iter(docs)
        carry: Doc | None = None

        async def send(chunk: list[Doc]) -> _Outcome:
            try:
                return await self._send(chunk)
            finally:
                slots.release()

        while True:
            async with self._builder:
                chunk, carry = await self._next_chunk(remaining, carry)
                if not chunk:
                    break
                await slots.acquire()
            tasks.append(asyncio.create_task(send(chunk)))
            await asyncio.sleep(0)  # let the request start before the next chunk is built
        merged = _Outcome()
        for outcome in await asyncio.gather(*tasks):
            report.indexed += outcome.indexed
            report.rejected.extend(outcome.rejected)
            merged.retry.extend(outcome.retry)
            merged.reason = merged.reason or outcome.reason
        return merged

    async def _next_chunk(
        self, docs: Iterator[Doc], first: Doc | None
    ) -> tuple[list[Doc], Doc | None]:
        """``first`` and what follows of ``docs`` up to ``max_bytes``, and the document
        that did not fit; the event loop gets a turn every ``YIELD_EVERY`` documents."""
        chunk: list[Doc] = []
        size = 0
        if first is not None:
            chunk.append(first)
            size = _body_bytes(first)
        for count, doc in enumerate(docs, 1):
            doc_size = _body_bytes(doc)
            if chunk and size + doc_size > self.max_bytes:
                return chunk, doc
            chunk.append(doc)
            size += doc_size
            if count % self.YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return chunk, None

    async def _send(self, chunk: list[Doc]) -> _Outcome:
        """One ``_bulk`` request; splits the chunk when the request as a whole is refused."""
        started = time.perf_counter()
        try:
            response = await self.client.bulk(
                body=bulk_body(chunk),
                index=self.alias,
                require_alias=True,
                filter_path=FILTER_PATH,
                request_timeout=self.timeout,
            )
        except TransportConnectionError as exc:
            return _Outcome(retry=chunk, reason=f"connection: {exc.error or exc}")
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            if status in SPLIT_STATUSES:
                return await self._split(chunk, exc)
            return _Outcome(retry=chunk, reason=f"http {status}: {exc.error}")
        except (TimeoutError, OSError) as exc:
            return _Outcome(retry=chunk, reason=f"request failed: {exc!r}")
        finally:
            if self.on_request is not None:
                self.on_request(time.perf_counter() - started)
        return self._items(chunk, response)

    async def _split(self, chunk: list[Doc], exc: TransportError) -> _Outcome:
        if len(chunk) == 1:
            reason = f"request refused ({exc.status_code}): {exc.error}"
            return _Outcome(rejected=[Rejected(chunk[0], str(exc.error), reason)])
        middle = len(chunk) // 2
        merged = _Outcome()
        for half in (chunk[:middle], chunk[middle:]):
            outcome = await self._send(half)
            merged.indexed += outcome.indexed
            merged.retry.extend(outcome.retry)
            merged.rejected.extend(outcome.rejected)
            merged.reason = merged.reason or outcome.reason
        return merged

    @staticmethod
    def _items(chunk: list[Doc], response: dict) -> _Outcome:
        items = sort_items(chunk, response)
        return _Outcome(
            items.indexed,
            [doc for doc, _ in items.retry],
            [Rejected(doc, error_type, reason) for doc, error_type, reason in items.rejected],
            items.reason,
        )
