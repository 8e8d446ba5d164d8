"""Jaeger's SPM endpoints (/api/metrics/*) against the shared OpenSearch, on private indices.

RED windows are counted by the real aggregator over a few spans, encoded as the sampler
sends them (one message per window and partition) and turned into documents by the
sink's own code (``metric_documents``); they are indexed into monthly indices under a
private ``spm-<random>-`` prefix, from the real metrics template. The four windows
straddle a month boundary, so one step bucket gathers documents of two indices (shards)
and the histogram script's reduce merges them. The query app runs in-process
(test_query.py's ``in_process``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.local.run import free_port
from pipeline.metrics.red import RedAggregator
from pipeline.query.spm import (
    rfc3339,
)
from pipeline.sink.metrics_documents import MetricDocument, metric_documents
from pipeline.store.metrics_indices import (
    install_metrics_template,
    metrics_index,
    metrics_index_base,
)
from tests.integration.cleanup import drop_indices
from tests.integration.test_query import in_process
from tests.unit.metrics.spans import span, tid, trace
from tests.unit.sink.windows import MS, S, message, sid

pytestmark = pytest.mark.integration

# Four 15 s windows from 2023-11-30T23:59:30Z: two in November, two in December.
T0_S = int(datetime(2023, 11, 30, 23, 59, 30, tzinfo=UTC).timestamp())
T0 = T0_S * S
T0_MS = T0_S * 1000
WINDOW_MS = 15_000
END_MS = T0_MS + 4 * WINDOW_MS


def ending(window: int, at_ms: int, ms: int) -> tuple[int, int]:
    """(start, end) in ns of a span of ``ms`` ending ``at_ms`` into window ``window``
    (a span counts in the window of its end)."""
    end = T0 + window * 15 * S + at_ms * MS
    return end - ms * MS, end


# (partition, service, span name, kind, window, duration ms, status)
SPANS = [
    (0, "api", "GET /", "server", 0, 3, "ok"),
    (0, "api", "GET /", "server", 0, 7, "unset"),
    (0, "api", "SELECT", "client", 0, 1, "unset"),
    (0, "api", "POST /pay", "server", 1, 5, "unset"),
    (0, "api", "GET /", "server", 2, 12, "unset"),
    (1, "api", "GET /", "server", 2, 120, "error"),
    (1, "api", "POST /pay", "server", 3, 50, "unset"),
    (0, "db", "query", "server", 3, 2, "unset"),
]


def red_documents() -> list[MetricDocument]:
    """The documents the sink writes for ``SPANS``: per partition, one message per window."""
    docs: list[MetricDocument] = []
    for partition in (0, 1):
        aggregator = RedAggregator()
        for n, (part, service, name, kind, window, ms, status) in enumerate(SPANS):
            if part == partition:
                start, end = ending(window, 1_000 + n, ms)
                one = span(service, name, kind, start, end, status=status, span_id=sid(n + 1))
                aggregator.add_trace(trace(one), tid(n + 1), True)
        for closed in aggregator.close(T0 + 4 * 15 * S):
            key, value = message(closed, partition=partition)
            docs.extend(metric_documents(value, key))
    return docs


def index_documents(client: OpenSearch, settings: Settings, docs: list[MetricDocument]) -> None:
    """Into their monthly indices (created from the store's metrics template, as the writer
    does), refreshed."""
    base = metrics_index_base(settings)
    for index in {metrics_index(base, doc.start_unix_nanos) for doc in docs}:
        client.indices.create(index=index, ignore=400)  # 400: it exists already
    lines = []
    for doc in docs:
        index = metrics_index(base, doc.start_unix_nanos)
        lines.append(orjson.dumps({"index": {"_index": index, "_id": doc.id}}))
        lines.append(doc.encoded())
    answer = client.bulk(body=b"\n".join(lines) + b"\n", refresh="true")
    assert not answer["errors"], answer


@contextmanager
def metrics_store(
    stack: Settings, opensearch: OpenSearch, docs: list[MetricDocument], prefix: str = ""
) -> Iterator[Settings]:
    """``docs`` in a metrics store of their own (``spm-<random>-``, or under the
    ``store_index_prefix`` ``prefix``), dropped afterwards."""
    name = prefix or f"spm-{uuid.uuid4().hex[:8]}-"
    settings = stack.model_copy(update={"store_index_prefix": name})
    try:
        install_metrics_template(opensearch, settings)
        index_documents(opensearch, settings, docs)
        yield settings
    finally:
        drop_indices(opensearch, settings)


@pytest.fixture(scope="module")
def store(stack: Settings, opensearch: OpenSearch) -> Iterator[Settings]:
    docs = red_documents()
    base = metrics_index_base(stack.model_copy(update={"store_index_prefix": "x-"}))
    # November and December: one step bucket gathers documents of two indices (shards).
    assert len({metrics_index(base, doc.start_unix_nanos) for doc in docs}) == 2
    with metrics_store(stack, opensearch, docs) as settings:
        yield settings


def family(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"name", "type", "help", "metrics"}
    assert body["type"] == "GAUGE"
    return body


def series(body: dict[str, Any]) -> dict[tuple[str, ...], list[tuple[str, float]]]:
    """Label values -> [(timestamp, value)] of each metric."""
    return {
        tuple(label["value"] for label in metric["labels"]): [
            (p["timestamp"], p["gaugeValue"]["doubleValue"]) for p in metric["metricPoints"]
        ]
        for metric in body["metrics"]
    }


def at(offset_ms: int) -> str:
    return rfc3339(T0_MS + offset_ms)


# One minute back from the end, one-minute steps and rate windows: the point at the end
# covers all four windows, the one at the start none.
MINUTE = f"endTs={END_MS}&lookback=60000&step=60000&ratePer=60000"


def test_calls_errors_and_latencies_per_service(store: Settings):
    calls, errors, p50, p75, p95 = in_process(
        store,
        f"/api/metrics/calls?service=api&{MINUTE}",
        f"/api/metrics/errors?service=api&{MINUTE}",
        f"/api/metrics/latencies?service=api&quantile=0.5&{MINUTE}",
        f"/api/metrics/latencies?service=api&quantile=0.75&{MINUTE}",
        f"/api/metrics/latencies?service=api&quantile=0.95&{MINUTE}",
    )
    # Server spans of api: GET / 3, 7, 12, 120 (error) ms; POST /pay 5, 50 ms.
    assert family(calls)["name"] == "service_call_rate"
    assert series(family(calls)) == {("api",): [(at(0), 0.0), (at(60_000), 0.1)]}
    assert series(family(errors)) == {("api",): [(at(60_000), pytest.approx(1 / 6))]}
    # Over the connector's bounds 2, 4, 6, 8, 10, 50, 100, 200 ms, as histogram_quantile:
    # p50 rank 3 in (6, 8]; p75 rank 4.5 in (10, 50]; p95 rank 5.7 in (100, 200].
    assert family(p95)["help"] == "0.95th quantile latency, grouped by service"
    assert series(family(p50)) == {("api",): [(at(60_000), pytest.approx(8.0))]}
    assert series(family(p75)) == {("api",): [(at(60_000), pytest.approx(40.0))]}
    assert series(family(p95)) == {("api",): [(at(60_000), pytest.approx(170.0))]}


def test_grouped_by_operation(store: Settings):
    query = f"service=api&groupByOperation=true&{MINUTE}"
    calls, errors, p95 = in_process(
        store,
        f"/api/metrics/calls?{query}",
        f"/api/metrics/errors?{query}",
        f"/api/metrics/latencies?quantile=0.95&{query}",
    )
    assert family(calls)["name"] == "service_operation_call_rate"
    assert family(calls)["metrics"][0]["labels"] == [
        {"name": "service_name", "value": "api"},
        {"name": "operation", "value": "GET /"},
    ]
    assert series(family(calls)) == {
        ("api", "GET /"): [(at(0), 0.0), (at(60_000), pytest.approx(4 / 60))],
        ("api", "POST /pay"): [(at(0), 0.0), (at(60_000), pytest.approx(2 / 60))],
    }
    assert series(family(errors)) == {
        ("api", "GET /"): [(at(60_000), 0.25)],
        ("api", "POST /pay"): [(at(60_000), 0.0)],
    }
    assert family(p95)["name"] == "service_operation_latencies"
    assert series(family(p95)) == {
        ("api", "GET /"): [(at(60_000), pytest.approx(180.0))],  # rank 3.8 in (100, 200]
        ("api", "POST /pay"): [(at(60_000), pytest.approx(46.0))],  # rank 1.9 in (10, 50]
    }


def test_rates_slide_over_the_rate_window(store: Settings):
    """15 s steps, 30 s rate windows: each point adds the two windows before it."""
    query = f"service=api&endTs={END_MS}&lookback=60000&step=15000&ratePer=30000"
    calls, errors = in_process(store, f"/api/metrics/calls?{query}", f"/api/metrics/errors?{query}")
    # api server calls per window: 2, 1, 2 (1 error), 1.
    assert series(family(calls)) == {
        ("api",): [
            (at(0), 0.0),
            (at(15_000), pytest.approx(2 / 30)),
            (at(30_000), pytest.approx(3 / 30)),
            (at(45_000), pytest.approx(3 / 30)),  # a November and a December window
            (at(60_000), pytest.approx(3 / 30)),
        ]
    }
    assert series(family(errors)) == {
        ("api",): [
            (at(15_000), 0.0),
            (at(30_000), 0.0),
            (at(45_000), pytest.approx(1 / 3)),
            (at(60_000), pytest.approx(1 / 3)),
        ]
    }


def test_span_kinds_and_services_filter(store: Settings):
    client, both, nobody = in_process(
        store,
        f"/api/metrics/calls?service=api&spanKind=client&{MINUTE}",
        f"/api/metrics/calls?service=db&service=api&{MINUTE}",
        f"/api/metrics/latencies?service=nobody&quantile=0.5&{MINUTE}",
    )
    assert series(family(client)) == {("api",): [(at(0), 0.0), (at(60_000), pytest.approx(1 / 60))]}
    assert series(family(both)) == {
        ("api",): [(at(0), 0.0), (at(60_000), 0.1)],
        ("db",): [(at(0), 0.0), (at(60_000), pytest.approx(1 / 60))],
    }
    assert family(nobody)["metrics"] == []


def test_bad_parameters_and_minstep(store: Settings):
    missing, bad_step, minstep = in_process(
        store,
        "/api/metrics/latencies?service=api",
        "/api/metrics/calls?service=api&step=0",
        "/api/metrics/minstep",
    )
    for reply, prefix in ((missing, "quantile: "), (bad_step, "step: ")):
        assert reply.status_code == 400
        body = reply.json()
        assert body["data"] is None
        [problem] = body["errors"]
        assert problem["code"] == 400
        assert problem["msg"].startswith(prefix)
    assert minstep.json()["data"] == round(store.span_metrics_window * 1000)


def test_no_metrics_indices_is_empty_and_opensearch_down_is_503(store: Settings):
    empty = store.model_copy(update={"store_index_prefix": f"spm-{uuid.uuid4().hex[:8]}-"})
    [calls] = in_process(empty, f"/api/metrics/calls?service=api&{MINUTE}")
    assert family(calls)["metrics"] == []
    dead = store.model_copy(update={"opensearch_url": f"http://127.0.0.1:{free_port()}"})
    [down] = in_process(dead, f"/api/metrics/errors?service=api&{MINUTE}")
    assert down.status_code == 503
    assert down.json()["errors"][0]["msg"].startswith("OpenSearch unreachable")
