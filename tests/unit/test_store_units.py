"""Pure parts of the store: template rendering, lifecycle choice, ISM policy, bulk helpers."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.config.settings import Settings
from pipeline.sink.batches import BatchPipeline, BatchResult
from pipeline.sink.bulk import (
    Backoff,
    BulkIndexer,
    Doc,
    bulk_body,
    chunked,
    classify_item,
)
from pipeline.store.client import OrjsonSerializer
from pipeline.store.indices import next_index_name, schema_version, span_template, store_names
from pipeline.store.lifecycle import LifecycleError, choose_lifecycle, has_ism, ism_policy


def test_names_and_template_follow_the_prefix():
    settings = Settings(store_index_prefix="t1-", store_replicas=1, store_refresh_interval="7s")
    names = store_names(settings)
    assert names.span_alias == "t1-otel-v1-apm-span"
    assert names.first_span_index == "t1-otel-v1-apm-span-000001"
    assert names.service_map_index == "t1-otel-v1-apm-service-map"
    template = span_template(settings)
    assert template["index_patterns"] == ["t1-otel-v1-apm-span-*"]
    index = template["template"]["settings"]
    assert index["index.codec"] == "best_compression"
    assert index["index.number_of_replicas"] == 1
    assert index["index.refresh_interval"] == "7s"
    assert "plugins.index_state_management.rollover_alias" not in index
    assert schema_version(template) >= 2


def test_ism_template_names_the_rollover_alias():
    template = span_template(Settings(), codec="zstd", ism=True)
    index = template["template"]["settings"]
    assert index["plugins.index_state_management.rollover_alias"] == "otel-v1-apm-span"
    assert index["index.codec"] == "zstd"


def test_mapping_is_search_efficient():
    mappings = span_template(Settings())["template"]["mappings"]
    props = mappings["properties"]
    # Dashboards' span table sorts by these two: they need doc values
    assert props["spanId"] == props["parentSpanId"] == {"type": "keyword"}
    assert props["traceFields"]["properties"]["durationInNanos"]["type"] == "long"
    # Fields only aggregated, sorted or filtered alongside other clauses keep doc values
    # (which OpenSearch also searches) and no points; the time filter's startTime has both.
    group = props["traceGroupFields"]["properties"]
    trace = props["traceFields"]["properties"]
    for field in (
        props["endTime"],
        props["durationInNanos"],
        group["endTime"],
        group["durationInNanos"],
        trace["durationInNanos"],
        trace["spanCount"],
    ):
        assert field["index"] is False and field.get("doc_values", True)
    for field in (props["startTime"], group["statusCode"], props["status"]["properties"]["code"]):
        assert field.get("index", True) and field.get("doc_values", True)
    assert props["events"]["type"] == "nested" and props["links"]["type"] == "nested"
    templates = mappings["dynamic_templates"]
    by_name = {name: body for entry in templates for name, body in entry.items()}
    numbers = by_name["span_attributes_numbers"]
    assert numbers["match_mapping_type"] == "long"
    assert numbers["mapping"]["fields"]["num"]["type"] == "double"
    assert by_name["span_attributes"]["mapping"]["ignore_above"] == 1024


def test_next_index_name_keeps_the_width():
    assert next_index_name("otel-v1-apm-span-000001") == "otel-v1-apm-span-000002"
    assert next_index_name("x-otel-v1-apm-span-000999") == "x-otel-v1-apm-span-001000"
    with pytest.raises(ValueError):
        next_index_name("otel-v1-apm-span")


def test_lifecycle_prefers_ism_when_present():
    runner_plugins = {"org.opensearch.painless.painlessplugin"}
    assert not has_ism(runner_plugins)
    assert choose_lifecycle(Settings(), runner_plugins) == "worker"
    assert choose_lifecycle(Settings(), {"opensearch-index-management"}) == "ism"
    assert choose_lifecycle(Settings(store_lifecycle="worker"), {"opensearch-index-management"})
    with pytest.raises(LifecycleError, match="no Index State Management"):
        choose_lifecycle(Settings(store_lifecycle="ism"), runner_plugins)


def test_ism_policy_rolls_over_and_deletes_after_the_retention():
    settings = Settings(store_rollover_age="12h", store_rollover_size="30gb")
    body = ism_policy(settings, "otel-v1-apm-span")["policy"]
    hot, delete = body["states"]
    assert hot["actions"][0]["rollover"] == {"min_index_age": "12h", "min_size": "30gb"}
    assert hot["transitions"] == [
        {"state_name": "delete", "conditions": {"min_rollover_age": f"{7 * 86400}s"}}
    ]
    assert "delete" in delete["actions"][0]
    assert body["ism_template"][0]["index_patterns"] == ["otel-v1-apm-span-*"]


def test_bulk_body_is_ndjson_with_id_and_routing():
    doc = Doc("ab" * 12, "ab" * 8, b'{"a":1}')
    assert bulk_body([doc, doc]).split(b"\n") == [
        b'{"index":{"_id":"' + b"ab" * 12 + b'","routing":"' + b"ab" * 8 + b'"}}',
        b'{"a":1}',
        b'{"index":{"_id":"' + b"ab" * 12 + b'","routing":"' + b"ab" * 8 + b'"}}',
        b'{"a":1}',
        b"",
    ]


def test_chunks_respect_the_byte_budget_lazily():
    docs = (Doc(str(n), "r", b"x" * 100) for n in range(10))
    chunks = list(chunked(docs, 300))
    assert [len(chunk) for chunk in chunks] == [2, 2, 2, 2, 2]
    assert [len(c) for c in chunked([Doc("big", "r", b"x" * 1000)], 300)] == [1]


def test_serializer_skips_the_items_of_a_bulk_without_errors():
    serializer = OrjsonSerializer()
    all_ok = '{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}'
    assert serializer.loads(all_ok) == {"errors": False}
    assert serializer.loads(all_ok.encode()) == {"errors": False}
    failed = '{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400}}]}'
    assert serializer.loads(failed)["items"][1] == {"index": {"status": 400}}
    assert serializer.loads('{"acknowledged":true}') == {"acknowledged": True}


class _FakeBulkClient:
    """Answers ``_bulk`` after a pause; records bodies and the peak of requests in flight."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.in_flight = self.peak = 0

    async def bulk(self, body: bytes, **_params) -> dict:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        self.bodies.append(body)
        return {"errors": False}


