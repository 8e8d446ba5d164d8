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

And in which spans fail. Per replay (not cycle 0), a trace's generated failure happens
again with probability ``recurrence`` (0.9 by default), all its error spans together, so
an error chain stays whole; every other span that can fail (its topology error rate is
above 0) fails on its own with ``(1 - recurrence)`` times that rate, its client span with
it; a span that failed when generated fails only with its trace's generated failure.
So a replay keeps the generated outcome or draws a new one, and the share of traces with
an error stays the generated one (the topology's) on average: at recurrence 1 every replay
fails as generated, at 0 generated failures never come back and the other spans draw
anew. A failure new in a replay does not spread to callers, and attributes and exception
events stay as generated: a replay changes the status only.

The status is patched in place too: every span that can fail is encoded with a status
whose last two bytes are either ``18 02`` (code = ERROR) or ``12 00`` (an empty message
again, which replaces the one before it: proto3 keeps a field's last value; code unset),
so the status keeps its length either way.
The draws come from a PRNG seeded by the request and the cycle, so the ledger recomputes
which traces of a sent replay have an error (``Batch.trace_errors``) without storing it.
"""

from __future__ import annotations

import random
import struct
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.loadgen.generator import STATUS_ERROR, GeneratedTrace, TraceGenerator, encode_request

_U64 = struct.Struct("<Q")
_U32 = struct.Struct(">I")
_TAG_START = b"\x39"  # Span.start_time_unix_nano: field 7, fixed64
_TAG_END = b"\x41"  # Span.end_time_unix_nano: field 8, fixed64
_TAG_EVENT_TIME = b"\x09"  # Span.Event.time_unix_nano: field 1, fixed64
_ID_PREFIX = b"\x0a\x10"  # field 1 (trace_id), 16 bytes; same tag in Span and Span.Link
_SPAN_ID_PREFIX = b"\x12\x08"  # field 2 (span_id), 8 bytes; same tag in Span and Span.Link
_PARENT_PREFIX = b"\x22\x08"  # Span.parent_span_id: field 4, 8 bytes
_TAG_STATUS = b"\x7a"  # Span.status: field 15, length-delimited
STATUS_FAILED = b"\x18\x02"  # the status's last bytes when it fails: code (field 3) = ERROR
STATUS_CLEARED = b"\x12\x00"  # ... when not: message (field 2) = "" again, code unset
RECURRENCE = 0.9  # default chance that a trace's generated failure happens again


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


def _threshold(probability: float) -> int:
    """A 32-bit draw below this happens with ``probability``."""
    return min(1 << 32, max(0, int(probability * (1 << 32))))


@dataclass(slots=True)
class TraceInfo:
    """Ground truth about one pool trace (``error``: as generated, i.e. in cycle 0)."""

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
    # Error variation: a unit is what fails or not as one (a trace's generated failure,
    # or a span with its client span); the first ``recurring`` units are the generated
    # failures, ERROR in ``body``, the others not.
    unit_thresholds: list[int]  # a unit fails when its draw is below this
    unit_traces: list[int]  # which of `traces` it belongs to
    unit_offsets: list[list[int]]  # where the last two bytes of its spans' statuses are
    recurring: int
    salt: int  # with the cycle, seeds the replay's draws

    def failed_units(self, cycle: int) -> list[int]:
        """The units that fail in replay ``cycle``, ascending; one draw per unit."""
        if not cycle:
            return list(range(self.recurring))
        thresholds = self.unit_thresholds
        if not thresholds:
            return []
        raw = random.Random(self.salt ^ (cycle << 64)).randbytes(4 * len(thresholds))
        draws = memoryview(raw).cast("I")
        return [unit for unit, (d, t) in enumerate(zip(draws, thresholds, strict=True)) if d < t]

    def trace_errors(self, cycle: int) -> list[bool]:
        """Per trace of the request, whether replay ``cycle`` has an ERROR span in it."""
        errors = [False] * len(self.traces)
        unit_traces = self.unit_traces
        for unit in self.failed_units(cycle):
            errors[unit_traces[unit]] = True
        return errors

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
        if self.unit_thresholds:
            self._patch_statuses(buffer, cycle)
        return bytes(buffer)

    def _patch_statuses(self, buffer: bytearray, cycle: int) -> None:
        """Flip the statuses whose unit's outcome in ``cycle`` differs from the body's."""
        failed = self.failed_units(cycle)
        recurring = self.recurring
        split = bisect_left(failed, recurring)
        offsets = self.unit_offsets
        if split < recurring:  # some generated failures do not happen again
            again = set(failed[:split])
            for unit in range(recurring):
                if unit not in again:
                    for offset in offsets[unit]:
                        buffer[offset : offset + 2] = STATUS_CLEARED
        for unit in failed[split:]:
            for offset in offsets[unit]:
                buffer[offset : offset + 2] = STATUS_FAILED


@dataclass(slots=True)
class _Offsets:
    """Where ``_locate`` found the fields a replay patches."""

    id_offsets: list[int]
    id_traces: list[int]
    time_offsets: list[int]
    time_values: list[int]
    time_traces: list[int]
    span_id_offsets: list[int]
    status_offsets: list[int]  # the last two bytes of a failing span's status ...
    status_spans: list[tuple[bytes, bytes]]  # ... and its (trace id, span id)


def _locate(body: bytes, traces: list[GeneratedTrace], request) -> _Offsets:
    """Offsets of trace ids, span ids and timestamps in the serialized request, in one
    pass.

    upb writes fields in field-number order and spans in the order they were added, so
    each span's own fields are found by searching forward from its trace id + span id.
    """
    index_of = {t.trace_id: i for i, t in enumerate(traces)}
    found = _Offsets([], [], [], [], [], [], [], [])
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
                if span.status.code == STATUS_ERROR:
                    status = span.status.SerializeToString()
                    pattern = _TAG_STATUS + _varint(len(status)) + status
                    cursor = find(pattern, cursor) + len(pattern)
                    if body[cursor - 2 : cursor] != STATUS_FAILED:
                        raise AssertionError("an error status does not end in its code")
                    found.status_offsets.append(cursor - 2)
                    found.status_spans.append((span.trace_id, span.span_id))
                position = cursor
    return found


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(slots=True)
class _Units:
    """How the spans of a request fail or not in replays (see ``Batch``)."""

    unit_of: dict[tuple[bytes, bytes], int]  # (trace id, span id) -> unit
    thresholds: list[int]
    traces: list[int]
    recurring: int


def _failure_units(traces: list[GeneratedTrace], recurrence: float) -> _Units:
    """One unit per trace with generated errors (its error spans, at ``recurrence``), then
    one per other span with an error rate (at ``1 - recurrence`` times it, so a replay
    has as many error traces as the generated ones on average), which its client span
    (if any) shares."""
    units = _Units({}, [], [], 0)
    for index, trace in enumerate(traces):
        failed = [span for span in trace.spans if span.error is not None]
        if failed:
            for span in failed:
                units.unit_of[(trace.trace_id, span.span_id)] = len(units.thresholds)
            units.thresholds.append(_threshold(recurrence))
            units.traces.append(index)
    units.recurring = len(units.thresholds)
    for index, trace in enumerate(traces):
        for span in trace.spans:
            chance = (1.0 - recurrence) * span.error_rate
            if span.error is None and chance > 0:
                units.unit_of[(trace.trace_id, span.span_id)] = len(units.thresholds)
                units.thresholds.append(_threshold(chance))
                units.traces.append(index)
        for span in trace.spans:
            if span.error is None and span.reports:
                unit = units.unit_of.get((trace.trace_id, span.reports))
                if unit is not None and unit >= units.recurring:
                    units.unit_of[(trace.trace_id, span.span_id)] = unit
    return units


def build_batch(traces: list[GeneratedTrace], recurrence: float = RECURRENCE) -> Batch:
    """Encode traces into one request and index its ids, timestamps and the statuses of
    the spans that can fail (see the module doc; ``recurrence``: the chance a trace's
    generated failure happens again in a replay)."""
    request = encode_request(traces)
    units = _failure_units(traces, recurrence)
    records = {(t.trace_id, s.span_id): s for t in traces for s in t.spans}
    # Spans that can fail but did not get an error status too, cleared below in the body.
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                key = (span.trace_id, span.span_id)
                if key in units.unit_of and span.status.code != STATUS_ERROR:
                    span.status.code = STATUS_ERROR
                    span.status.message = records[key].failure
    encoded = request.SerializeToString()
    found = _locate(encoded, traces, request)
    buffer = bytearray(encoded)
    unit_offsets: list[list[int]] = [[] for _ in units.thresholds]
    for offset, key in zip(found.status_offsets, found.status_spans, strict=True):
        unit = units.unit_of[key]
        unit_offsets[unit].append(offset)
        if unit >= units.recurring:
            buffer[offset : offset + 2] = STATUS_CLEARED
    body = bytes(buffer)
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
        unit_thresholds=units.thresholds,
        unit_traces=units.traces,
        unit_offsets=unit_offsets,
        recurring=units.recurring,
        salt=int.from_bytes(traces[0].trace_id[8:], "big") if traces else 0,
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
    recurrence: float = RECURRENCE,
) -> list[Batch]:
    """``requests`` pre-built requests of about ``spans_per_request`` spans each.

    ``elapsed`` picks the phase of the run (before or after the topology's bad deploy);
    ``recurrence`` is the chance a trace's generated failure happens again in a replay.
    """
    return [
        build_batch(group, recurrence)
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
