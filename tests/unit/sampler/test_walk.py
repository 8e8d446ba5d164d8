"""One trace walked from OTLP bytes to OpenSearch documents, with no server: the gateway's
parse and per-trace pieces, the spans topic (in memory), the sampler's buffer (rocksdict)
and decision, the kept message, then the sink's documents and batches (an in-memory
indexer in place of OpenSearch)."""

from __future__ import annotations

import asyncio
import json

from pipeline.sink.batches import BatchPipeline, BatchResult, write_batch
from pipeline.sink.bulk import BulkReport, Doc, Rejected
from pipeline.sink.documents import encoded_documents, parse_traces
from pipeline.store.fields import document_id
from pipeline.wire.otlp import ExportTraceServiceRequest
from pipeline.wire.partitioner import partition_for_trace
from tests.unit.sampler.harness import (
    FakeClock,
    Gateway,
    SpansTopic,
    TraceMaker,
    Worker,
    settings_for,
)

PARTITIONS = 4


class MemoryIndexer:
    """Stands in for ``BulkIndexer``: keeps the documents; refuses those ``refuse`` names."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.docs: dict[str, Doc] = {}
        self.calls = 0

    async def index(self, docs, on_retry=None) -> BulkReport:
        self.calls += 1
        report = BulkReport()
        for doc in docs:
            if doc.id in self.refuse:
                report.rejected.append(Rejected(doc, "mapper_parsing_exception", "refused"))
                continue
            self.docs[doc.id] = doc  # same id again: overwritten, as OpenSearch does
            report.indexed += 1
        await asyncio.sleep(0)
        return report


def otlp_body(trace: TraceMaker) -> bytes:
    """An OTLP/HTTP export body: a checkout trace over two services, one failing span."""
    request = ExportTraceServiceRequest()
    trace.add(request, "frontend", "GET /checkout", root=True, attributes={"http.route": "/c"})
    trace.add(request, "payments", "charge card", error=True, attributes={"card.kind": "visa"})
    trace.add(request, "payments", "write ledger")
    return request.SerializeToString()


def test_a_span_walks_from_otlp_bytes_to_documents(tmp_path):
    async def scenario():
        settings = settings_for(tmp_path, partitions=PARTITIONS)
        clock = FakeClock()
        topic = SpansTopic(PARTITIONS, clock)
        gateway, worker = Gateway(settings, topic), Worker(settings, topic, tmp_path / "w")
        trace = TraceMaker()
        partition = partition_for_trace(trace.trace_id, PARTITIONS)

        # Gateway: OTLP bytes -> one message per partition, as per-trace pieces.
        request = ExportTraceServiceRequest.FromString(otlp_body(trace))
        assert await gateway.export(request) == 3
        [message] = [record for record in topic.records[partition] if record.value]
        assert message.header is not None and message.header.startswith(trace.trace_id)

        # Sampler: the pieces wait in the partition's RocksDB, then the trace is decided.
        for _ in range(6):
            clock.advance(1.0)
            topic.tick()
            await worker.consume()
            if worker.outputs.kept:
                break
            assert worker.sampler.buffer.counts()[0] == 1
            assert any(worker.pieces.db(partition).keys())
        [(kept_partition, kept_id, value)] = worker.outputs.kept
        assert (kept_partition, kept_id) == (partition, trace.trace_id)
        assert list(worker.pieces.db(partition).keys()) == []  # taken: deleted
        worker.close()

        # Sink: the kept message's bytes -> one JSON document per span.
        docs = {
            doc_id: (routing, json.loads(source))
            for doc_id, routing, source in encoded_documents(parse_traces(value))
        }
        assert set(docs) == {document_id(trace.trace_id, span_id) for span_id in trace.span_ids}
        by_name = {doc["name"]: (routing, doc) for routing, doc in docs.values()}
        routing, charge = by_name["charge card"]
        assert routing == trace.trace_id.hex()
        assert charge["traceId"] == trace.trace_id.hex()
        assert charge["spanId"] == trace.span_ids[1].hex()
        assert charge["parentSpanId"] == trace.span_ids[0].hex()
        assert charge["serviceName"] == "payments"
        assert charge["status.code"] == 2
        assert charge["span.attributes.card@kind"] == "visa"
        assert charge["traceGroup"] == "GET /checkout"
        assert charge["traceFields"]["error"] is True
        assert charge["traceFields"]["spanCount"] == 3
        assert charge["traceFields"]["services"] == ["frontend", "payments"]
        for _routing, doc in docs.values():
            assert doc["span.attributes.sampling@policy"] == "errors"
        assert by_name["GET /checkout"][1]["span.attributes.http@route"] == "/c"

        # The sink's batch: the same documents reach the indexer; one it refuses comes
        # back as a dead letter with its reason, and a message that is not OTLP too.
        refused = document_id(trace.trace_id, trace.span_ids[2])
        indexer = MemoryIndexer(refuse=frozenset({refused}))
        result = await write_batch(indexer, [value, b"\xff not a TracesData"])
        assert result.indexed == 2
        assert set(indexer.docs) == set(docs) - {refused}
        for doc_id, doc in indexer.docs.items():
            assert (doc.routing, json.loads(doc.source)) == docs[doc_id]
        kinds = sorted((letter.kind, letter.reason.split(":")[0]) for letter in result.dead)
        assert kinds == [("malformed", "malformed"), ("mapper_parsing_exception",) * 2]
        letter = next(d for d in result.dead if d.kind == "mapper_parsing_exception")
        assert letter.headers["document-id"] == refused.encode()
        assert letter.headers["trace-id"] == trace.trace_id.hex().encode()

        # Batches in flight finish in submission order; a redelivery overwrites in place.
        finished: list[tuple[str, BatchResult]] = []

        async def done(tag: str, outcome: BatchResult) -> None:
            finished.append((tag, outcome))

        indexer = MemoryIndexer()
        pipeline = BatchPipeline(2, done)
        await pipeline.submit("first", write_batch(indexer, [value]))
        await pipeline.submit("again", write_batch(indexer, [value]))
        await pipeline.drain()
        assert [(tag, outcome.indexed, outcome.dead) for tag, outcome in finished] == [
            ("first", 3, []),
            ("again", 3, []),
        ]
        assert set(indexer.docs) == set(docs)

    asyncio.run(scenario())
