"""Running duration percentiles per (service, operation), over a sliding interval.

What the ``latency_percentile`` policy compares a span with. Durations are counted in
log-linear buckets (as HdrHistogram does): each doubling of nanoseconds is cut into 16
equal buckets, so a bucket is 3-6 % of its lower bound wide, and the index comes from
integer bit operations (no logarithm). Counts are kept in ``slots`` time slots that
together cover ``interval`` seconds: the oldest slot is dropped as a new one starts, so
the percentile follows the traffic of the last interval.

A percentile is computed from the counts of every slot, interpolated linearly inside
its bucket, and cached per operation until the next slot starts: a lookup costs one dict
read, and an operation's threshold moves every ``interval / slots`` seconds, not with
every span. An operation with fewer than ``min_samples`` durations in the interval has
no percentile (``None``) until it has enough.

Shared by the fleet: with an ``exchange`` (``pipeline.shared.percentiles`` puts one in
Redis), each closed slot is handed to it, and percentiles come from the counts of every
worker's closed slots over the interval (``exchange.fleet()``), so all workers compare a
span with the same threshold. While the exchange has no fleet view (Redis unreachable,
or not yet synced) the worker's own slots are used: partitioning by trace id gives each
worker a uniform share of every operation, so its percentiles estimate the same values
from fewer samples.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pipeline.policies.shared import Counts, PercentileExchange

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

SUB_BUCKETS = 16  # buckets per doubling
_LINEAR = 2 * SUB_BUCKETS  # durations below this (ns) each have a bucket of their own
_SHIFT = SUB_BUCKETS.bit_length()  # 5: keeps the 5 top bits, 16..31
DEFAULT_SLOTS = 6

#: (service.name, span name)
OperationKey = tuple[str, str]


def bucket_of(duration_ns: int) -> int:
    """The index of the bucket holding a duration (negative durations count as 0)."""
    if duration_ns < _LINEAR:
        return duration_ns if duration_ns > 0 else 0
    shift = duration_ns.bit_length() - _SHIFT
    return shift * SUB_BUCKETS + (duration_ns >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[lower, upper) in ns of bucket ``index``."""
    if index < _LINEAR:
        return index, index + 1
    shift = index // SUB_BUCKETS - 1
    top = index - shift * SUB_BUCKETS
    return top << shift, (top + 1) << shift


def percentile_of(buckets: dict[int, int], percentile: float) -> float:
    """The ``percentile`` (0-100) of the durations counted in ``buckets``, in ns."""
    total = sum(buckets.values())
    rank = total * percentile / 100.0
    below = 0
    for index in sorted(buckets):
        count = buckets[index]
        if below + count >= rank:
            lower, upper = bucket_bounds(index)
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return float(bucket_bounds(max(buckets))[1])  # pragma: no cover - rank <= total


class _Span:
    """What ``record`` hands the hot path in place of a span."""

    __slots__ = ("end_time_unix_nano", "name", "parent_span_id", "start_time_unix_nano")

    def __init__(self, name: str, duration_ns: int) -> None:
        self.name = name
        self.parent_span_id = b""
        self.start_time_unix_nano = 0
        self.end_time_unix_nano = duration_ns


class _Limits(dict):
    """One service's thresholds by span name, each computed on its first lookup."""

    def __init__(self, owner: SlidingPercentiles, service: str) -> None:
        super().__init__()
        self.owner = owner
        self.service = service

    def __missing__(self, name: str) -> float | None:
        value = self[name] = self.owner.compute_threshold(self.service, name)
        return value


