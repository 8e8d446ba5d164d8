"""Pre-built OTLP requests that can be replayed at high rate with fresh ids and times.

Generating and encoding a span costs ~10 µs in Python, so a generator alone cannot feed
100 000 spans/s from one core. Instead a pool of serialized export requests is built
once, and each send patches the bytes in place: the trace ids (16 bytes each, also in
span links), the span ids (8 bytes: the span's own, its parent's, a link's) and every
timestamp (fixed64 fields) sit at known offsets, and replacing them keeps every length
prefix valid. Per span that is a few small writes instead of an encode.

Ids stay unique: replay number ``cycle`` XORs the first 4 bytes of every trace id and
span id with a bijective 32-bit mix of the cycle (0 for the first replay, so cycle 0
sends exactly what the generator produced). A parent id or a link is patched as the span
it names, so a trace keeps its shape. The other bytes are random per pool span, so two
sends collide only if two generated ids share their random rest.

Replays also differ in time: replay ``cycle`` stretches or shrinks each trace by a factor
between 0.5 and 2 (log-uniform, from the cycle and the trace's place in its request;
1 in cycle 0), every timestamp's distance to the trace's end multiplied by it, so spans
stay nested in their parents and the trace still ends where it did.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.loadgen.generator import GeneratedTrace, TraceGenerator, encode_request

_U64 = struct.Struct("<Q")
_U32 = struct.Struct(">I")
_TAG_START = b"\x39"  # Span.start_time_unix_nano: field 7, fixed64
_TAG_END = b"\x41"  # Span.end_time_unix_nano: field 8, fixed64
_TAG_EVENT_TIME = b"\x09"  # Span.Event.time_unix_nano: field 1, fixed64
_ID_PREFIX = b"\x0a\x10"  # field 1 (trace_id), 16 bytes; same tag in Span and Span.Link
_SPAN_ID_PREFIX = b"\x12\x08"  # field 2 (span_id), 8 bytes; same tag in Span and Span.Link
_PARENT_PREFIX = b"\x22\x08"  # Span.parent_span_id: field 4, 8 bytes


def cycle_mask(cycle: int) -> int:
    """A bijective 32-bit mix of the replay number, with cycle_mask(0) == 0."""
    x = (cycle * 0x9E3779B1) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    return x


def replay_trace_id(trace_id: bytes, cycle: int) -> bytes:
    """The id a pool trace (or span: the same rule) carries in replay number ``cycle``."""
    if cycle == 0:
        return trace_id
    prefix = int.from_bytes(trace_id[:4], "big") ^ cycle_mask(cycle)
    return prefix.to_bytes(4, "big") + trace_id[4:]


replay_span_id = replay_trace_id


def duration_scale(cycle: int, trace: int) -> float:
    """How much replay ``cycle`` stretches the ``trace``-th trace of a request: 0.5 to 2,
    log-uniform; 1 in cycle 0."""
    if cycle == 0:
        return 1.0
    mixed = cycle_mask((cycle_mask(cycle) + trace * 0x632BE5AB) & 0xFFFFFFFF)
    return 2.0 ** (2.0 * mixed / 0xFFFFFFFF - 1.0)


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
    time_traces: list[int]  # which of `traces` each timestamp belongs to
    trace_ends: list[int]  # the last end of each of `traces`
    times_to_end: list[int]  # each timestamp's distance to its trace's end
    span_id_offsets: list[int]  # where a span id starts (own, parent's, a link's) ...
    span_id_prefixes: list[int]  # ... and its first 4 bytes

    def render(self, cycle: int, now_ns: int) -> bytes:
        """The request for replay ``cycle``, shifted so its last span ends at ``now_ns``."""
        buffer = bytearray(self.body)
        delta = now_ns - self.latest_end
        pack = _U64.pack_into
        if not cycle:
            for offset, value in zip(self.time_offsets, self.time_values, strict=True):
                pack(buffer, offset, value + delta)
            return bytes(buffer)
        scales = [duration_scale(cycle, index) for index in range(len(self.traces))]
        ends = [end + delta for end in self.trace_ends]
        for offset, to_end, index in zip(
            self.time_offsets, self.times_to_end, self.time_traces, strict=True
        ):
            pack(buffer, offset, ends[index] - int(to_end * scales[index]))
        ids = [replay_trace_id(t.trace_id, cycle) for t in self.traces]
        for offset, index in zip(self.id_offsets, self.id_traces, strict=True):
            buffer[offset : offset + 16] = ids[index]
        mask = cycle_mask(cycle)
        pack_id = _U32.pack_into
        for offset, prefix in zip(self.span_id_offsets, self.span_id_prefixes, strict=True):
            pack_id(buffer, offset, prefix ^ mask)
        return bytes(buffer)


@dataclass(slots=True)
class _Offsets:
    """Where ``_locate`` found the fields a replay patches."""

    id_offsets: list[int]
    id_traces: list[int]
    time_offsets: list[int]
    time_values: list[int]
    time_traces: list[int]
    span_id_offsets: list[int]


def _locate(body: bytes, traces: list[GeneratedTrace], request) -> _Offsets:
    """Offsets of trace ids, span ids and timestamps in the serialized request, in one
    pass.

    upb writes fields in field-number order and spans in the order they were added, so
    each span's own fields are found by searching forward from its trace id + span id.
    """
    index_of = {t.trace_id: i for i, t in enumerate(traces)}
    found = _Offsets([], [], [], [], [], [])
    id_offsets, id_traces = found.id_offsets, found.id_traces
    time_offsets, time_values = found.time_offsets, found.time_values
    span_id_offsets = found.span_id_offsets

    def find(pattern: bytes, start: int) -> int:
        at = body.find(pattern, start)
        if at < 0:
            raise AssertionError("a field of the encoded span was not where upb puts it")
        return at

    position = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                at = find(_ID_PREFIX + span.trace_id + _SPAN_ID_PREFIX + span.span_id, position)
                trace = index_of[span.trace_id]
                id_offsets.append(at + 2)
                id_traces.append(trace)
                span_id_offsets.append(at + 2 + 16 + 2)
                cursor = at + 2 + 16 + 10
                if span.parent_span_id:
                    cursor = find(_PARENT_PREFIX + span.parent_span_id, cursor) + 2
                    span_id_offsets.append(cursor)
                    cursor += 8
                times_before = len(time_offsets)
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
                found.time_traces.extend([trace] * (len(time_offsets) - times_before))
                for link in span.links:
                    pattern = _ID_PREFIX + link.trace_id + _SPAN_ID_PREFIX + link.span_id
                    cursor = find(pattern, cursor) + 2
                    if link.trace_id in index_of:  # a span of this request: patched alike
                        id_offsets.append(cursor)
                        id_traces.append(index_of[link.trace_id])
                        span_id_offsets.append(cursor + 16 + 2)
                    cursor += 16 + 10
                position = cursor
    return found


def build_batch(traces: list[GeneratedTrace]) -> Batch:
    """Encode traces into one request and index its ids and timestamps."""
    request = encode_request(traces)
    body = request.SerializeToString()
    found = _locate(body, traces, request)
    trace_ends = [0] * len(traces)
    for value, index in zip(found.time_values, found.time_traces, strict=True):
        trace_ends[index] = max(trace_ends[index], value)
    return Batch(
        body=body,
        traces=[TraceInfo(t.trace_id, len(t.spans), t.error) for t in traces],
        spans=sum(len(t.spans) for t in traces),
        latest_end=max(found.time_values),
        id_offsets=found.id_offsets,
        id_traces=found.id_traces,
        time_offsets=found.time_offsets,
        time_values=found.time_values,
        time_traces=found.time_traces,
        trace_ends=trace_ends,
        times_to_end=[
            trace_ends[index] - value
            for value, index in zip(found.time_values, found.time_traces, strict=True)
        ],
        span_id_offsets=found.span_id_offsets,
        span_id_prefixes=[_U32.unpack_from(body, o)[0] for o in found.span_id_offsets],
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