def test_indexer_sends_everything_within_its_bounds():
    client = _FakeBulkClient()
    indexer = BulkIndexer(client, "alias", max_bytes=2_000, concurrency=2)  # type: ignore[arg-type]
    indexer.YIELD_EVERY = 3

    def docs(batch: int):
        return (Doc(f"{batch}-{n}", "r", b"x" * 300) for n in range(40))

    async def scenario() -> list:
        # Two batches at once, as the sink's pipeline runs them, sharing one indexer.
        return await asyncio.gather(indexer.index(docs(1)), indexer.index(docs(2)))

    reports = asyncio.run(scenario())
    assert [report.indexed for report in reports] == [40, 40]
    assert client.peak == 2
    assert all(len(body) <= 2_000 for body in client.bodies)
    ids = [
        line.split(b'"')[5].decode()
        for body in client.bodies
        for line in body.splitlines()
        if line.startswith(b'{"index"')
    ]
    assert sorted(ids) == sorted(f"{batch}-{n}" for batch in (1, 2) for n in range(40))


@pytest.mark.parametrize(
    ("item", "verdict"),
    [
        ({"index": {"status": 201}}, "ok"),
        ({"index": {"status": 200}}, "ok"),
        ({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}, "retry"),
        ({"index": {"status": 503, "error": {"type": "unavailable_shards_exception"}}}, "retry"),
        ({"index": {"status": 404, "error": {"type": "index_not_found_exception"}}}, "retry"),
        ({"index": {"status": 403, "error": {"type": "cluster_block_exception"}}}, "retry"),
        ({"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}, "reject"),
        ({"index": {"status": 400, "error": {"type": "illegal_argument_exception"}}}, "reject"),
    ],
)
def test_item_classification(item: dict, verdict: str):
    assert classify_item(item)[0] == verdict


def test_rejection_reason_includes_the_cause():
    item = {
        "index": {
            "status": 400,
            "error": {
                "type": "mapper_parsing_exception",
                "reason": "failed to parse field [endTime]",
                "caused_by": {"reason": "date is after 2262"},
            },
        }
    }
    assert classify_item(item) == (
        "reject",
        "mapper_parsing_exception",
        "failed to parse field [endTime]: date is after 2262",
    )


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(initial=1.0, maximum=4.0)
    delays = [backoff.next() for _ in range(5)]
    assert 0.8 <= delays[0] <= 1.2
    assert 1.6 <= delays[1] <= 2.4
    assert all(3.2 <= delay <= 4.8 for delay in delays[2:])


def test_batch_pipeline_finishes_in_order_with_bounded_depth():
    async def scenario() -> tuple[list[int], int]:
        finished: list[int] = []
        running = peak = 0

        async def work(delay: float) -> BatchResult:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(delay)
            running -= 1
            return BatchResult(indexed=1)

        async def done(tag: int, _result: BatchResult) -> None:
            finished.append(tag)

        pipeline: BatchPipeline[int] = BatchPipeline(2, done)
        for tag, delay in enumerate((0.05, 0.01, 0.03, 0.0)):
            await pipeline.submit(tag, work(delay))
        await pipeline.drain()
        return finished, peak

    finished, peak = asyncio.run(scenario())
    assert finished == [0, 1, 2, 3]  # acks follow the order batches were taken in
    assert peak == 2


def test_batch_pipeline_stops_at_the_first_failure():
    errors: list[BaseException] = []

    async def scenario() -> list[int]:
        finished: list[int] = []

        async def work(fail: bool) -> BatchResult:
            await asyncio.sleep(0)
            if fail:
                raise RuntimeError("bulk exploded")
            return BatchResult()

        async def done(tag: int, _result: BatchResult) -> None:
            finished.append(tag)

        pipeline: BatchPipeline[int] = BatchPipeline(1, done, on_error=errors.append)
        await pipeline.submit(0, work(False))
        await pipeline.submit(1, work(True))
        with pytest.raises(RuntimeError, match="bulk exploded"):
            await pipeline.submit(2, work(False))
        return finished

    assert asyncio.run(scenario()) == [0]  # nothing after the failed batch is acknowledged
    assert [str(error) for error in errors] == ["bulk exploded"]
