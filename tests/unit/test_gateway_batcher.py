"""The gateway's batcher: concurrent requests share one Kafka message per partition."""

import asyncio

import pytest
from hypothesis import assume, given, settings

from pipeline.gateway.batcher import PartitionBatcher
from pipeline.wire.otlp import TracesData, count_spans, regroup_spans
from pipeline.wire.pieces import PIECES_HEADER, iter_header, iter_pieces, split_by_partition
from tests.unit.test_otlp import build_request, span_specs
from tests.unit.test_pieces import has_root_span, with_roots_and_schema

PARTITIONS = 3


class RecordingProducer:
    """Stands in for AsyncProducer: keeps what was sent, acks when told to."""

    def __init__(self, fail_at: int | None = None, error: Exception | None = None) -> None:
        self.sent: list[tuple[int, bytes, bytes]] = []
        self.deliveries: list[asyncio.Future] = []
        self._fail_at = fail_at
        self._error = error

    def send(self, topic, value, partition, key=None, headers=None):
        if self._fail_at is not None and len(self.sent) == self._fail_at:
            raise self._error
        [(name, header)] = headers
        assert name == PIECES_HEADER
        self.sent.append((partition, value, header))
        delivery = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery

    def ack_all(self) -> None:
        for delivery in self.deliveries:
            if not delivery.done():
                delivery.set_result(None)


def groups_of(request):
    return split_by_partition(request.resource_spans, PARTITIONS, lambda span: True)


@given(span_specs, span_specs)
@settings(max_examples=100, deadline=None)
def test_requests_within_one_linger_share_a_message_per_partition(first, second):
    assume(first or second)
    requests = [with_roots_and_schema(build_request(specs)) for specs in (first, second)]
    expected: dict[bytes, TracesData] = {}
    for request in requests:
        for trace_id, data in regroup_spans(request.resource_spans, lambda s: s.trace_id).items():
            expected.setdefault(trace_id, TracesData()).MergeFrom(data)

    async def scenario():
        producer = RecordingProducer()
        batcher = PartitionBatcher(producer, "spans", linger=0.01, max_bytes=10**6)
        outcomes = [batcher.add(groups_of(request)) for request in requests]
        assert outcomes[0] is outcomes[1]  # one batch, one outcome for both
        await asyncio.sleep(0.05)
        assert not outcomes[0].done()  # not before Kafka acknowledged
        producer.ack_all()
        await outcomes[0]
        return producer.sent, batcher.flushes

    sent, flushes = asyncio.run(scenario())
    assert flushes == 1
    assert len({partition for partition, _, _ in sent}) == len(sent)  # one per partition
    found: dict[bytes, TracesData] = {}
    for _partition, value, header in sent:
        entries = list(iter_header(header))
        assert len({trace_id for trace_id, *_ in entries}) == len(entries)  # merged
        for trace_id, piece, spans, has_root, _ in iter_pieces(value, header):
            data = TracesData.FromString(piece)
            assert spans == count_spans(data)
            assert has_root == has_root_span(data)
            found[trace_id] = data
    assert found.keys() == expected.keys()
    for trace_id, data in found.items():
        assert count_spans(data) == count_spans(expected[trace_id])


def test_a_batch_that_would_outgrow_the_limit_is_sent_first():
    request = build_request([(1, 0, 0)] * 4)
    size = max(message.size for message in groups_of(request).values())

    async def scenario():
        producer = RecordingProducer()
        batcher = PartitionBatcher(producer, "spans", linger=10.0, max_bytes=size * 2 - 1)
        first = batcher.add(groups_of(request))
        second = batcher.add(groups_of(request))  # same partition: 2 x size > the limit
        assert first is not second
        assert batcher.flushes == 1  # the first batch went without waiting for the linger
        third = batcher.add(groups_of(build_request([(1, 0, 0)] * 16)))  # full on its own
        assert batcher.flushes == 3 and third is not second
        sizes = [len(value) for _, value, _ in producer.sent]
        assert sizes[:2] == [size, size] and sizes[2] >= size * 2 - 1
        producer.ack_all()
        await asyncio.gather(first, second, third)

    asyncio.run(scenario())


@pytest.mark.parametrize("error", [BufferError("queue full"), RuntimeError("too large")])
def test_a_refused_send_fails_every_request_of_the_batch(error):
    async def scenario():
        producer = RecordingProducer(fail_at=0, error=error)
        batcher = PartitionBatcher(producer, "spans", linger=0.0, max_bytes=10**6)
        outcome = batcher.add(groups_of(build_request([(1, 0, 0), (2, 0, 0)])))
        with pytest.raises(type(error)):
            await asyncio.wait_for(asyncio.shield(outcome), 1.0)

    asyncio.run(scenario())


def test_a_failed_ack_fails_the_batch_and_a_new_batch_starts():
    async def scenario():
        producer = RecordingProducer()
        batcher = PartitionBatcher(producer, "spans", linger=0.0, max_bytes=10**6)
        outcome = batcher.add(groups_of(build_request([(1, 0, 0)])))
        await asyncio.sleep(0.01)
        producer.deliveries[0].set_exception(RuntimeError("broker gone"))
        with pytest.raises(RuntimeError):
            await outcome
        later = batcher.add(groups_of(build_request([(2, 0, 0)])))
        assert later is not outcome
        await asyncio.sleep(0.01)
        producer.ack_all()
        await later

    asyncio.run(scenario())


def test_a_batch_without_spans_settles_at_once():
    async def scenario():
        batcher = PartitionBatcher(RecordingProducer(), "spans", linger=0.0, max_bytes=10**6)
        await asyncio.wait_for(batcher.add({}), 1.0)
        assert batcher.flushes == 0

    asyncio.run(scenario())


def test_a_partition_message_larger_than_the_limit_goes_as_several():
    request = build_request([(trace, 0, 0) for trace in range(4) for _ in range(3)])
    groups = split_by_partition(request.resource_spans, 1, lambda span: True)
    piece_size = max(len(piece[1]) for piece in iter_pieces(groups[0].value(), groups[0].header()))

    async def scenario():
        producer = RecordingProducer()
        batcher = PartitionBatcher(producer, "spans", linger=0.0, max_bytes=piece_size * 2)
        outcome = batcher.add(groups)
        await asyncio.sleep(0.01)
        producer.ack_all()
        await outcome
        return producer.sent

    sent = asyncio.run(scenario())
    assert len(sent) == 2  # four pieces, two per message
    assert all(len(value) <= piece_size * 2 for _, value, _ in sent)
    assert sum(len(list(iter_header(header))) for _, _, header in sent) == 4
