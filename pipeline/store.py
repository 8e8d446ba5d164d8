"""OpenSearch side of the pipeline: index template, rollover alias and bulk writes."""

from __future__ import annotations

from pathlib import Path

import orjson
import structlog
from opensearchpy import AsyncOpenSearch, OpenSearch
from opensearchpy.exceptions import RequestError
from opensearchpy.helpers import async_bulk

from pipeline.documents import span_documents
from pipeline.otlp import TracesData
from pipeline.settings import SPAN_ALIAS

log = structlog.get_logger(__name__)

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
SPAN_TEMPLATE = "otel-v1-apm-span"
FIRST_SPAN_INDEX = f"{SPAN_ALIAS}-000001"


def ensure_span_index(client: OpenSearch) -> None:
    """Install the span template and the first rollover index behind the alias (idempotent)."""
    template = orjson.loads((SCHEMAS / "otel-v1-apm-span-template.json").read_bytes())
    client.indices.put_index_template(name=SPAN_TEMPLATE, body=template)
    if client.indices.exists_alias(name=SPAN_ALIAS):
        return
    try:
        client.indices.create(
            index=FIRST_SPAN_INDEX,
            body={"aliases": {SPAN_ALIAS: {"is_write_index": True}}},
        )
        log.info("span index created", index=FIRST_SPAN_INDEX, alias=SPAN_ALIAS)
    except RequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise


def bulk_actions(traces: list[TracesData]) -> list[dict]:
    """One idempotent index action per span: id = trace id + span id, routed by trace id."""
    actions = []
    for data in traces:
        for doc_id, doc in span_documents(data):
            actions.append(
                {
                    "_op_type": "index",
                    "_index": SPAN_ALIAS,
                    "_id": doc_id,
                    "_routing": doc["traceId"],
                    "_source": doc,
                }
            )
    return actions


async def index_traces(client: AsyncOpenSearch, traces: list[TracesData]) -> int:
    """Bulk-index the spans of kept traces; returns how many documents were written."""
    actions = bulk_actions(traces)
    if not actions:
        return 0
    written, _errors = await async_bulk(client, actions, max_retries=5, initial_backoff=1)
    return written


def trace_span_count(client: OpenSearch, trace_id: str) -> int:
    """How many span documents of a trace are searchable now (0 before the index exists)."""
    if not client.indices.exists_alias(name=SPAN_ALIAS):
        return 0
    result = client.count(index=SPAN_ALIAS, body={"query": {"term": {"traceId": trace_id}}})
    return int(result["count"])
