"""The service-map writer without OpenSearch: validation, ids, de-duplication, bulk bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from pipeline.config.settings import Settings
from pipeline.metrics.service_map import (
    IsolatedService,
    ServiceMapRelationship,
    documents,
)
from pipeline.sampler.span_metrics import window_key
from pipeline.sink.document_store import BulkOutcome, IndexedDocument
from pipeline.sink.service_map_writer import (
    ServiceMapBatchResult,
    ServiceMapMessageError,
    ServiceMapWriter,
    parse_service_map_message,
)

INDEX = "t-otel-v1-apm-service-map"
KEY = window_key(3, 1_700_000_010 * 1_000_000_000)
CHECKOUT = ServiceMapRelationship(
    "frontend", "SPAN_KIND_CLIENT", "checkout", "SPAN_KIND_SERVER", "POST /checkout", "GET /"
)
PAYMENTS = ServiceMapRelationship(
    "checkout", "SPAN_KIND_CLIENT", "payments", "SPAN_KIND_SERVER", "charge", "GET /"
)
LONER = IsolatedService("batch-job", "nightly")


def message(*relationships: ServiceMapRelationship, isolated=()) -> bytes:
    """A message value as the sampler writes it: the documents of one window, an array."""
    return orjson.dumps([doc for _id, doc in documents(relationships, isolated)])


class FakeBulk:
    """Records ``_bulk`` bodies and answers with the queued responses (then: all ok)."""

    def __init__(self, *responses: dict | Exception) -> None:
        self.responses = list(responses)
        self.bodies: list[bytes] = []

    async def bulk(self, body: bytes, **_kwargs) -> dict:
        self.bodies.append(body)
        if self.responses:
            answer = self.responses.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return {"errors": False}

    async def close(self) -> None:
        pass


@pytest.fixture
def writer() -> Iterator[ServiceMapWriter]:
    letters: list[tuple[bytes, dict[str, bytes]]] = []

    async def park(value: bytes, headers: dict[str, bytes]):
        letters.append((value, headers))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    w = ServiceMapWriter(Settings(store_index_prefix="t-", store_max_backoff=0.01), park)
    w.letters = letters  # type: ignore[attr-defined]
    w.installed.set()  # no OpenSearch here
    yield w
    asyncio.run(w.client.close())


def test_the_index_follows_the_store_prefix(writer: ServiceMapWriter):
    assert writer.index == INDEX
    assert ServiceMapWriter(Settings(), writer.send_dead_letter).index == "otel-v1-apm-service-map"


def test_a_message_is_the_array_of_the_metrics_librarys_documents():
    docs = parse_service_map_message(message(CHECKOUT, PAYMENTS, isolated=[LONER]))
    assert len(docs) == 5  # 2 relationships x (destination, target) + 1 isolated
    (frontend,) = [doc for doc in docs if doc["serviceName"] == "frontend"]
    assert frontend == {
        "serviceName": "frontend",
        "kind": "SPAN_KIND_CLIENT",
        "destination": {"resource": "POST /checkout", "domain": "checkout"},
        "target": None,
        "traceGroupName": "GET /",
        "hashId": frontend["hashId"],
    }
    assert parse_service_map_message(b"[]") == []


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "no value"),
        (b"not json", "not JSON"),
        (b'{"hashId": "a", "serviceName": "s"}', "not a JSON array"),
        (b"[1]", "element 0 is not an object"),
        (b'[{"serviceName": "s"}]', "hashId"),
        (b'[{"hashId": 7, "serviceName": "s"}]', "hashId"),
        (b'[{"hashId": "", "serviceName": "s"}]', "hashId"),
        (b'[{"hashId": "a"}]', "serviceName"),
        (b'[{"hashId": "a", "serviceName": "s", "kind": 3}]', "kind"),
        (b'[{"hashId": "a", "serviceName": "s", "traceGroupName": []}]', "traceGroupName"),
        (b'[{"hashId": "a", "serviceName": "s", "target": "x"}]', "target"),
        (b'[{"hashId": "a", "serviceName": "s", "destination": {"resource": "r"}}]', "destination"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(value, why):
    with pytest.raises(ServiceMapMessageError, match=why):
        parse_service_map_message(value)


def test_documents_have_hashid_as_id_once_per_batch_and_malformed_messages_park(
    writer: ServiceMapWriter,
):
    first = message(CHECKOUT, isolated=[LONER])
    again = message(CHECKOUT, PAYMENTS)  # the CHECKOUT documents a second time
    result = ServiceMapBatchResult()
    docs = writer.documents([(KEY, first), (KEY, again), (b"k", b"{oops")], result)

    expected = {doc_id: doc for doc_id, doc in documents([CHECKOUT, PAYMENTS], [LONER])}
    assert sorted(d.id for d in docs) == sorted(expected)
    assert len(docs) == 5 and result.duplicates == 2 and result.messages == 3
    for doc in docs:
        assert doc.index == INDEX
        assert orjson.loads(doc.source) == expected[doc.id]
    (dead,) = result.dead
    assert (dead.kind, dead.value, dead.headers) == ("malformed", b"{oops", {"key": b"k"})
    assert dead.reason.startswith("malformed: not JSON")


def test_write_sends_one_bulk_body_of_index_actions_and_parks_the_malformed(
    writer: ServiceMapWriter,
):
    fake = FakeBulk()
    writer.client = fake  # type: ignore[assignment]
    value = message(CHECKOUT, PAYMENTS, isolated=[LONER])
    result = asyncio.run(writer.write([(KEY, value), (KEY, value), (None, b"[3]")]))
    assert result.indexed == 5 and result.duplicates == 5 and result.retry_rounds == 0

    (body,) = fake.bodies
    lines = body.split(b"\n")
    assert lines[-1] == b""  # NDJSON: every line ends in a newline
    actions, sources = lines[0:-1:2], lines[1:-1:2]
    for action, source in zip(actions, sources, strict=True):
        doc = orjson.loads(source)
        assert orjson.loads(action) == {"index": {"_index": INDEX, "_id": doc["hashId"]}}
    assert [orjson.loads(s) for s in sources] == orjson.loads(value)

    asyncio.run(writer.settle(result))
    ((parked, headers),) = writer.letters  # type: ignore[attr-defined]
    assert parked == b"[3]"
    assert headers["reason"] == b"malformed: element 0 is not an object"
    assert headers["stage"] == b"service-map-store"
    assert headers["key"] == b""


def test_write_retries_what_failed_and_parks_what_opensearch_refuses(writer: ServiceMapWriter):
    value = message(CHECKOUT)  # two documents
    ids = [doc_id for doc_id, _doc in documents([CHECKOUT])]
    partial = {
        "errors": True,
        "items": [
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {
                "index": {
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": "bad field"},
                }
            },
        ],
    }
    fake = FakeBulk(ConnectionResetError("down"), partial)
    writer.client = fake  # type: ignore[assignment]
    retries: list[int] = []
    result = asyncio.run(writer.write([(KEY, value)], on_retry=lambda _r, n: retries.append(n)))

    assert result.indexed == 1 and result.retry_rounds == 2 and retries == [1, 2]
    assert len(fake.bodies) == 3  # whole request failed, then one item retried, then ok
    assert fake.bodies[0] == fake.bodies[1]
    assert orjson.loads(fake.bodies[2].split(b"\n")[0])["index"]["_id"] == ids[0]
    (dead,) = result.dead
    assert dead.kind == "mapper_parsing_exception"
    assert dead.headers == {"document-id": ids[1].encode(), "index": INDEX.encode()}


def test_a_whole_request_refused_as_malformed_is_split_to_the_culprit(
    writer: ServiceMapWriter,
):
    from opensearchpy.exceptions import RequestError

    refused = RequestError(400, "illegal_argument_exception", {})
    fake = FakeBulk(refused, {"errors": False}, refused)  # both, first half ok, second not
    writer.client = fake  # type: ignore[assignment]
    result = asyncio.run(writer.write([(KEY, message(CHECKOUT))]))
    assert result.indexed == 1
    (dead,) = result.dead
    assert dead.kind == "illegal_argument_exception"
    assert len(fake.bodies) == 3


def test_outcome_of_an_all_ok_response_counts_every_document():
    chunk = [IndexedDocument(INDEX, str(n), b"{}") for n in range(3)]
    assert BulkOutcome.of_response(chunk, {"errors": False}).indexed == 3
