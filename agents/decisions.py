"""The decision cache: which traces were kept or dropped, so late spans follow at once.

Entries live in a RocksDB-backed Faust table (key = trace id, value = decided-at time,
kept flag, deciding policy name), written through to a time-retained changelog, and
expire after a TTL or when the cache is over its size (oldest first). The heap keeps
the trace ids in decision order per partition, to expire them without a scan.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import faust

from agents.topics import raw_table

_VALUE = struct.Struct(">dB")  # decided at, kept
# Faust keeps its changelog offset in the same database, under a 16-byte key of its own.
FAUST_OFFSET_KEY = b"__faust\x00offset__"
# The partition's low-water offset of the spans topic (see agents.buffer) lives here too.
LOW_WATER_KEY = b"\x00spansieve-low-water"
_OFFSET = struct.Struct(">q")


@dataclass(frozen=True)
class CachedDecision:
    decided_at: float
    sampled: bool
    policy: str


def encode(decision: CachedDecision) -> bytes:
    return _VALUE.pack(decision.decided_at, decision.sampled) + decision.policy.encode()


def decode(raw: bytes) -> CachedDecision:
    decided_at, sampled = _VALUE.unpack_from(raw)
    return CachedDecision(decided_at, bool(sampled), raw[_VALUE.size :].decode())


class DecisionCache:
    """Per-partition decision cache with a TTL and a size bound (per worker)."""

    def __init__(self, app: faust.App, partitions: int, ttl: float, max_entries: int) -> None:
        self.table = raw_table(app, "trace-decisions", partitions)
        self.ttl = ttl
        self.max_entries = max_entries
        self._order: dict[int, dict[bytes, float]] = {}

    def db(self, partition: int):
        return self.table.data._db_for_partition(partition)

    def adopt(self, partition: int, now: float) -> set[bytes]:
        """Index the partition's stored decisions (dropping expired ones); returns their ids."""
        db = self.db(partition)
        cutoff = now - self.ttl
        entries = []
        for trace_id, raw in list(db.items()):
            if trace_id == FAUST_OFFSET_KEY or len(trace_id) != 16:
                continue
            decided_at = _VALUE.unpack_from(raw)[0]
            if decided_at < cutoff:
                db.delete(trace_id)
            else:
                entries.append((decided_at, trace_id))
        entries.sort()
        self._order[partition] = {trace_id: at for at, trace_id in entries}
        return set(self._order[partition])

    def forget(self, partition: int) -> None:
        self._order.pop(partition, None)

    def decided_ids(self, partition: int) -> dict[bytes, float]:
        """Trace ids with a cached decision (a dict: fast membership tests)."""
        return self._order.get(partition, {})

    def lookup(self, partition: int, trace_id: bytes) -> CachedDecision | None:
        order = self._order.get(partition)
        if order is None or trace_id not in order:
            return None
        raw = self.db(partition).get(trace_id)
        return decode(raw) if raw is not None else None

    def remember(self, partition: int, trace_id: bytes, decision: CachedDecision) -> None:
        value = encode(decision)
        self.db(partition).put(trace_id, value)
        self.table.send_changelog(partition, trace_id, value)
        order = self._order.setdefault(partition, {})
        order.pop(trace_id, None)
        order[trace_id] = decision.decided_at

    def expire(self, partition: int, now: float) -> int:
        """Drop this partition's entries past the TTL, and its oldest while over the bound."""
        order = self._order.get(partition)
        if not order:
            return 0
        cutoff = now - self.ttl
        over = max(0, self.size() - self.max_entries)
        db = self.db(partition)
        expired = []
        for trace_id, decided_at in order.items():
            if decided_at > cutoff and len(expired) >= over:
                break
            expired.append(trace_id)
        for trace_id in expired:
            del order[trace_id]
            db.delete(trace_id)
        return len(expired)

    def low_water(self, partition: int) -> int | None:
        """The saved low-water offset of the partition's spans, if one was ever saved."""
        raw = self.db(partition).get(LOW_WATER_KEY)
        return _OFFSET.unpack(raw)[0] if raw is not None else None

    def save_low_water(self, partition: int, offset: int) -> None:
        """Save (and send to the changelog) where a takeover must start re-reading spans."""
        value = _OFFSET.pack(offset)
        self.db(partition).put(LOW_WATER_KEY, value)
        self.table.send_changelog(partition, LOW_WATER_KEY, value)

    def size(self) -> int:
        return sum(len(order) for order in self._order.values())
