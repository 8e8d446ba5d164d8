"""Per-trace span buffers in RocksDB, appended to, never rewritten.

Spans of a trace arrive in pieces: one piece per Kafka message that carried some of its
spans (a serialized ``TracesData``). Each piece is stored once, in the partition's RocksDB
database (``pipeline.sampler.storage``: plain rocksdict, no Faust table), under the key

    trace id (16 bytes) | source offset (8) | span count (4) | root flag (1)

Reading a trace is one multi-get of the keys the heap index holds, dropping it a delete per
piece; after a restart the index is rebuilt from the keys alone. Protobuf parses
concatenated pieces as one ``TracesData``, so spans are never re-encoded.

Writes and deletes are collected in one RocksDB write batch per partition and applied
with ``commit`` (after each Kafka message, after each tick, and before a read that a
pending put could answer): a batched write costs about half of a single put or delete
from Python, and a tick's deletes cost one write instead of one per decided trace.

Durability needs no changelog for pieces: the spans topic itself is the log. Each
partition's *low-water offset* (the source offset of the oldest piece still buffered) is
saved with the decision cache once a second; a worker that takes a partition over re-reads
the spans topic from there up to where its consumer starts, and the source offset in the
key makes that replay idempotent. This saves a Kafka write per piece.

The Python heap holds one small ``TraceState`` per buffered trace, per partition.
"""

from __future__ import annotations

import struct
from collections.abc import Container
from dataclasses import dataclass, field

from rocksdict import WriteBatch

from pipeline.sampler.storage import PartitionDatabases
from pipeline.wire.pieces import Services

_KEY_TAIL = struct.Struct(">QIB")  # source offset, span count, root flag
KEY_SIZE = 16 + _KEY_TAIL.size


def piece_key(trace_id: bytes, offset: int, spans: int, has_root: bool) -> bytes:
    return trace_id + _KEY_TAIL.pack(offset, spans, has_root)


class TraceState:
    """What the heap knows about one buffered trace."""

    __slots__ = ("first_seen", "keys", "last_seen", "root_seen", "services", "size", "spans")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.last_seen = now
        self.root_seen = 0.0
        self.keys: list[bytes] = []  # RocksDB keys of the pieces: reads are point lookups
        # The services of each piece's ResourceSpans, as the gateway listed them; None
        # once a piece came without (or after a restart: the keys do not hold them).
        self.services: list[Services] | None = []
        self.spans = 0
        self.size = 0


@dataclass
class PartitionIndex:
    """Buffered traces of one partition, in the orders the decision rules need."""

    traces: dict[bytes, TraceState] = field(default_factory=dict)  # oldest update first
    roots: dict[bytes, float] = field(default_factory=dict)  # by root arrival
    first_offsets: dict[bytes, int] = field(default_factory=dict)  # by first piece's offset
    size: int = 0
    next_age_scan: float = 0.0  # the max-age rule walks every trace, so not every tick

    def low_water(self) -> int | None:
        """Source offset of the oldest piece still buffered (None: nothing buffered)."""
        return next(iter(self.first_offsets.values()), None)


