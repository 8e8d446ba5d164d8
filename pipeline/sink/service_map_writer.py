"""The service-map writer: service-map messages -> the ``otel-v1-apm-service-map`` index.

What the service-map agent (``agents/service_map_store.py``) calls, batch by batch, as the
metrics store calls ``MetricsWriter``:

* input: one message of ``<prefix>-service-map`` per closed window and partition, keyed
  partition (4 bytes) + window start in unix nanoseconds (8), big-endian (the key is not
  needed here and not checked); the value is a JSON array of documents in Data Prepper's
  service-map format (``serviceName``, ``kind``, ``destination``, ``target``,
  ``traceGroupName``, ``hashId``; ``pipeline.metrics.service_map`` writes them);
* output: one ``index`` operation per document into ``<store_index_prefix>`` +
  ``otel-v1-apm-service-map`` with ``_id`` = ``hashId``, as Data Prepper's OpenSearch sink
  does, so a relationship sent again (the next window, a Kafka redelivery, a replay)
  overwrites its own document instead of adding one. A ``hashId`` twice in one batch is
  written once (the later document wins, as it would across batches);
* a message that is not such an array (not JSON, not an array, an element without a
  string ``hashId`` / ``serviceName``, a field of the wrong shape) goes whole to
  ``<prefix>-dlq`` with a ``reason`` header and the batch proceeds; so does a document
  OpenSearch refuses;
* ``_bulk`` is retried with backoff until OpenSearch took every document (same error
  classes as ``pipeline.sink.bulk``: 429/5xx, cluster blocks and failed requests are retried
  forever, a request refused as malformed or too large is split until the culprit stands
  alone); the agent acknowledges the batch's offsets only when ``write`` returned;
* the index template and the index are installed before the first write (also done by
  ``pipeline.store.setup.ensure_store``; both are idempotent), so the mapping never comes
  from dynamic guessing, and the index is created again if it vanished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
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
from pipeline.store.indices import service_map_template, store_names

log = structlog.get_logger(__name__)

SETUP_RETRY_SECONDS = 5.0
# Fields that, when present, are a string or null / an endpoint object or null.
TEXT_FIELDS = ("kind", "traceGroupName")
ENDPOINT_FIELDS = ("destination", "target")
ENDPOINT_KEYS = ("resource", "domain")

MESSAGES = Counter(
    "spansieve_service_map_messages_total", "Service-map messages read (one window each)"
)
DOCUMENTS_INDEXED = Counter(
    "spansieve_service_map_documents_indexed_total",
    "Service-map documents indexed or overwritten (one relationship or isolated service)",
)
DUPLICATES = Counter(
    "spansieve_service_map_duplicates_total",
    "Service-map documents not sent: the same hashId came later in the same batch",
)
RETRIES = Counter(
    "spansieve_service_map_retries_total", "Service-map _bulk rounds retried after an error"
)
DEAD_LETTERS = Counter(
    "spansieve_service_map_dead_letters_total",
    "Service-map messages or documents sent to the DLQ, by error type",
    ["reason"],
)


class ServiceMapMessageError(ValueError):
    """A message that is not a JSON array of service-map documents."""


def _check_document(position: int, doc: Any) -> None:
    if not isinstance(doc, dict):
        raise ServiceMapMessageError(f"element {position} is not an object")
    for name in ("hashId", "serviceName"):
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise ServiceMapMessageError(f"element {position}: {name} is not a non-empty string")
    for name in TEXT_FIELDS:
        value = doc.get(name)
        if value is not None and not isinstance(value, str):
            raise ServiceMapMessageError(f"element {position}: {name} is not a string or null")
    for name in ENDPOINT_FIELDS:
        value = doc.get(name)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(
            isinstance(value.get(key), str) for key in ENDPOINT_KEYS
        ):
            raise ServiceMapMessageError(
                f"element {position}: {name} is not null or {{resource, domain}} strings"
            )


def parse_service_map_message(value: bytes | None) -> list[dict[str, Any]]:
    """The documents of one service-map message, validated (see the module docstring)."""
    if value is None:
        raise ServiceMapMessageError("no value")
    try:
        docs = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ServiceMapMessageError(f"not JSON: {exc}") from None
    if not isinstance(docs, list):
        raise ServiceMapMessageError(f"not a JSON array but {type(docs).__name__}")
    for position, doc in enumerate(docs):
        _check_document(position, doc)
    return docs


@dataclass
class ServiceMapBatchResult(StoreBatchResult):
    """Outcome of one batch of service-map messages."""

    messages: int = 0
    duplicates: int = 0


class ServiceMapWriter(DocumentWriter):
    """The service-map store's state: OpenSearch client, index installation, DLQ."""

    name = "service-map"
    stage = b"service-map-store"

    def __init__(self, settings: Settings, send_dead_letter: SendDeadLetter) -> None:
        super().__init__(settings, send_dead_letter, StoreCounters(RETRIES, DEAD_LETTERS))
        names = store_names(settings)
        self.index = names.service_map_index
        self.template = names.service_map_template
        self.installed = asyncio.Event()

    # --- set-up -------------------------------------------------------------------------

    def _install(self) -> None:
        """Template, then the index from it (idempotent; races with other workers are fine)."""
        client = OpenSearch(hosts=[self.settings.opensearch_url], timeout=30, max_retries=0)
        try:
            client.indices.put_index_template(
                name=self.template, body=service_map_template(self.settings)
            )
            if not client.indices.exists(index=self.index):
                try:
                    client.indices.create(index=self.index)
                    log.info("service-map index created", index=self.index)
                except RequestError as exc:
                    if exc.error != "resource_already_exists_exception":
                        raise
        finally:
            client.close()

    async def keep_index_installed(self) -> None:
        """Install the template and the index at start; retry until it is done."""
        while not self.installed.is_set():
            try:
                await asyncio.to_thread(self._install)
            except Exception as exc:
                log.warning("service-map index install failed; retrying", error=str(exc))
                await asyncio.sleep(SETUP_RETRY_SECONDS)
                continue
            self.installed.set()
            log.info("service-map store ready", index=self.index)

    # --- batches ------------------------------------------------------------------------

    def documents(
        self, messages: list[tuple[bytes | None, bytes | None]], result: ServiceMapBatchResult
    ) -> list[IndexedDocument]:
        """The batch's documents, one per hashId; malformed messages are noted in ``result``."""
        docs: dict[str, IndexedDocument] = {}
        for key, value in messages:
            result.messages += 1
            try:
                built = parse_service_map_message(value)
            except ServiceMapMessageError as exc:
                headers = {"key": key or b""}
                result.dead.append(
                    DeadLetter(value or b"", "malformed", f"malformed: {exc}", headers)
                )
                continue
            for doc in built:
                doc_id = doc["hashId"]
                if doc_id in docs:
                    result.duplicates += 1
                    del docs[doc_id]  # re-inserted below: the later one wins and goes last
                docs[doc_id] = IndexedDocument(self.index, doc_id, orjson.dumps(doc))
        return list(docs.values())

    async def write(
        self,
        messages: list[tuple[bytes | None, bytes | None]],
        on_retry: Callable[[str, int], None] | None = None,
    ) -> ServiceMapBatchResult:
        """Index one batch of service-map messages (key, value); returns once all settled."""
        await self.installed.wait()
        result = ServiceMapBatchResult()
        await self.index_documents(self.documents(messages, result), result, on_retry)
        return result

    async def settle(self, result: ServiceMapBatchResult) -> None:
        """After a batch: dead letters acknowledged by Kafka, counters."""
        await self.send_dead_letters(result)
        MESSAGES.inc(result.messages)
        DOCUMENTS_INDEXED.inc(result.indexed)
        if result.duplicates:
            DUPLICATES.inc(result.duplicates)

    async def index_missing(self, indices: set[str]) -> None:
        """The index vanished (deleted by hand): install it again before the next round."""
        try:
            await asyncio.to_thread(self._install)
        except Exception as exc:  # the next round finds out again
            log.warning("service-map index install failed", error=str(exc))
