"""Running duration percentiles per (service, operation), over a sliding interval.

What the ``latency_percentile`` policy compares a span with. Durations are counted in
log-scale buckets, 16 per doubling (each bucket about 4.4 % wide, the OpenTelemetry
exponential histogram at scale 4), in ``slots`` time slots that together cover
``interval`` seconds: the oldest slot is dropped as a new one starts, so the percentile
follows the traffic of the last interval.

A percentile is computed from the counts of every slot, interpolated inside its bucket
(log-linear), and cached per key until the next slot starts: a lookup costs one dict
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

import math
import time
from collections import deque
from collections.abc import Callable

from pipeline.policies.shared import Counts, PercentileExchange

BUCKETS_PER_DOUBLING = 16
DEFAULT_SLOTS = 6

#: (service.name, span name)
OperationKey = tuple[str, str]


def bucket_of(duration_ns: int) -> int:
    """The bucket holding a duration: [2^(i/16), 2^((i+1)/16)) ns; 0 and 1 ns in bucket 0."""
    if duration_ns <= 1:
        return 0
    return int(math.log2(duration_ns) * BUCKETS_PER_DOUBLING)


def bucket_bound(index: float) -> float:
    """The lower bound (ns) of bucket ``index``; a fractional index interpolates."""
    return 2.0 ** (index / BUCKETS_PER_DOUBLING)


def percentile_of(buckets: dict[int, int], percentile: float) -> float:
    """The ``percentile`` (0-100) of the durations counted in ``buckets``, in ns."""
    total = sum(buckets.values())
    rank = total * percentile / 100.0
    below = 0
    for index in sorted(buckets):
        count = buckets[index]
        if below + count >= rank:
            return bucket_bound(index + (rank - below) / count)
        below += count
    return bucket_bound(max(buckets) + 1)  # pragma: no cover - rank <= total


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
        self._thresholds: dict[OperationKey, float | None] = {}
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
        if exchange is not None and exchange.fleet() is not self._fleet:
            self._fleet = exchange.fleet()
            self._thresholds.clear()
        passed = int((self.clock() - self._slot_started) / self.slot_seconds)
        if passed <= 0:
            return
        if exchange is not None and self.current:
            exchange.publish(self.current)
        for _ in range(min(passed, self._slots.maxlen or 1)):
            self._slots.append({})
        self._slot_started += passed * self.slot_seconds
        self._thresholds.clear()

    def record(self, key: OperationKey, duration_ns: int) -> None:
        buckets = self.current.get(key)
        if buckets is None:
            buckets = self.current[key] = {}
        index = bucket_of(duration_ns)
        buckets[index] = buckets.get(index, 0) + 1

    def threshold(self, key: OperationKey) -> float | None:
        """The operation's percentile in ns, or None below ``min_samples`` durations."""
        try:
            return self._thresholds[key]
        except KeyError:
            pass
        merged: dict[int, int] = {}
        for slot in self._slots if self._fleet is None else (self._fleet,):
            for index, count in slot.get(key, {}).items():
                merged[index] = merged.get(index, 0) + count
        value = None
        if merged and sum(merged.values()) >= self.min_samples:
            value = percentile_of(merged, self.percentile)
        self._thresholds[key] = value
        return value
