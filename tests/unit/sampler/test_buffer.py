"""The trace buffer over real rocksdict databases (``RdictPartitions`` in a temporary
folder): appends, the three decision rules, overflow victims, take, adoption after a
restart, and idempotent replay."""

from __future__ import annotations

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from pipeline.sampler.buffer import KEY_SIZE, TraceBuffer, piece_key
from pipeline.sampler.storage import RdictPartitions
from tests.unit.sampler.harness import all_spans

P = 0  # the partition of most tests


def trace(number: int) -> bytes:
    return number.to_bytes(16, "big")


def piece(trace_id: bytes, *names: str) -> bytes:
    """A TracesData fragment with one span per name, as the gateway slices it."""
    data = TracesData()
    spans = data.resource_spans.add().scope_spans.add().spans
    for name in names:
        spans.add(trace_id=trace_id, span_id=name.encode().ljust(8, b"-")[:8], name=name)
    return data.SerializeToString()


@pytest.fixture
def pieces(tmp_path):
    with RdictPartitions(tmp_path / "trace-pieces") as databases:
        yield databases


@pytest.fixture
def buffer(pieces):
    buffer = TraceBuffer(pieces)
    buffer.adopt(P, now=0.0)
    return buffer


def add(buffer, trace_id, names, now, offset, root=False, partition=P):
    value = piece(trace_id, *names)
    state = buffer.append(partition, trace_id, value, len(names), root, now, offset)
    buffer.commit(partition)
    return state, value


def span_names(spans_bytes: bytes) -> list[str]:
    return [span.name for span in all_spans(TracesData.FromString(spans_bytes))]


def test_pieces_are_stored_once_under_their_keys_and_taken_back_whole(buffer, pieces):
    _, first = add(buffer, trace(1), ["a", "b"], now=1.0, offset=10, root=True)
    _, second = add(buffer, trace(1), ["c"], now=2.0, offset=11)
    add(buffer, trace(2), ["x"], now=2.0, offset=11)
    assert sorted(pieces.db(P).keys()) == sorted(
        [
            piece_key(trace(1), 10, 2, True),
            piece_key(trace(1), 11, 1, False),
            piece_key(trace(2), 11, 1, False),
        ]
    )
    assert all(len(key) == KEY_SIZE for key in list(pieces.db(P).keys()))
    assert buffer.counts() == (2, len(first) + len(second) + len(piece(trace(2), "x")))

    state, spans = buffer.take(P, trace(1))
    assert (state.spans, state.size, state.first_seen, state.last_seen) == (
        3,
        len(first) + len(second),
        1.0,
        2.0,
    )
    assert spans == first + second  # concatenated pieces: never re-encoded
    assert span_names(spans) == ["a", "b", "c"]  # and they parse as one TracesData
    assert buffer.take(P, trace(1)) is None
    buffer.commit(P)
    assert list(pieces.db(P).keys()) == [piece_key(trace(2), 11, 1, False)]  # point deletes
    assert buffer.counts() == (1, len(piece(trace(2), "x")))


def test_appends_wait_in_a_write_batch_until_commit(buffer, pieces):
    buffer.append(P, trace(1), piece(trace(1), "a"), 1, False, 1.0, 0)
    assert list(pieces.db(P).keys()) == []
    buffer.commit(P)
    assert len(list(pieces.db(P).keys())) == 1


def test_take_reads_pieces_still_in_the_batch(buffer):
    buffer.append(P, trace(1), piece(trace(1), "a"), 1, False, 1.0, 0)
    _state, spans = buffer.take(P, trace(1))  # no commit in between
    assert span_names(spans) == ["a"]


def test_a_trace_is_due_after_decision_wait_without_new_spans(buffer):
    add(buffer, trace(1), ["a"], now=0.0, offset=0)
    add(buffer, trace(2), ["b"], now=1.0, offset=1)
    add(buffer, trace(1), ["c"], now=3.0, offset=2)  # trace 1 got a span: later again
    assert buffer.due(P, 5.9, decision_wait=5, root_wait=None, max_age=60) == []
    assert buffer.due(P, 6.0, decision_wait=5, root_wait=None, max_age=60) == [trace(2)]
    assert buffer.due(P, 8.0, decision_wait=5, root_wait=None, max_age=60) == [
        trace(2),
        trace(1),
    ]


def test_a_trace_is_due_root_wait_after_its_root_span(buffer):
    add(buffer, trace(1), ["root"], now=0.0, offset=0, root=True)
    add(buffer, trace(2), ["child"], now=0.0, offset=0)
    add(buffer, trace(1), ["late child"], now=1.5, offset=1)  # keeps the trace active
    assert buffer.due(P, 1.9, decision_wait=30, root_wait=2, max_age=300) == []
    assert buffer.due(P, 2.0, decision_wait=30, root_wait=2, max_age=300) == [trace(1)]
    assert buffer.due(P, 2.0, decision_wait=30, root_wait=None, max_age=300) == []


def test_a_trace_is_due_max_age_after_its_first_span_even_while_active(buffer):
    add(buffer, trace(1), ["a"], now=0.0, offset=0)
    for second in range(1, 12):
        add(buffer, trace(1), [f"s{second}"], now=float(second), offset=second)
    assert buffer.due(P, 9.0, decision_wait=5, root_wait=None, max_age=10) == []
    # The max-age rule walks every trace, so it runs at most every max_age / 10 seconds.
    assert buffer.due(P, 9.5, decision_wait=5, root_wait=None, max_age=10) == []
    assert buffer.due(P, 10.0, decision_wait=5, root_wait=None, max_age=10) == [trace(1)]


