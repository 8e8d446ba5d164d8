"""The sink's work on one batch, without Faust: kept-trace messages -> span documents ->
bulk indexing, and back what can never be indexed, as dead letters with their reason.

The sink agent and the sink benchmark both run batches through ``write_batch``, and
``BatchPipeline`` keeps a few batches in flight so that building the documents of the
next batch overlaps OpenSearch indexing the previous one; batches still finish in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from google.protobuf.message import Message

from pipeline.sink.bulk import BulkReport, Doc, Rejected
from pipeline.sink.documents import encoded_documents, parse_traces
from pipeline.wire.otlp import DecodeError

T = TypeVar("T")


class Indexer(Protocol):
    """What a batch is indexed with: ``pipeline.sink.bulk.BulkIndexer`` (an in-memory
    double in tests); it settles every document before returning."""

    async def index(
        self,
        docs: Iterable[Doc],
        on_retry: Callable[[str, int], Awaitable[None] | None] | None = None,
    ) -> BulkReport: ...


@dataclass(frozen=True)
class DeadLetter:
    """A message or document for the DLQ: its bytes, an error kind, a reason, headers."""

    value: bytes
    kind: str
    reason: str
    headers: dict[str, bytes] = field(default_factory=dict)


@dataclass
class BatchResult:
    indexed: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    items_retried: int = 0
    retry_rounds: int = 0


def _documents(traces: list[Message], dead: list[DeadLetter]) -> Iterator[Doc]:
    for data in traces:
        try:
            docs = [Doc(*encoded) for encoded in encoded_documents(data)]
        except Exception as exc:  # a span the mapping cannot express: park its trace
            dead.append(DeadLetter(data.SerializeToString(), "document", f"document: {exc!r}"))
            continue
        yield from docs


def _dead_letter(rejected: Rejected) -> DeadLetter:
    headers = {"document-id": rejected.doc.id.encode(), "trace-id": rejected.doc.routing.encode()}
    reason = f"{rejected.error_type}: {rejected.reason}"
    return DeadLetter(rejected.doc.source, rejected.error_type, reason, headers)


async def write_batch(
    indexer: Indexer,
    values: list[bytes],
    on_retry: Callable[[str, int], Awaitable[None] | None] | None = None,
) -> BatchResult:
    """Index the spans of a batch of kept-trace messages; returns once all are settled."""
    dead: list[DeadLetter] = []
    traces = []
    for value in values:
        try:
            traces.append(parse_traces(value))
        except DecodeError as exc:
            dead.append(DeadLetter(value, "malformed", f"malformed: {exc}"))
    report = await indexer.index(_documents(traces, dead), on_retry)
    dead.extend(_dead_letter(rejected) for rejected in report.rejected)
    return BatchResult(report.indexed, dead, report.items_retried, report.retry_rounds)


class BatchPipeline(Generic[T]):
    """Up to ``depth`` batches in flight; each batch's ``done`` runs in submission order.

    ``submit`` waits while ``depth`` batches are unfinished, which is what holds the
    consumer back. If a batch or its ``done`` fails, the pipeline stops, ``on_error`` is
    called, and the next ``submit`` (or ``drain``) raises that error; nothing after it
    is finished.
    """

    def __init__(
        self,
        depth: int,
        done: Callable[[T, BatchResult], Awaitable[None]],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._slots = asyncio.Semaphore(depth)
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[BatchResult]]] = asyncio.Queue()
        self._done = done
        self._finisher: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._on_error = on_error

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    async def submit(self, tag: T, work: Awaitable[BatchResult]) -> None:
        if self._finisher is None:
            self._finisher = asyncio.create_task(self._finish_in_order())
        await self._slots.acquire()
        if self._error is not None and asyncio.iscoroutine(work):
            work.close()  # never started: say so, instead of "never awaited" warnings
        self._check()
        self._queue.put_nowait((tag, asyncio.ensure_future(work)))

    async def drain(self) -> None:
        """Wait until every submitted batch is finished."""
        if self._finisher is not None and self._error is None:
            await self._queue.join()
        self._check()

    async def _finish_in_order(self) -> None:
        while True:
            tag, work = await self._queue.get()
            try:
                await self._done(tag, await work)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._error = exc
                self._slots.release()
                self._queue.task_done()
                while not self._queue.empty():  # let drain() return; their work is moot
                    self._queue.get_nowait()[1].cancel()
                    self._queue.task_done()
                if self._on_error is not None:
                    self._on_error(exc)
                return
            self._slots.release()
            self._queue.task_done()