class SlidingPercentiles:
    """Duration buckets per operation over the last ``interval`` seconds; see the module."""

    def __init__(
        self,
        percentile: float,
        interval: float,
        min_samples: int,
        clock: Callable[[], float] = time.monotonic,
        slots: int = DEFAULT_SLOTS,
        exchange: PercentileExchange | None = None,
    ) -> None:
        if not 0 < percentile < 100:
            raise ValueError("percentile must be between 0 and 100 (exclusive)")
        if interval <= 0 or slots < 1:
            raise ValueError("interval must be > 0 and slots >= 1")
        self.percentile = percentile
        self.min_samples = min_samples
        self.slot_seconds = interval / slots
        self.clock = clock
        self._slots: deque[Counts] = deque([{}], maxlen=slots)
        self._slot_started = clock()
        self._limits: dict[str, _Limits] = {}  # cached thresholds, by service
        self.exchange = exchange
        self._fleet: Counts | None = None  # the exchange's view the thresholds came from

    @property
    def current(self) -> Counts:
        """The counts of the slot being filled."""
        return self._slots[-1]

    def advance(self) -> None:
        """Start new slots for the time passed (dropping the oldest), hand the closed one
        to the exchange; thresholds are recomputed after a new slot or a new fleet view."""
        exchange = self.exchange
        if exchange is not None:
            fleet = exchange.fleet()
            if fleet is not self._fleet:
                self._fleet = fleet
                self._limits.clear()
        passed = int((self.clock() - self._slot_started) / self.slot_seconds)
        if passed <= 0:
            return
        if exchange is not None and self.current:
            exchange.publish(self.current)
        for _ in range(min(passed, self._slots.maxlen or 1)):
            self._slots.append({})
        self._slot_started += passed * self.slot_seconds
        self._limits.clear()

    def record(self, key: OperationKey, duration_ns: int) -> None:
        """Count one duration (compared with nothing)."""
        span = _Span(key[1], duration_ns)
        self.slower_than_usual([span], [(None, 0, 1)], [key[0]], float("inf"))

    def slower_than_usual(
        self,
        spans: Sequence[Span],
        runs: Sequence[tuple[object, int, int]],
        services: Sequence[str],
        floor_ns: float = 0.0,
        root_only: bool = False,
    ) -> bool:
        """Whether a span (only roots with ``root_only``) lasted more than its
        operation's percentile and at least ``floor_ns`` (below ``min_samples``: at least
        a non-zero floor), counting every duration compared. ``runs`` are the trace's
        resource runs (``spans[first:last]`` share a resource), ``services`` their
        service.name.

        The policy's hot path, one call a trace: a service's thresholds and counts are
        looked up once per run, and one loop over its spans reads the names and times,
        the cached thresholds and the bucket counts without a call per span. (The times
        are read from the spans here: a list of them made first costs more.)
        """
        all_limits = self._limits
        current = self._slots[-1]
        slow = False
        for (_, first, last), service in zip(runs, services, strict=True):
            limits = all_limits.get(service) or self._limits_of(service)
            counts = current.get(service)
            if counts is None:
                counts = current[service] = {}
            for span in spans[first:last]:
                if root_only and span.parent_span_id:
                    continue
                name = span.name
                duration = span.end_time_unix_nano - span.start_time_unix_nano
                if duration < 0:
                    duration = 0
                if not slow and duration >= floor_ns:
                    limit = limits[name]
                    slow = duration > limit if limit is not None else floor_ns > 0
                # bucket_of(duration), inlined: a call per span costs more than the rest
                if duration < _LINEAR:
                    index = duration
                else:
                    shift = duration.bit_length() - _SHIFT
                    index = shift * SUB_BUCKETS + (duration >> shift)
                buckets = counts.get(name)
                if buckets is None:
                    buckets = counts[name] = {}
                buckets[index] = buckets.get(index, 0) + 1
        return slow

    def threshold(self, key: OperationKey) -> float | None:
        """The operation's percentile in ns, or None below ``min_samples`` durations
        (cached until the next slot or fleet view)."""
        service, name = key
        return self._limits_of(service)[name]

    def _limits_of(self, service: str) -> _Limits:
        """The service's cached thresholds (what the hot path reads inline)."""
        limits = self._limits.get(service)
        if limits is None:
            limits = self._limits[service] = _Limits(self, service)
        return limits

    def compute_threshold(self, service: str, name: str) -> float | None:
        """The percentile from the counts (the fleet's view if there is one, else the
        worker's slots); what ``_Limits`` caches."""
        merged: dict[int, int] = {}
        for slot in self._slots if self._fleet is None else (self._fleet,):
            for index, count in slot.get(service, {}).get(name, {}).items():
                merged[index] = merged.get(index, 0) + count
        if merged and sum(merged.values()) >= self.min_samples:
            return percentile_of(merged, self.percentile)
        return None
