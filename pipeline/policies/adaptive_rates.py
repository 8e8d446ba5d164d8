"""Per-operation sampling probabilities that hold the kept volume at a target.

The ``adaptive`` policy keeps a trace with the probability of its root operation
(service.name, root span name). Every ``interval`` the probabilities are computed anew
from the traffic of the interval that just ended, in spans a second:

1. ``must``: the spans of traces other policies kept (errors, slow, ...). They count
   against the target first, so the budget left for sampling is ``target - must``
   (never below 0).
2. The rest of the traffic (traces no other policy kept), per operation, shares that
   budget by water-filling (:func:`allocate`): operations that need less than an equal
   share keep everything, the others split what is left equally. An operation's
   probability is its allotment over its traffic.
3. A floor keeps rare paths visible: at least ``floor_traces_per_minute`` traces of each
   operation a minute (when it has that many), whatever the budget.

Computed from measured traffic (not nudged step by step as Jaeger's adaptive sampler
does), the kept volume is back at the target one interval after traffic doubles or halves.
An operation not seen in the last interval gets the average probability (budget over
traffic). Before the first interval has ended nothing is known, and every operation
gets ``INITIAL_PROBABILITY`` (0.001, Jaeger's default sampling probability): a worker
that starts on a backlog must not keep everything while it learns. That first interval
is cut to ``FIRST_INTERVAL_SECONDS``.

``target`` is the whole fleet's: a worker that counts only its own traffic aims at its
share, ``target / workers`` (``workers()``: the live workers, 1 without shared state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

FIRST_INTERVAL_SECONDS = 1.0
INITIAL_PROBABILITY = 0.001

#: (service.name, root span name)
Operation = tuple[str, str]


def allocate(budget: float, demand: Mapping[Operation, float]) -> dict[Operation, float]:
    """Water-filling: each operation's share of ``budget`` (same unit as ``demand``),
    as a probability (share / demand, at most 1)."""
    probabilities: dict[Operation, float] = {}
    left = max(0.0, budget)
    ordered = sorted(demand.items(), key=lambda item: item[1])
    for i, (operation, need) in enumerate(ordered):
        share = left / (len(ordered) - i)
        if need <= share:
            probabilities[operation] = 1.0
            left -= need
        else:
            probabilities[operation] = share / need
            left -= share
    return probabilities


class AdaptiveRates:
    """Traffic counted over the current interval, probabilities from the last one."""

    def __init__(
        self,
        target: float,
        interval: float,
        floor_traces_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        workers: Callable[[], int] = lambda: 1,
    ) -> None:
        self.target = target
        self.interval = interval
        self.floor_per_second = floor_traces_per_minute / 60.0
        self.clock = clock
        self.workers = workers
        self.probabilities: dict[Operation, float] = {}
        self.default = INITIAL_PROBABILITY  # for operations without a probability of their own
        self._started = clock()
        self._length = min(interval, FIRST_INTERVAL_SECONDS)
        # Per operation: [traces, spans] that no other policy kept; and the spans of
        # traces other policies kept, all this interval.
        self._rest: dict[Operation, list[int]] = {}
        self._must_spans = 0
        self._kept_spans = 0  # spans of traces kept, by any policy
        #: what the last interval measured, spans a second (for /metrics and tests): kept
        #: by other policies, offered otherwise, kept in all
        self.last_must = 0.0
        self.last_rest = 0.0
        self.last_kept = 0.0
        self.last_rest_by_operation: dict[Operation, float] = {}

    def probability(self, operation: Operation) -> float:
        self.advance()
        return self.probabilities.get(operation, self.default)

    def observe(
        self, operation: Operation, spans: int, kept_by_other: bool, kept: bool = False
    ) -> None:
        """Count one decided trace: its root operation, spans, whether a policy other
        than the adaptive one kept it, and whether it was kept at all."""
        if kept or kept_by_other:
            self._kept_spans += spans
        if kept_by_other:
            self._must_spans += spans
            return
        counts = self._rest.get(operation)
        if counts is None:
            counts = self._rest[operation] = [0, 0]
        counts[0] += 1
        counts[1] += spans

    def advance(self) -> None:
        now = self.clock()
        elapsed = now - self._started
        if elapsed < self._length:
            return
        if not self._rest and not self._must_spans:  # nothing seen: nothing to learn
            self._started = now
            return
        self.recompute(elapsed)
        self._started = now
        self._length = self.interval
        self._rest = {}
        self._must_spans = 0
        self._kept_spans = 0

    def recompute(self, elapsed: float) -> None:
        """Probabilities from the counts of the ``elapsed`` seconds just ended."""
        target = self.target / max(1, self.workers())
        must = self._must_spans / elapsed
        demand = {op: counts[1] / elapsed for op, counts in self._rest.items()}
        budget = max(0.0, target - must)
        probabilities = allocate(budget, demand)
        for op, counts in self._rest.items():
            traces_per_second = counts[0] / elapsed
            if traces_per_second > 0:
                floor = min(1.0, self.floor_per_second / traces_per_second)
                if probabilities[op] < floor:
                    probabilities[op] = floor
        self.probabilities = probabilities
        rest = sum(demand.values())
        self.default = min(1.0, budget / rest) if rest > 0 else 1.0
        self.last_must = must
        self.last_rest = rest
        self.last_kept = self._kept_spans / elapsed
        self.last_rest_by_operation = demand
