"""The metrics store without OpenSearch: index names, template, retention rule, batches."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources

import orjson
import pytest

from pipeline.config.settings import Settings
from pipeline.sink.document_store import IndexedDocument, chunks
from pipeline.sink.metrics_writer import MetricsBatchResult, MetricsWriter
from pipeline.store.metrics_indices import (
    METRICS_TEMPLATE_FILE,
    index_month,
    metrics_index,
    metrics_index_base,
    metrics_template,
)
from pipeline.store.metrics_lifecycle import (
    DAY,
    expired_metrics_indices,
    is_expired,
    metrics_retention_seconds,
    month_end,
)
from tests.unit.sink.windows import T0, message, red_window

BASE = "t-spansieve-metrics"


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_index_names_follow_the_prefix_and_the_month():
    assert metrics_index_base(Settings(store_index_prefix="")) == "spansieve-metrics"
    assert metrics_index_base(Settings(store_index_prefix="t-")) == BASE
    assert metrics_index(BASE, T0) == f"{BASE}-2023.11"
    assert metrics_index(BASE, int(ts(2024, 1, 1) * 1e9) - 1) == f"{BASE}-2023.12"
    assert metrics_index(BASE, int(ts(2024, 1, 1) * 1e9)) == f"{BASE}-2024.01"
    assert index_month(BASE, f"{BASE}-2023.11") == (2023, 11)
    for other in (
        f"{BASE}-2023.13",
        f"{BASE}-2023.1",
        f"{BASE}-x-2023.11",
        f"{BASE}-2023.11-restored",
        "spansieve-metrics-2023.11",
        f"x{BASE}-2023.11",
    ):
        assert index_month(BASE, other) is None, other


def test_template_is_package_data_with_the_prefixed_pattern():
    assert (
        resources.files("pipeline.schemas") / ("spansieve-metrics-template.json")
        == METRICS_TEMPLATE_FILE
    )
    body = metrics_template(Settings(store_index_prefix="t-", store_replicas=1))
    assert body["index_patterns"] == [f"{BASE}-*"]
    assert body["template"]["settings"]["index.number_of_replicas"] == 1
    mappings = body["template"]["mappings"]
    props = mappings["properties"]
    assert props["@timestamp"]["type"] == "date"
    assert props["window_end"]["type"] == "date"
    for keyword in ("kind", "metric", "client", "server", "connection_type"):
        assert props[keyword]["type"] == "keyword"
    assert props["service"]["properties"]["name"]["type"] == "keyword"
    assert props["calls"]["type"] == props["count"]["type"] == "long"
    # Every string that arrives unmapped becomes a keyword: no text field, ever.
    assert b'"text"' not in orjson.dumps(body)
    strings = [next(iter(t.values()))["mapping"]["type"] for t in mappings["dynamic_templates"]]
    assert set(strings) == {"keyword"}
    assert mappings["date_detection"] is False


def test_month_end_and_expiry():
    assert month_end(2023, 11) == ts(2023, 12, 1)
    assert month_end(2023, 12) == ts(2024, 1, 1)
    retention = 90 * DAY
    assert metrics_retention_seconds(Settings()) == retention
    end = ts(2023, 12, 1)
    index = f"{BASE}-2023.11"
    # The newest window of November starts just before December 1st: kept 90 days from then.
    assert not is_expired(BASE, index, retention, end + retention)
    assert is_expired(BASE, index, retention, end + retention + 1)
    assert not is_expired(BASE, "unrelated-index", retention, end + 10 * retention)
    now = ts(2024, 3, 15)  # 105 days after December 1st, 74 after January 1st
    names = [f"{BASE}-2023.10", f"{BASE}-2023.11", f"{BASE}-2023.12", f"{BASE}-2024.03", "x"]
    assert expired_metrics_indices(BASE, names, retention, now) == [
        f"{BASE}-2023.10",
        f"{BASE}-2023.11",
    ]


def test_chunks_respect_the_byte_budget():
    docs = [IndexedDocument("i", str(n), b"x" * 100) for n in range(10)]
    grouped = chunks(docs, 300)
    assert [d for chunk in grouped for d in chunk] == docs
    assert all(len(chunk) == 2 for chunk in grouped)
    assert chunks([IndexedDocument("i", "1", b"x" * 1000)], 10) == [
        [IndexedDocument("i", "1", b"x" * 1000)]
    ]
    line = IndexedDocument("m-2023.11", "abc", b'{"a":1}').lines()
    assert line == b'{"index":{"_index":"m-2023.11","_id":"abc"}}\n{"a":1}\n'


@pytest.fixture
def writer() -> Iterator[MetricsWriter]:
    async def never(_value, _headers):  # pragma: no cover - not called here
        raise AssertionError

    w = MetricsWriter(Settings(store_index_prefix="t-"), never)
    yield w
    asyncio.run(w.client.close())


def test_batch_documents_dedupe_skip_expired_and_park_malformed(writer: MetricsWriter):
    key, value = message(red_window())
    old_key, old_value = message(red_window(start=T0 - 400 * DAY * 1_000_000_000))
    result = MetricsBatchResult()
    docs = writer.documents(
        [(key, value), (key, value), (old_key, old_value), (b"bad", b"x")],
        result,
        now=T0 / 1e9 + DAY,
    )
    assert len(docs) == 6  # the same window twice: once
    assert {d.index for d in docs} == {f"{BASE}-2023.11"}
    assert result.expired == 6  # T0 - 400 days is past the 90 days retention
    (dead,) = result.dead
    assert (dead.kind, dead.value, dead.headers) == ("malformed", b"x", {"key": b"bad"})
