"""The decision cache: which traces were kept or dropped, so late spans follow at once.

Decisions are stored in batches: all decisions a partition made between two ticks form
one entry of a RocksDB-backed Faust table, written through to a time-retained changelog.
One changelog message per tick instead of one per trace keeps the cache off the
worker's critical path (at 1 % kept, 99 of 100 decisions are drops that only the cache
records). Entries expire a batch at a time: after the TTL, or oldest first while the
cache holds more than its bound.

The heap keeps, per partition, each cached trace id mapped to its batch (the key object
is shared by the whole batch), in decision order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.sampler.storage import PartitionDatabases

# Faust keeps its changelog offset in the same database, under a key of its own.
FAUST_OFFSET_KEY = b"__faust\x00offset__"
# The partition's replay mark (see ReplayMark) lives here too.
LOW_WATER_KEY = b"\x00spansieve-low-water"
_OFFSET = struct.Struct(">q")  # the low water alone, as written before the handled offset
_MARK = struct.Struct(">qq")  # low water, handled

BATCH_PREFIX = b"\x01"
_BATCH_KEY = struct.Struct(">dI")  # decided at (first decision), sequence number
_BATCH_HEAD = struct.Struct(">I")  # number of entries
_ENTRY_SIZE = 17  # trace id, then 0 (dropped) or 1 + index of the keeping policy
# A batch with span metrics: this byte, the head, the entries, then the length of the
# policy names, the names, the "counted to" offset and the metrics checkpoint (the rest).
_WITH_METRICS = b"\xff"
_NAMES_LENGTH = struct.Struct(">I")
_COUNTED_TO = struct.Struct(">q")


@dataclass(frozen=True)
class ReplayMark:
    """Where a new owner of a partition re-reads the spans topic, and what it re-sends.

    ``low_water``: the source offset of the oldest piece still buffered; the re-read
    starts there. ``handled``: every message before it was handled completely, its kept
    spans acknowledged by Kafka. Pieces of traces decided *kept* that the re-read meets at
    or after ``handled`` may not have reached the sampled topic, so they are sent again
    (at least once: a duplicate span is overwritten by the sink, by span id).
    """

    low_water: int
    handled: int


@dataclass(frozen=True)
class CachedDecision:
    decided_at: float
    sampled: bool
    policy: str


@dataclass
class DecisionBatch:
    """Decisions of one partition between two ticks, and what that tick counted.

    With span metrics on, the batch also carries the tick's metrics checkpoint and the
    offset of the spans topic up to which late spans are counted in it (``counted_to``),
    so that decisions and counts reach the changelog in one message.
    """

    decided_at: float
    entries: dict[bytes, int] = field(default_factory=dict)  # trace id -> entry code
    policies: list[str] = field(default_factory=list)
    counted_to: int | None = None
    metrics: bytes = b""

    def add(self, trace_id: bytes, sampled: bool, policy: str) -> None:
        code = 0
        if sampled:
            if policy not in self.policies:
                self.policies.append(policy)
            code = 1 + self.policies.index(policy)
        self.entries[trace_id] = code

    def decision(self, trace_id: bytes) -> CachedDecision | None:
        code = self.entries.get(trace_id)
        if code is None:
            return None
        policy = self.policies[code - 1] if code else ""
        return CachedDecision(self.decided_at, code > 0, policy)

    def encode(self) -> bytes:
        if len(self.policies) > 255:
            raise ValueError("a batch names at most 255 keeping policies")
        entries = b"".join(trace_id + bytes((code,)) for trace_id, code in self.entries.items())
        names = "\n".join(self.policies).encode()
        head = _BATCH_HEAD.pack(len(self.entries)) + entries
        if self.counted_to is None:
            return head + names
        return b"".join(
            (
                _WITH_METRICS,
                head,
                _NAMES_LENGTH.pack(len(names)),
                names,
                _COUNTED_TO.pack(self.counted_to),
                self.metrics,
            )
        )

    @classmethod
    def decode(cls, decided_at: float, raw: bytes) -> DecisionBatch:
        with_metrics = raw[:1] == _WITH_METRICS
        start = 1 if with_metrics else 0
        (count,) = _BATCH_HEAD.unpack_from(raw, start)
        start += _BATCH_HEAD.size
        end = start + count * _ENTRY_SIZE
        entries = {raw[at : at + 16]: raw[at + 16] for at in range(start, end, _ENTRY_SIZE)}
        counted_to, metrics = None, b""
        if with_metrics:
            (length,) = _NAMES_LENGTH.unpack_from(raw, end)
            names_start = end + _NAMES_LENGTH.size
            names = raw[names_start : names_start + length].decode()
            rest = names_start + length
            (counted_to,) = _COUNTED_TO.unpack_from(raw, rest)
            metrics = raw[rest + _COUNTED_TO.size :]
        else:
            names = raw[end:].decode()
        policies = names.split("\n") if names else []
        return cls(decided_at, entries, policies, counted_to, metrics)


def batch_key(decided_at: float, sequence: int) -> bytes:
    return BATCH_PREFIX + _BATCH_KEY.pack(decided_at, sequence)


def batch_time(key: bytes) -> float:
    return _BATCH_KEY.unpack_from(key, 1)[0]


class PartitionStore(PartitionDatabases, Protocol):
    """Where the cache keeps its entries: a RocksDB per partition plus its changelog.

    The worker passes a Faust table (``agents.topics.TableStore``): a new owner of a
    partition must find the previous owner's decisions and low-water offset, which
    Faust's changelog restore puts back into the partition's database before the
    partition's first event.
    """

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None: ...


@dataclass
class _PartitionCache:
    order: dict[bytes, bytes] = field(default_factory=dict)  # trace id -> batch key
    batches: dict[bytes, int] = field(default_factory=dict)  # batch key -> entries, by age
    pending: DecisionBatch | None = None
    pending_key: bytes = b""
    sequence: int = 0
    # Span-metrics checkpoints found by ``adopt`` (oldest first) and the highest offset
    # they count late spans to; handed over once with ``restored_metrics``.
    metrics: list[bytes] = field(default_factory=list)
    counted_to: int | None = None


class DecisionCache:
    """Per-partition decision cache with a TTL and a size bound (per worker)."""

    def __init__(self, store: PartitionStore, ttl: float, max_entries: int) -> None:
        self.store = store
        self.ttl = ttl
        self.max_entries = max_entries
        # Batches younger than this are kept even over the size bound or the TTL: with
        # span metrics on, they hold the checkpoints of windows still open.
        self.keep_for = 0.0
        self._partitions: dict[int, _PartitionCache] = {}
        self._entries = 0

    def adopt(self, partition: int, now: float) -> dict[bytes, bytes]:
        """Index the partition's stored batches (dropping expired ones); returns the ids."""
        self.forget(partition)
        db = self.store.db(partition)
        cutoff = now - max(self.ttl, self.keep_for)
        cache = self._partitions[partition] = _PartitionCache()
        stored = sorted(
            (batch_time(key), key, raw)
            for key, raw in list(db.items())
            if key.startswith(BATCH_PREFIX) and len(key) == 1 + _BATCH_KEY.size
        )
        for decided_at, key, raw in stored:
            if decided_at < cutoff:
                db.delete(key)
                continue
            batch = DecisionBatch.decode(decided_at, raw)
            if batch.counted_to is not None:
                cache.counted_to = max(cache.counted_to or 0, batch.counted_to)
                if batch.metrics:
                    cache.metrics.append(batch.metrics)
            for trace_id in batch.entries:
                cache.order.pop(trace_id, None)
                cache.order[trace_id] = key
            cache.batches[key] = len(batch.entries)
            cache.sequence = max(cache.sequence, _BATCH_KEY.unpack_from(key, 1)[1] + 1)
        self._entries += len(cache.order)
        return cache.order

    def restored_metrics(self, partition: int) -> tuple[int | None, list[bytes]]:
        """The span-metrics checkpoints ``adopt`` found, oldest first, and the offset up
        to which they count late spans (None: no checkpoint was ever saved)."""
        cache = self._partitions.get(partition)
        if cache is None:
            return None, []
        found, cache.metrics = cache.metrics, []
        return cache.counted_to, found

    def forget(self, partition: int) -> None:
        cache = self._partitions.pop(partition, None)
        if cache is not None:
            self._entries -= len(cache.order)

    def decided_ids(self, partition: int) -> dict[bytes, bytes]:
        """Trace ids with a cached decision (a dict: fast membership tests)."""
        cache = self._partitions.get(partition)
        return cache.order if cache is not None else {}

    def lookup(self, partition: int, trace_id: bytes) -> CachedDecision | None:
        cache = self._partitions.get(partition)
        key = cache.order.get(trace_id) if cache is not None else None
        if key is None:
            return None
        if key == cache.pending_key and cache.pending is not None:
            return cache.pending.decision(trace_id)
        raw = self.store.db(partition).get(key)
        if raw is None:
            return None
        return DecisionBatch.decode(batch_time(key), raw).decision(trace_id)

    def remember(self, partition: int, trace_id: bytes, decision: CachedDecision) -> None:
        """Cache a decision now; it reaches RocksDB and the changelog with ``flush``."""
        cache = self._partitions.setdefault(partition, _PartitionCache())
        if cache.pending is None:
            cache.pending = DecisionBatch(decision.decided_at)
            cache.pending_key = batch_key(decision.decided_at, cache.sequence)
            cache.sequence += 1
        cache.pending.add(trace_id, decision.sampled, decision.policy)
        if cache.order.pop(trace_id, None) is None:
            self._entries += 1
        cache.order[trace_id] = cache.pending_key

    def flush(
        self,
        partition: int,
        now: float | None = None,
        counted_to: int | None = None,
        metrics: bytes = b"",
    ) -> None:
        """Store the partition's decisions since the last flush as one batch.

        With span metrics on, the caller passes the tick's metrics checkpoint and the
        offset up to which it counts late spans: they go into the same batch (a batch
        without decisions is written for them when ``metrics`` is not empty).
        """
        cache = self._partitions.get(partition)
        if cache is None:
            return
        if cache.pending is None:
            if not metrics or now is None:
                return
            cache.pending = DecisionBatch(now)
            cache.pending_key = batch_key(now, cache.sequence)
            cache.sequence += 1
        if counted_to is not None:
            cache.pending.counted_to = counted_to
            cache.pending.metrics = metrics
        value = cache.pending.encode()
        self.store.db(partition).put(cache.pending_key, value)
        self.store.send_changelog(partition, cache.pending_key, value)
        cache.batches[cache.pending_key] = len(cache.pending.entries)
        cache.pending = None
        cache.pending_key = b""

    def expire(self, partition: int, now: float) -> int:
        """Drop this partition's batches past the TTL, and its oldest while over the bound.

        Returns how many cached decisions went. A trace decided again since (its id now
        maps to a newer batch) keeps that newer decision. The changelog is time-retained,
        not compacted, so no tombstones are sent; ``adopt`` drops what has expired.
        """
        cache = self._partitions.get(partition)
        if cache is None:
            return 0
        cutoff = now - self.ttl
        keep_after = now - self.keep_for
        db = self.store.db(partition)
        dropped = 0
        while cache.batches:
            key = next(iter(cache.batches))
            decided_at = batch_time(key)
            if decided_at >= keep_after or (
                decided_at >= cutoff and self._entries <= self.max_entries
            ):
                break
            del cache.batches[key]
            raw = db.get(key)
            db.delete(key)
            if raw is None:
                continue
            for trace_id in DecisionBatch.decode(0.0, raw).entries:
                if cache.order.get(trace_id) == key:
                    del cache.order[trace_id]
                    self._entries -= 1
                    dropped += 1
        return dropped

    def replay_mark(self, partition: int) -> ReplayMark | None:
        """The partition's saved replay mark, if one was ever saved."""
        raw = self.store.db(partition).get(LOW_WATER_KEY)
        if raw is None:
            return None
        if len(raw) == _OFFSET.size:  # no handled offset saved: re-send all kept pieces
            (low_water,) = _OFFSET.unpack(raw)
            return ReplayMark(low_water, low_water)
        return ReplayMark(*_MARK.unpack(raw))

    def save_replay_mark(self, partition: int, mark: ReplayMark) -> None:
        """Save (and send to the changelog) where a takeover must start re-reading spans.

        Sent after the partition's decisions (``flush``), on the same changelog partition,
        so a new owner never finds a mark without the decisions made before it.
        """
        value = _MARK.pack(mark.low_water, mark.handled)
        self.store.db(partition).put(LOW_WATER_KEY, value)
        self.store.send_changelog(partition, LOW_WATER_KEY, value)

    def size(self) -> int:
        return self._entries