def test_oldest_are_the_least_recently_updated(buffer):
    for number in range(5):
        add(buffer, trace(number), ["a"], now=float(number), offset=number)
    add(buffer, trace(0), ["b"], now=9.0, offset=9)
    assert buffer.oldest(P, 2) == [trace(1), trace(2)]
    assert buffer.oldest(P, 10) == [trace(1), trace(2), trace(3), trace(4), trace(0)]
    assert buffer.oldest(7, 2) == []  # a partition not owned


def test_low_water_is_the_first_offset_of_the_oldest_buffered_trace(buffer):
    add(buffer, trace(1), ["a"], now=0.0, offset=4)
    add(buffer, trace(2), ["b"], now=0.0, offset=6)
    add(buffer, trace(1), ["c"], now=1.0, offset=8)
    assert buffer.index(P).low_water() == 4
    buffer.take(P, trace(1))
    assert buffer.index(P).low_water() == 6
    buffer.take(P, trace(2))
    assert buffer.index(P).low_water() is None


def test_a_restart_adopts_the_buffer_from_the_keys_alone(tmp_path):
    folder = tmp_path / "trace-pieces"
    with RdictPartitions(folder) as pieces:
        buffer = TraceBuffer(pieces)
        for partition in (0, 1):
            buffer.adopt(partition, now=0.0)
        _, a = add(buffer, trace(1), ["a", "b"], now=1.0, offset=7)
        _, c = add(buffer, trace(1), ["c"], now=2.0, offset=3, root=True)
        _, d = add(buffer, trace(2), ["d"], now=2.0, offset=5)
        add(buffer, trace(3), ["e"], now=2.0, offset=2, partition=1)
        add(buffer, trace(4), ["f"], now=2.0, offset=9)
    assert pieces.opened() == []

    with RdictPartitions(folder) as reopened:  # same folder, a new process
        restarted = TraceBuffer(reopened)
        index = restarted.adopt(0, now=50.0, skip={trace(4): b"decided"})
        assert set(index.traces) == {trace(1), trace(2)}
        one = index.traces[trace(1)]
        assert (one.spans, one.size, one.first_seen, one.root_seen) == (3, len(a + c), 50.0, 50.0)
        assert index.roots == {trace(1): 50.0}
        assert list(index.first_offsets.items()) == [(trace(1), 3), (trace(2), 5)]
        assert index.low_water() == 3
        assert restarted.counts() == (2, len(a + c + d))
        # A decided trace's pieces are deleted, not indexed.
        assert not any(key.startswith(trace(4)) for key in list(reopened.db(0).keys()))
        # Ages are not known after a restart: the traces wait one more decision_wait.
        assert restarted.due(0, 54.0, decision_wait=5, root_wait=None, max_age=60) == []
        assert restarted.due(0, 55.0, decision_wait=5, root_wait=None, max_age=60) == [
            trace(1),
            trace(2),
        ]
        # Pieces come back in key order (source offset), each exactly once.
        assert span_names(restarted.take(0, trace(1))[1]) == ["c", "a", "b"]
        restarted.adopt(1, now=50.0)
        assert span_names(restarted.take(1, trace(3))[1]) == ["e"]
        assert restarted.counts() == (1, len(d))


def test_replaying_a_message_already_buffered_changes_nothing(tmp_path):
    folder = tmp_path / "trace-pieces"
    with RdictPartitions(folder) as pieces:
        buffer = TraceBuffer(pieces)
        buffer.adopt(P, now=0.0)
        add(buffer, trace(1), ["a"], now=1.0, offset=0, root=True)
        add(buffer, trace(1), ["b"], now=2.0, offset=1)
        add(buffer, trace(1), ["a"], now=3.0, offset=0, root=True)  # the same message again
        assert buffer.index(P).traces[trace(1)].spans == 2
        assert buffer.index(P).traces[trace(1)].last_seen == 2.0
        before = buffer.counts()
    with RdictPartitions(folder) as reopened:
        restarted = TraceBuffer(reopened)
        restarted.adopt(P, now=10.0)
        for offset, name in [(0, "a"), (1, "b"), (2, "c")]:  # re-read from the low water
            add(restarted, trace(1), [name], now=10.0, offset=offset, root=offset == 0)
        state, spans = restarted.take(P, trace(1))
        assert state.spans == 3
        assert span_names(spans) == ["a", "b", "c"]
        assert before[0] == 1


def test_forget_drops_the_index_and_the_uncommitted_writes(buffer, pieces):
    add(buffer, trace(1), ["a"], now=1.0, offset=0)
    buffer.append(P, trace(2), piece(trace(2), "b"), 1, False, 1.0, 1)  # not committed
    buffer.forget(P)
    assert buffer.index(P) is None
    assert buffer.counts() == (0, 0)
    assert buffer.due(P, 100.0, decision_wait=5, root_wait=None, max_age=60) == []
    assert [key[:16] for key in list(pieces.db(P).keys())] == [trace(1)]
    assert set(buffer.adopt(P, now=2.0).traces) == {trace(1)}
