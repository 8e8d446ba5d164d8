"""Logs and metrics beside a trace, against the shared OpenSearch on private indices.

Log records shaped as Data Prepper's OpenSearch sink writes them go into a private
``corrtest-<random>-logs`` index (mapped as Data Prepper's log template maps the fields
read here: ``traceId`` keyword, ``time`` date_nanos), deleted at the end. Exemplars come
from the private span-metrics store of test_query_spm.py (its ``store`` fixture: RED
documents made by the real aggregator and the sink's own code). The handlers run in a
Starlette app built here, answering errors as the query app does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opensearchpy import AsyncOpenSearch, OpenSearch
from starlette.routing import Route

from pipeline.config.settings import Settings
from pipeline.local.run import free_port
from pipeline.query.correlation import LogReader, metrics_exemplars, trace_logs, ui_config
from tests.asgi import get_all_async, handlers_app
from tests.integration.test_query_spm import END_MS, T0_MS, store  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "00f067aa0ba902b74bf92f3577b34da6"
SPAN = "00f067aa0ba902b7"

# The fields this reader relies on, mapped as Data Prepper's log index template maps them.
LOG_MAPPING = {
    "date_detection": False,
    "properties": {
        "traceId": {"type": "keyword"},
        "spanId": {"type": "keyword"},
        "serviceName": {"type": "keyword"},
        "time": {"type": "date_nanos"},
        "observedTimestamp": {"type": "date_nanos"},
        "severityText": {"type": "keyword"},
        "severityNumber": {"type": "integer"},
        "body": {"type": "text"},
    },
}


def log_document(trace_id: str, time: str, body: str, **fields: Any) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "spanId": SPAN,
        "time": time,
        "observedTimestamp": time,
        "serviceName": "cart",
        "severityText": "INFO",
        "severityNumber": 9,
        "body": body,
        "log.attributes.http@route": "/cart",
        "resource.attributes.service@name": "cart",
        **fields,
    }


# Indexed out of order; three of TRACE lie within one millisecond, µs apart (date_nanos
# keeps them in order), one of another trace sits between them.
DOCUMENTS = [
    log_document(TRACE, "2024-05-01T10:00:00.000300000Z", "third"),
    log_document(OTHER, "2024-05-01T10:00:00.000150000Z", "other trace"),
    log_document(TRACE, "2024-05-01T10:00:00.000100000Z", "first", spanId=""),
    log_document(TRACE, "2024-05-01T10:00:01.5Z", "last", severityText="ERROR", severityNumber=17),
    log_document(TRACE, "2024-05-01T10:00:00.000200000Z", "second"),
]
FIRST_US = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z


@pytest.fixture(scope="module")
def logs(stack: Settings, opensearch: OpenSearch) -> Iterator[Settings]:
    index = f"corrtest-{uuid.uuid4().hex[:8]}-logs"
    try:
        opensearch.indices.create(index=index, body={"mappings": LOG_MAPPING})
        for doc in DOCUMENTS:
            opensearch.index(index=index, body=doc)
        opensearch.indices.refresh(index=index)
        yield stack.model_copy(update={"query_logs_index": index})
    finally:
        opensearch.indices.delete(index=index, ignore_unavailable=True)


def serve(settings: Settings, *paths: str) -> list[httpx.Response]:
    """GET each path from an app holding the correlation routes, over a fresh client."""

    async def go() -> list[httpx.Response]:
        client = AsyncOpenSearch(hosts=[settings.opensearch_url], timeout=5, max_retries=0)
        routes = [
            Route("/api/traces/{trace_id}/logs", trace_logs),
            Route("/api/ui/config", ui_config),
            Route("/api/metrics/exemplars", metrics_exemplars),
        ]
        try:
            return await get_all_async(handlers_app(routes, client, settings), paths)
        finally:
            await client.close()

    return asyncio.run(go())


def read_logs(settings: Settings, trace_id: str) -> tuple[list[dict[str, Any]], bool]:
    async def go() -> tuple[list[dict[str, Any]], bool]:
        client = AsyncOpenSearch(hosts=[settings.opensearch_url], timeout=5, max_retries=0)
        try:
            return await LogReader.of(client, settings).trace_logs(trace_id)
        finally:
            await client.close()

    return asyncio.run(go())


def test_reader_returns_exactly_the_traces_records_in_time_order(logs: Settings):
    records, capped = read_logs(logs, TRACE)
    assert not capped
    assert [r["body"] for r in records] == ["first", "second", "third", "last"]
    assert [r["timestamp"] for r in records] == [
        FIRST_US + 100,
        FIRST_US + 200,
        FIRST_US + 300,
        FIRST_US + 1_500_000,
    ]
    assert {r["traceID"] for r in records} == {TRACE}
    assert records[0] == {
        "timestamp": FIRST_US + 100,
        "traceID": TRACE,
        "spanID": "",
        "service": "cart",
        "severity": "INFO",
        "severityNumber": 9,
        "body": "first",
        "attributes": {"http.route": "/cart"},
    }
    assert (records[-1]["severity"], records[-1]["spanID"]) == ("ERROR", SPAN)
    [other], _ = read_logs(logs, OTHER)
    assert other["body"] == "other trace"


def test_logs_endpoint_caps_and_missing_index_is_empty(logs: Settings):
    capped = logs.model_copy(update={"query_max_logs": 2})
    [reply] = serve(capped, f"/api/traces/{TRACE.upper()}/logs")
    body = reply.json()
    assert reply.status_code == 200
    assert [r["body"] for r in body["data"]] == ["first", "second"]
    assert (body["total"], body["errors"]) == (2, None)
    assert "query_max_logs=2" in body["warnings"][0]
    nowhere = logs.model_copy(update={"query_logs_index": f"corrtest-{uuid.uuid4().hex[:8]}-*"})
    [empty, config] = serve(nowhere, f"/api/traces/{TRACE}/logs", "/api/ui/config")
    assert empty.status_code == 200
    assert empty.json()["data"] == [] and "warnings" not in empty.json()
    assert config.json() == {"logLinks": [], "logs": True}


def test_logs_endpoint_when_opensearch_is_down(logs: Settings):
    dead = logs.model_copy(update={"opensearch_url": f"http://127.0.0.1:{free_port()}"})
    [down] = serve(dead, f"/api/traces/{TRACE}/logs")
    assert down.status_code == 503
    assert down.json()["errors"][0]["msg"].startswith("OpenSearch unreachable")


def tid(n: int) -> str:
    return f"{n:032x}"


def test_exemplars_from_the_metrics_store(store: Settings):  # noqa: F811 (fixture)
    window = f"endTs={END_MS}&lookback=60000"
    api, pay, db, past = serve(
        store,
        f"/api/metrics/exemplars?service=api&{window}",
        f"/api/metrics/exemplars?service=api&operation=POST%20/pay&{window}",
        f"/api/metrics/exemplars?service=db&spanKind=client&{window}",
        f"/api/metrics/exemplars?service=api&endTs={T0_MS + 15_000}&lookback=15000",
    )
    assert api.status_code == 200, api.text
    body = api.json()
    assert (body["total"], body["errors"]) == (7, None)

    def window_end(k: int) -> int:
        return T0_MS + (k + 1) * 15_000

    # One span per series and window, so each series' mean is that span's duration.
    assert body["data"] == [
        {"traceID": tid(7), "timestamp": window_end(3), "operation": "POST /pay", "durationMs": 50},
        {"traceID": tid(6), "timestamp": window_end(2), "operation": "GET /", "durationMs": 120},
        {"traceID": tid(5), "timestamp": window_end(2), "operation": "GET /", "durationMs": 12},
        {"traceID": tid(4), "timestamp": window_end(1), "operation": "POST /pay", "durationMs": 5},
        {"traceID": tid(2), "timestamp": window_end(0), "operation": "GET /", "durationMs": 7},
        {"traceID": tid(1), "timestamp": window_end(0), "operation": "GET /", "durationMs": 3},
        {"traceID": tid(3), "timestamp": window_end(0), "operation": "SELECT", "durationMs": 1},
    ]
    assert [e["traceID"] for e in pay.json()["data"]] == [tid(7), tid(4)]
    assert db.json()["data"] == []  # db's spans are server spans
    assert [e["traceID"] for e in past.json()["data"]] == [tid(2), tid(1), tid(3)]
