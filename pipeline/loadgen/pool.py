"""Pre-built OTLP requests that can be replayed at high rate with fresh ids and times.

Generating and encoding a span costs ~10 µs in Python, so a generator alone cannot feed
100 000 spans/s from one core. Instead a pool of serialized export requests is built
once, and each send patches the bytes in place: the trace ids (16 bytes each, also in
span links) and every timestamp (fixed64 fields) sit at known offsets, and replacing them
keeps every length prefix valid. Per span that is three small writes instead of an
encode.

Ids stay unique: replay number ``cycle`` XORs the first 4 bytes of every trace id with a
bijective 32-bit mix of the cycle (0 for the first replay, so cycle 0 sends exactly what
the generator produced). The other 12 bytes are random per pool trace, so two sends
collide only if two generated trace ids share 96 random bits.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.loadgen.generator import GeneratedTrace, TraceGenerator, encode_request

_U64 = struct.Struct("<Q")
_TAG_START = b"\x39"  # Span.start_time_unix_nano: field 7, fixed64
_TAG_END = b"\x41"  # Span.end_time_unix_nano: field 8, fixed64
_TAG_EVENT_TIME = b"\x09"  # Span.Event.time_unix_nano: field 1, fixed64
_ID_PREFIX = b"\x0a\x10"  # field 1 (trace_id), 16 bytes; same tag in Span and Span.Link


def cycle_mask(cycle: int) -> int:
    """A bijective 32-bit mix of the replay number, with cycle_mask(0) == 0."""
    x = (cycle * 0x9E3779B1) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    return x


def replay_trace_id(trace_id: bytes, cycle: int) -> bytes:
    """The id a pool trace carries in replay number ``cycle``."""
    if cycle == 0:
        return trace_id
    prefix = int.from_bytes(trace_id[:4], "big") ^ cycle_mask(cycle)
    return prefix.to_bytes(4, "big") + trace_id[4:]


@dataclass(slots=True)
class TraceInfo:
    """Ground truth about one pool trace."""

    trace_id: bytes
    spans: int
    error: bool


@dataclass(slots=True)
class Batch:
    """One serialized export request and where its ids and timestamps are."""

    body: bytes
    traces: list[TraceInfo]
    spans: int
    latest_end: int
    id_offsets: list[int]  # where a trace id starts ...
    id_traces: list[int]  # ... and which of `traces` it belongs to
    time_offsets: list[int]
    time_values: list[int]

    def render(self, cycle: int, now_ns: int) -> bytes:
        """The request for replay ``cycle``, shifted so its last span ends at ``now_ns``."""
        buffer = bytearray(self.body)
        delta = now_ns - self.latest_end
        pack = _U64.pack_into
        for offset, value in zip(self.time_offsets, self.time_values, strict=True):
            pack(buffer, offset, value + delta)
        if cycle:
            ids = [replay_trace_id(t.trace_id, cycle) for t in self.traces]
            for offset, index in zip(self.id_offsets, self.id_traces, strict=True):
                buffer[offset : offset + 16] = ids[index]
        return bytes(buffer)


def _locate(body: bytes, traces: list[GeneratedTrace], request) -> tuple[list, list, list, list]:
    """Offsets of trace ids and timestamps in the serialized request, in one pass.

    upb writes fields in field-number order and spans in the order they were added, so
    each span's own fields are found by searching forward from its trace id + span id.
    """
    index_of = {t.trace_id: i for i, t in enumerate(traces)}
    id_offsets: list[int] = []
    id_traces: list[int] = []
    time_offsets: list[int] = []
    time_values: list[int] = []

    def find(pattern: bytes, start: int) -> int:
        at = body.find(pattern, start)
        if at < 0:
            raise AssertionError("a field of the encoded span was not where upb puts it")
        return at

    position = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                at = find(_ID_PREFIX + span.trace_id + b"\x12\x08" + span.span_id, position)
                id_offsets.append(at + 2)
                id_traces.append(index_of[span.trace_id])
                cursor = at + 2 + 16 + 10
                for tag, value in (
                    (_TAG_START, span.start_time_unix_nano),
                    (_TAG_END, span.end_time_unix_nano),
                ):
                    cursor = find(tag + _U64.pack(value), cursor) + 1
                    time_offsets.append(cursor)
                    time_values.append(value)
                    cursor += 8
                for event in span.events:
                    cursor = find(_TAG_EVENT_TIME + _U64.pack(event.time_unix_nano), cursor) + 1
                    time_offsets.append(cursor)
                    time_values.append(event.time_unix_nano)
                    cursor += 8
                for link in span.links:
                    pattern = _ID_PREFIX + link.trace_id + b"\x12\x08" + link.span_id
                    cursor = find(pattern, cursor) + 2
                    if link.trace_id in index_of:
                        id_offsets.append(cursor)
                        id_traces.append(index_of[link.trace_id])
                    cursor += 16
                position = cursor
    return id_offsets, id_traces, time_offsets, time_values


def build_batch(traces: list[GeneratedTrace]) -> Batch:
    """Encode traces into one request and index its ids and timestamps."""
    request = encode_request(traces)
    body = request.SerializeToString()
    id_offsets, id_traces, time_offsets, time_values = _locate(body, traces, request)
    return Batch(
        body=body,
        traces=[TraceInfo(t.trace_id, len(t.spans), t.error) for t in traces],
        spans=sum(len(t.spans) for t in traces),
        latest_end=max(time_values),
        id_offsets=id_offsets,
        id_traces=id_traces,
        time_offsets=time_offsets,
        time_values=time_values,
    )


def generate_requests(
    generator: TraceGenerator,
    requests: int,
    spans_per_request: int,
    elapsed: float,
    start_ns: int,
    spacing_ns: int,
) -> Iterator[list[GeneratedTrace]]:
    """Groups of whole user requests (with their follow-up traces), ~spans_per_request each."""
    at = start_ns
    for _ in range(requests):
        group: list[GeneratedTrace] = []
        spans = 0
        while spans < spans_per_request:
            traces = generator.generate(at, elapsed)
            at += spacing_ns
            group.extend(traces)
            spans += sum(len(t.spans) for t in traces)
        yield group


def build_pool(
    generator: TraceGenerator,
    requests: int,
    spans_per_request: int,
    elapsed: float = 0.0,
    start_ns: int = 1_700_000_000_000_000_000,
    spacing_ns: int = 100_000,
) -> list[Batch]:
    """``requests`` pre-built requests of about ``spans_per_request`` spans each.

    ``elapsed`` picks the phase of the run (before or after the topology's bad deploy).
    """
    return [
        build_batch(group)
        for group in generate_requests(
            generator, requests, spans_per_request, elapsed, start_ns, spacing_ns
        )
    ]


class Replay:
    """Which pre-built request to send next: round-robin, a new replay number per round.

    Two pools when the topology has a bad deploy: the one built for the phase after it
    takes over at ``deploy_at`` seconds into the run.
    """

    def __init__(
        self, normal: list[Batch], deployed: list[Batch] | None = None, deploy_at: float = 0.0
    ) -> None:
        if not normal or (deployed is not None and not deployed):
            raise ValueError("a replay needs at least one pre-built request per pool")
        self._pools = [normal] if deployed is None else [normal, deployed]
        self._deploy_at = deploy_at
        self._next = [0, 0]
        self._cycle = [0, 0]

    def next(self, elapsed: float) -> tuple[Batch, int]:
        which = 1 if len(self._pools) > 1 and elapsed >= self._deploy_at else 0
        pool = self._pools[which]
        index = self._next[which]
        batch, cycle = pool[index], self._cycle[which]
        if index + 1 == len(pool):
            self._next[which] = 0
            self._cycle[which] += 1
        else:
            self._next[which] = index + 1
        return batch, cycle
