"""Per-trace span buffers in RocksDB-backed Faust tables.

Spans of a trace arrive in pieces (one piece per Kafka message that carried some of its
spans). Each piece is stored once under its own key, ``trace id + piece number``, so a
trace's buffer grows by appending and is never rewritten. A small fixed-size summary per
trace (times, counts, error flag) lives in a second table; the Python heap holds only the
trace id and its last-seen time per partition, rebuilt from the summary table after a
restart or rebalance.

Table writes must happen while processing an event of the owning partition: Faust sends
each change to the changelog partition of the current event, which is what restores it on
the right worker.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import faust

from pipeline.otlp import TraceSummary
from pipeline.partitioner import partition_for_trace

_SUMMARY = struct.Struct("<ddIIB")  # first seen, last seen, pieces, spans, has error
_PIECE_NUMBER = struct.Struct(">I")


@dataclass(slots=True)
class BufferedTrace:
    """Summary of a buffered trace, as stored in the summary table."""

    first_seen: float
    last_seen: float
    pieces: int
    spans: int
    has_error: bool

    def pack(self) -> bytes:
        return _SUMMARY.pack(
            self.first_seen, self.last_seen, self.pieces, self.spans, self.has_error
        )

    @classmethod
    def unpack(cls, raw: bytes) -> BufferedTrace:
        first, last, pieces, spans, error = _SUMMARY.unpack(raw)
        return cls(first, last, pieces, spans, bool(error))

    def as_summary(self) -> TraceSummary:
        return TraceSummary(span_count=self.spans, has_error=self.has_error)


def piece_key(trace_id: bytes, number: int) -> bytes:
    return trace_id + _PIECE_NUMBER.pack(number)


class TraceBuffer:
    """Appends trace pieces, finds traces due for a decision, and hands back their spans."""

    def __init__(self, app: faust.App, partitions: int) -> None:
        self.partitions = partitions
        table_options = {
            "partitions": partitions,
            "key_type": bytes,
            "value_type": bytes,
            "default": None,
        }
        self.pieces = app.Table("trace-pieces", **table_options)
        self.summaries = app.Table("trace-summaries", **table_options)
        self._last_seen: dict[int, dict[bytes, float]] = {}

    def append(self, partition: int, trace_id: bytes, piece: bytes, summary: TraceSummary) -> None:
        """Store one more piece of a trace (call while processing an event of partition)."""
        now = time.time()
        raw = self.summaries.get(trace_id)
        if raw is None:
            buffered = BufferedTrace(now, now, 0, 0, False)
        else:
            buffered = BufferedTrace.unpack(raw)
        self.pieces[piece_key(trace_id, buffered.pieces)] = piece
        buffered.pieces += 1
        buffered.spans += summary.span_count
        buffered.has_error = buffered.has_error or summary.has_error
        buffered.last_seen = now
        self.summaries[trace_id] = buffered.pack()
        self._index(partition)[trace_id] = now

    def due(self, partition: int, quiet_for: float) -> list[bytes]:
        """Trace ids of partition whose last span arrived at least quiet_for seconds ago."""
        cutoff = time.time() - quiet_for
        return [tid for tid, seen in self._index(partition).items() if seen <= cutoff]

    def take(self, partition: int, trace_id: bytes) -> tuple[BufferedTrace, bytes] | None:
        """Remove a trace from the buffer; returns its summary and its spans as TracesData bytes."""
        self._index(partition).pop(trace_id, None)
        raw = self.summaries.get(trace_id)
        if raw is None:
            return None
        buffered = BufferedTrace.unpack(raw)
        chunks = []
        for number in range(buffered.pieces):
            key = piece_key(trace_id, number)
            chunk = self.pieces.get(key)
            if chunk is not None:
                chunks.append(chunk)
                del self.pieces[key]
        del self.summaries[trace_id]
        return buffered, b"".join(chunks)

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the heap index of partitions this worker no longer owns."""
        for partition in partitions:
            self._last_seen.pop(partition, None)

    def buffered_traces(self) -> int:
        return sum(len(index) for index in self._last_seen.values())

    def _index(self, partition: int) -> dict[bytes, float]:
        """The heap index of a partition, rebuilt from the summary table on first use."""
        index = self._last_seen.get(partition)
        if index is None:
            index = self._last_seen[partition] = {}
            for trace_id, raw in self.summaries.items():
                if partition_for_trace(trace_id, self.partitions) == partition:
                    index[trace_id] = BufferedTrace.unpack(raw).last_seen
        return index