class TraceBuffer:
    """Appends pieces, finds traces due for a decision, hands back their spans."""

    def __init__(self, store: PartitionDatabases) -> None:
        self.store = store
        self._indexes: dict[int, PartitionIndex] = {}
        self._batches: dict[int, WriteBatch] = {}  # uncommitted writes, per partition
        self._unread_puts: set[int] = set()  # partitions whose batch holds puts
        self.traces = 0  # totals over the owned partitions, kept up to date on every change
        self.bytes = 0

    def db(self, partition: int):
        """The partition's RocksDB (rocksdict, raw mode)."""
        return self.store.db(partition)

    def _batch(self, partition: int) -> WriteBatch:
        batch = self._batches.get(partition)
        if batch is None:
            batch = self._batches[partition] = WriteBatch(raw_mode=True)
        return batch

    def commit(self, partition: int) -> None:
        """Apply the partition's pending puts and deletes to its database."""
        self._unread_puts.discard(partition)
        batch = self._batches.pop(partition, None)
        if batch is not None:
            self.db(partition).write(batch)

    def index(self, partition: int) -> PartitionIndex | None:
        return self._indexes.get(partition)

    def adopt(
        self, partition: int, now: float, skip: Container[bytes] = frozenset()
    ) -> PartitionIndex:
        """Index what RocksDB holds for a partition (after start-up or rebalance).

        Traces in ``skip`` (already decided) are deleted instead. Their age is not known,
        so they count as seen now and wait one more decision_wait.
        """
        index = self._indexes[partition] = PartitionIndex()
        db = self.db(partition)
        firsts: dict[bytes, int] = {}
        for key, value in list(db.items()):
            if len(key) != KEY_SIZE:
                continue
            trace_id = key[:16]
            if trace_id in skip:
                db.delete(key)
                continue
            offset, spans, root = _KEY_TAIL.unpack_from(key, 16)
            state = index.traces.get(trace_id)
            if state is None:
                state = index.traces[trace_id] = TraceState(now)
                state.services = None
            state.keys.append(key)
            state.spans += spans
            state.size += len(value)
            index.size += len(value)
            firsts[trace_id] = min(offset, firsts.get(trace_id, offset))
            if root and not state.root_seen:
                state.root_seen = now
                index.roots[trace_id] = now
        index.first_offsets = dict(sorted(firsts.items(), key=lambda item: item[1]))
        self.traces += len(index.traces)
        self.bytes += index.size
        return index

    def forget(self, partition: int) -> None:
        """Drop the heap index of a partition this worker no longer owns.

        Uncommitted writes are dropped too: the partition's next owner re-reads them from
        the spans topic.
        """
        self._batches.pop(partition, None)
        self._unread_puts.discard(partition)
        index = self._indexes.pop(partition, None)
        if index is not None:
            self.traces -= len(index.traces)
            self.bytes -= index.size

    def append(
        self,
        partition: int,
        trace_id: bytes,
        piece: bytes,
        spans: int,
        has_root: bool,
        now: float,
        offset: int,
        services: Services | None = None,
    ) -> TraceState:
        """Store one more piece of a trace, read from ``offset`` of the spans topic, with
        the services of its ResourceSpans when the gateway listed them."""
        index = self._indexes[partition]
        state = index.traces.pop(trace_id, None)  # re-inserted below: keeps update order
        if state is None:
            state = TraceState(now)
            index.first_offsets.setdefault(trace_id, offset)
            self.traces += 1
        key = piece_key(trace_id, offset, spans, has_root)
        if key in state.keys:  # the same message again (replay after a takeover)
            index.traces[trace_id] = state
            return state
        self._batch(partition).put(key, piece)
        self._unread_puts.add(partition)
        state.keys.append(key)
        if services is None:
            state.services = None
        elif state.services is not None:
            state.services.append(services)
        state.spans += spans
        state.size += len(piece)
        state.last_seen = max(state.last_seen, now)
        if has_root and not state.root_seen:
            state.root_seen = now
            index.roots[trace_id] = now
        index.traces[trace_id] = state
        index.size += len(piece)
        self.bytes += len(piece)
        return state

    def due(
        self,
        partition: int,
        now: float,
        decision_wait: float,
        root_wait: float | None,
        max_age: float,
    ) -> list[bytes]:
        """Traces to decide now: quiet for decision_wait, root seen root_wait ago, or too old."""
        index = self._indexes.get(partition)
        if index is None:
            return []
        due: dict[bytes, None] = {}
        quiet_cutoff = now - decision_wait
        for trace_id, state in index.traces.items():
            if state.last_seen > quiet_cutoff:
                break  # update order: every later trace is younger still
            due[trace_id] = None
        if root_wait is not None:
            root_cutoff = now - root_wait
            for trace_id, seen in index.roots.items():
                if seen > root_cutoff:
                    break
                due[trace_id] = None
        if now >= index.next_age_scan:
            index.next_age_scan = now + min(max_age / 10, 5.0)
            age_cutoff = now - max_age
            for trace_id, state in index.traces.items():
                if state.first_seen <= age_cutoff:
                    due[trace_id] = None
        return list(due)

    def oldest(self, partition: int, count: int) -> list[bytes]:
        """The ``count`` least recently updated traces of a partition (overflow victims)."""
        index = self._indexes.get(partition)
        if index is None:
            return []
        return [trace_id for trace_id, _ in zip(index.traces, range(count), strict=False)]

    def take(self, partition: int, trace_id: bytes) -> tuple[TraceState, bytes] | None:
        """Remove a trace; returns its state and its spans as one TracesData's bytes
        (``state.services`` is None unless they hold every piece read)."""
        index = self._indexes.get(partition)
        state = index.traces.pop(trace_id, None) if index else None
        if state is None:
            return None
        index.roots.pop(trace_id, None)
        index.first_offsets.pop(trace_id, None)
        index.size -= state.size
        self.traces -= 1
        self.bytes -= state.size
        if partition in self._unread_puts:  # a piece of this trace may wait in the batch
            self.commit(partition)
        values = self.db(partition).get(state.keys)
        if state.services is not None and not all(values):
            state.services = None
        spans = b"".join(value for value in values if value)
        batch = self._batch(partition)
        for key in state.keys:  # point deletes: range tombstones slow every later read
            batch.delete(key)
        return state, spans

    def counts(self) -> tuple[int, int]:
        """(buffered traces, buffered bytes) over the partitions this worker owns."""
        return self.traces, self.bytes
