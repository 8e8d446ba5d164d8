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
that starts on a backlog must not keep everything while it learns. It learns from its
own first ``FIRST_INTERVAL_SECONDS`` of traffic.

Each trace counts in the slot its decision fell due in (see ``AdaptiveRates``), so a
slot's counts are the traffic of its seconds whichever tick decided them.

The fleet. Intervals are slots of the clock (slot n covers ``[n, n + 1) x interval``).
With a ``TrafficExchange`` (Redis), the exchange ends every slot on time: it takes the
worker's counts, pools them with the other workers', and computes the probabilities from
the fleet's sum and the whole target, so every worker holds the same probabilities and a
trace gets the same decision whichever worker owns it. Without an exchange, or when the
pooled counts do not come (Redis unreachable), a worker computes from its own counts and
aims at its share, ``target / workers`` (``workers()``: the live workers, 1 without
shared state).

Head sampling: ``head_rates`` turns each pooled slot's allotment into the probabilities
served to SDKs (Jaeger's remote-sampling endpoint), moving from what they were served.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.policies.shared import TrafficExchange

FIRST_INTERVAL_SECONDS = 1.0
INITIAL_PROBABILITY = 0.001
#: head-sampling rates served to SDKs rise at most this much a step (Jaeger's rule) ...
HEAD_RISE_MAX = 2.0
HEAD_MIN_PROBABILITY = 1e-5
#: ... and move by this power of the room they measured: SDKs adopt a new rate only at
#: their next poll, so the traffic measured may still be sampled at an older rate, and a
#: full step would then overshoot and swing
HEAD_DAMPING = 0.5

#: (service.name, root span name)
Operation = tuple[str, str]


@dataclass(slots=True)
class Traffic:
    """What a slot saw, in counts: per operation [traces, spans] of the traces no other
    policy kept; spans of traces other policies kept; spans kept by any policy."""

    rest: dict[Operation, list[int]] = field(default_factory=dict)
    must_spans: int = 0
    kept_spans: int = 0

    def __bool__(self) -> bool:
        return bool(self.rest) or self.must_spans > 0

    def add(self, other: Traffic) -> None:
        for op, (traces, spans) in other.rest.items():
            counts = self.rest.get(op)
            if counts is None:
                self.rest[op] = [traces, spans]
            else:
                counts[0] += traces
                counts[1] += spans
        self.must_spans += other.must_spans
        self.kept_spans += other.kept_spans


@dataclass(frozen=True, slots=True)
class Allotment:
    """How a slot's budget was shared: what each operation offered (spans a second), and
    its room, the share water-filling gave it over what it offered (the probability
    before it is capped at 1: above 1, the operation could have taken more)."""

    demand: dict[Operation, float]
    room: dict[Operation, float]
    default: float  # probability of an operation not seen


def allocate(budget: float, demand: Mapping[Operation, float]) -> dict[Operation, float]:
    """Water-filling: each operation's share of ``budget`` (same unit as ``demand``),
    as a probability (share / demand, at most 1)."""
    return {op: min(1.0, room) for op, room in water_fill(budget, demand).items()}


def water_fill(budget: float, demand: Mapping[Operation, float]) -> dict[Operation, float]:
    """Each operation's room: its equal share of what is left, when its turn comes (the
    smallest first), over its demand. Operations whose room is at least 1 keep all they
    offer; what they leave goes to the larger ones."""
    room: dict[Operation, float] = {}
    left = max(0.0, budget)
    ordered = sorted(demand.items(), key=lambda item: item[1])
    for i, (operation, need) in enumerate(ordered):
        share = left / (len(ordered) - i)
        room[operation] = share / need if need > 0 else math.inf
        left -= min(need, share)
    return room


def head_rates(previous: Mapping[Operation, float], allotment: Allotment) -> dict[Operation, float]:
    """Head-sampling probabilities for SDKs, from the rates they were last served.

    What reaches the sampler has already been head-sampled at ``previous`` (1 for an
    operation never served), so the tail's allotment only says which way to move: each
    operation's rate is multiplied by the square root of its room (``HEAD_DAMPING``),
    rising at most ``HEAD_RISE_MAX`` times a step and staying within
    ``[HEAD_MIN_PROBABILITY, 1]``. Where the served rates settle, what reaches the sampler
    is what water-filling would keep of the traffic before head sampling; the tail still
    holds the target exactly while they get there.
    """
    rates: dict[Operation, float] = {}
    for op in allotment.demand:
        step = min(HEAD_RISE_MAX, allotment.room[op] ** HEAD_DAMPING)
        rates[op] = min(1.0, max(HEAD_MIN_PROBABILITY, previous.get(op, 1.0) * step))
    return rates


class AdaptiveRates:
    """Traffic counted by slot, probabilities from the last slot taken.

    A trace counts in the slot its decision fell due in (``observe``'s ``due``: when its
    decision wait ran out, on the clock of the slots), not in the one it happened to be
    decided in: workers decide in ticks, and a slot counted by decision time holds a
    varying number of them. A slot is therefore taken ``decision_lag`` after it ends
    (the longest a due trace waits for its tick), and a trace due in a slot already
    taken (a worker catching up on a backlog) counts in the oldest slot still open.

    Slots are taken in ``advance`` (called from ``probability`` when due) or, with an
    exchange, on the exchange's thread, which takes each slot's counts (``take_slot``)
    and hands back the fleet's (``apply_slot``): a worker's slot then ends on time even
    when it decides no trace for a while.
    """

    def __init__(
        self,
        target: float,
        interval: float,
        floor_traces_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        workers: Callable[[], int] = lambda: 1,
        exchange: TrafficExchange | None = None,
        head_interval: float = 60.0,
        decision_lag: float = 0.0,
    ) -> None:
        self.target = target
        self.interval = interval
        self.head_interval = head_interval  # how often the exchange moves the head rates
        self.decision_lag = decision_lag
        self.floor_per_second = floor_traces_per_minute / 60.0
        # Pooled slots must be the same seconds on every worker: the exchange's clock.
        self.clock = exchange.clock if exchange is not None else clock
        self.workers = workers
        self.probabilities: dict[Operation, float] = {}
        self.default = INITIAL_PROBABILITY  # for operations without a probability of their own
        self.pooled = False  # the probabilities come from the fleet's counts
        now = self.clock()
        # Counts of the open slots by slot number; the exchange's thread takes them.
        self._open: dict[int, Traffic] = {}
        self._lock = threading.Lock()
        self._slot = int(now // interval)  # the oldest slot not taken yet
        self._counted_since = now
        self._learning_until = now + FIRST_INTERVAL_SECONDS  # 0 once learned
        self._driven = exchange is not None
        self._next = min(self._learning_until, self._slot_taken_at())
        #: what the last interval measured, spans a second (for /metrics and tests): kept
        #: by other policies, offered otherwise, kept in all (the fleet's when pooled)
        self.last_must = 0.0
        self.last_rest = 0.0
        self.last_kept = 0.0
        self.last_rest_by_operation: dict[Operation, float] = {}
        if exchange is not None:
            exchange.attach(self)

    # --- the hot path --------------------------------------------------------------

    def probability(self, operation: Operation) -> float:
        if self.clock() >= self._next:
            self.advance()
        return self.probabilities.get(operation, self.default)

    def observe(
        self,
        operation: Operation,
        spans: int,
        kept_by_other: bool,
        kept: bool = False,
        due: float | None = None,
    ) -> None:
        """Count one decided trace: its root operation, spans, whether a policy other
        than the adaptive one kept it, whether it was kept at all, and when its decision
        fell due (None: in the oldest open slot)."""
        with self._lock:
            slot = self._slot
            if due is not None and due >= (slot + 1) * self.interval:
                slot = int(due // self.interval)
            traffic = self._open.get(slot)
            if traffic is None:
                traffic = self._open[slot] = Traffic()
            if kept or kept_by_other:
                traffic.kept_spans += spans
            if kept_by_other:
                traffic.must_spans += spans
                return
            counts = traffic.rest.get(operation)
            if counts is None:
                counts = traffic.rest[operation] = [0, 0]
            counts[0] += 1
            counts[1] += spans

    # --- slot ends -----------------------------------------------------------------

    def _slot_taken_at(self) -> float:
        """When the oldest open slot has all its decisions: its end and the lag."""
        return (self._slot + 1) * self.interval + self.decision_lag

    def advance(self) -> None:
        """The first second's learning; without an exchange, also the slots' ends."""
        now = self.clock()
        if self._learning_until and now >= self._learning_until:
            so_far = self._counted_so_far()
            if so_far:  # own counts so far, without taking the slot
                self._learning_until = 0.0
                self.recompute(so_far, now - self._counted_since, pooled=False)
            else:
                self._learning_until = now + FIRST_INTERVAL_SECONDS
        if not self._driven and now >= self._slot_taken_at():
            own, seconds = self.take_slot()
            self.apply_slot(own, seconds, None)
        self._next = math.inf if self._driven else self._slot_taken_at()
        if self._learning_until:
            self._next = min(self._next, self._learning_until)

    def _counted_so_far(self) -> Traffic:
        so_far = Traffic()
        with self._lock:
            for traffic in self._open.values():
                so_far.add(traffic)
        return so_far

    def take_slot(self, last: int | None = None) -> tuple[Traffic, float]:
        """Take the counts of every open slot up to ``last`` (default: the last slot
        that ended ``decision_lag`` ago) and the seconds they cover."""
        if last is None:
            last = int((self.clock() - self.decision_lag) // self.interval) - 1
        taken = Traffic()
        with self._lock:
            first = self._slot
            for slot in [slot for slot in self._open if slot <= last]:
                taken.add(self._open.pop(slot))
            self._slot = max(first, last + 1)
        end = (last + 1) * self.interval
        seconds = max(1e-3, end - max(self._counted_since, first * self.interval))
        self._counted_since = max(self._counted_since, end)
        self._learning_until = 0.0
        return taken, seconds

    def apply_slot(self, own: Traffic, seconds: float, fleet: Traffic | None) -> Allotment | None:
        """Probabilities from the fleet's counts of a whole slot if there are any, else
        from the worker's own; None when neither saw a trace (nothing to learn)."""
        if fleet:
            return self.recompute(fleet, self.interval, pooled=True)
        if own:
            return self.recompute(own, seconds, pooled=False)
        return None

    def recompute(self, traffic: Traffic, seconds: float, pooled: bool) -> Allotment:
        """Probabilities from a slot's counts over ``seconds``: the fleet's counts aim
        at the whole target, a worker's own at its share."""
        target = self.target if pooled else self.target / max(1, self.workers())
        must = traffic.must_spans / seconds
        demand = {op: counts[1] / seconds for op, counts in list(traffic.rest.items())}
        budget = max(0.0, target - must)
        room = water_fill(budget, demand)
        probabilities = {op: min(1.0, r) for op, r in room.items()}
        for op, counts in list(traffic.rest.items()):
            traces_per_second = counts[0] / seconds
            if traces_per_second > 0:
                floor = min(1.0, self.floor_per_second / traces_per_second)
                if probabilities.get(op, 1.0) < floor:
                    probabilities[op] = floor
        rest = sum(demand.values())
        self.default = min(1.0, budget / rest) if rest > 0 else 1.0
        self.probabilities = probabilities
        self.pooled = pooled
        self.last_must = must
        self.last_rest = rest
        self.last_kept = traffic.kept_spans / seconds
        self.last_rest_by_operation = demand
        return Allotment(demand, room, self.default)
