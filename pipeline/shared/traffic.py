"""The adaptive policy's traffic, pooled by all workers in Redis, and the head-sampling
rates it serves to SDKs.

Each worker's exchange runs a thread on the wall clock. When a slot of ``interval``
seconds has ended and its traces have been decided (``decision_lag`` later: traces count
in the slot their decision fell due in), the thread takes the worker's counts of it
(``AdaptiveRates.take_slot``) and adds them to the slot's hash, where every worker's
counts of the same seconds meet:

    <prefix>:adaptive:<policy name>:<interval>s:<slot number>
        ["t", service, operation] -> traces no other policy kept
        ["s", service, operation] -> their spans
        "must" -> spans of traces other policies kept;  "kept" -> spans kept in all

``grace`` later (a quarter of the interval, at most a second: every worker's thread
has added its counts by then) it reads the hash back and hands the sum to
``AdaptiveRates.apply_slot``, which computes the fleet's probabilities: the same on every
worker. A Redis call that fails leaves the worker on its own counts for that slot
(``RedisHealth`` logs it once and counts it); the next slot tries again.

After a pooled slot, when the last table is ``head_interval`` old (or there is none), one
worker (the first to claim ``<key>:head-slot:<slot>``) moves the head-sampling rates
from the last table (``head_rates``) and writes the new table, which the query server
serves on Jaeger's remote-sampling endpoint:

    <prefix>:adaptive:<policy name>:rates  (JSON; expires after three head intervals)
        {"policy", "slot", "interval", "updated", "default", "floor_traces_per_second",
         "operations": [[service, operation, probability], ...]}
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import orjson
import redis

from pipeline.policies.adaptive_rates import (
    AdaptiveRates,
    Allotment,
    Traffic,
    head_rates,
)
from pipeline.shared.health import RedisHealth

FEATURE = "adaptive"
GRACE_OF_INTERVAL = 0.25
GRACE_MAX_SECONDS = 1.0
#: the head-sampling table lists at most this many operations (the busiest)
HEAD_OPERATIONS_MAX = 5_000
MUST = b"must"
KEPT = b"kept"


def rates_key(key_prefix: str, policy: str) -> str:
    return f"{key_prefix}:adaptive:{policy}:rates"


def traffic_of(fields: dict[bytes, bytes]) -> Traffic:
    """A slot's hash back into counts."""
    traffic = Traffic()
    for field, value in fields.items():
        count = int(value)
        if field == MUST:
            traffic.must_spans = count
        elif field == KEPT:
            traffic.kept_spans = count
        else:
            what, service, operation = orjson.loads(field)
            counts = traffic.rest.setdefault((service, operation), [0, 0])
            counts[0 if what == "t" else 1] += count
    return traffic


class RedisTrafficExchange:
    """One adaptive policy's pooled traffic; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        policy: str,
        interval: float,
        health: RedisHealth,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.policy = policy
        self.interval = interval
        self.key = f"{key_prefix}:adaptive:{policy}:{interval:g}s"
        self.rates_key = rates_key(key_prefix, policy)
        self.health = health
        self.clock = clock
        self.grace = min(GRACE_MAX_SECONDS, interval * GRACE_OF_INTERVAL)
        self._rates: AdaptiveRates | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"adaptive {policy}", daemon=True)
        self._thread.start()

    def attach(self, rates: AdaptiveRates) -> None:
        self._rates = rates

    def _lag(self) -> float:
        return self._rates.decision_lag if self._rates is not None else 0.0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sleep_until(self, moment: float) -> bool:
        """Wait for ``moment`` of the clock; False when the exchange is closed."""
        return not self._stop.wait(max(0.0, moment - self.clock()))

    def _run(self) -> None:
        while True:
            rates = self._rates
            lag = rates.decision_lag if rates is not None else 0.0
            end = (math.floor((self.clock() - lag) / self.interval) + 1) * self.interval
            if not self._sleep_until(end + lag):
                return
            rates = self._rates
            if rates is None:
                continue
            slot = round(end / self.interval) - 1
            own, seconds = rates.take_slot(slot)
            fleet = self.pool(slot, own, end + rates.decision_lag + self.grace)
            if self._stop.is_set():
                return
            allotment = rates.apply_slot(own, seconds, fleet)
            if allotment is not None and rates.pooled:
                self._call(self.share_head_rates, slot, allotment, rates)

    def _call(self, call: Callable[..., object], *args: object) -> object:
        """``call(*args)``, or None when Redis failed (counted, logged once)."""
        try:
            result = call(*args)
        except redis.RedisError as exc:
            self.health.failed(exc)
            return None
        self.health.succeeded()
        return result

    def pool(self, slot: int, own: Traffic, read_at: float) -> Traffic | None:
        """Add the worker's counts of ``slot`` to the fleet's; at ``read_at``, the sum
        (None when Redis failed or the exchange closed meanwhile)."""
        name = f"{self.key}:{slot}"
        if own and self._call(self._add, name, own) is None:
            return None
        if not self._sleep_until(read_at):
            return None
        fields = self._call(self.client.hgetall, name)
        return None if fields is None else traffic_of(fields)

    def _add(self, name: str, own: Traffic) -> bool:
        pipe = self.client.pipeline(transaction=False)
        for (service, operation), (traces, spans) in list(own.rest.items()):
            pipe.hincrby(name, orjson.dumps(["t", service, operation]), traces)
            pipe.hincrby(name, orjson.dumps(["s", service, operation]), spans)
        if own.must_spans:
            pipe.hincrby(name, MUST, own.must_spans)
        if own.kept_spans:
            pipe.hincrby(name, KEPT, own.kept_spans)
        pipe.expire(name, int(self.interval * 3 + self._lag()) + 1)
        pipe.execute()
        return True

    def share_head_rates(self, slot: int, allotment: Allotment, rates: AdaptiveRates) -> bool:
        """Write the next head-sampling table when the last is ``head_interval`` old,
        once for the whole fleet."""
        raw = self.client.get(self.rates_key)
        last = orjson.loads(raw) if raw else None
        every = max(1, round(rates.head_interval / self.interval))
        if last is not None and last["interval"] == self.interval and slot < last["slot"] + every:
            return False
        expiry = max(30, int(self.interval * 3), int(rates.head_interval * 3))
        if not self.client.set(f"{self.key}:head-slot:{slot}", 1, nx=True, ex=expiry):
            return False  # another worker writes this slot's table
        previous = {(s, o): p for s, o, p in last["operations"]} if last else {}
        head = head_rates(previous, allotment)
        busiest = sorted(allotment.demand, key=allotment.demand.__getitem__, reverse=True)
        table = {
            "policy": self.policy,
            "slot": slot,
            "interval": self.interval,
            "updated": self.clock(),
            "default": allotment.default,
            "floor_traces_per_second": rates.floor_per_second,
            "operations": [[s, o, head[(s, o)]] for s, o in busiest[:HEAD_OPERATIONS_MAX]],
        }
        self.client.set(self.rates_key, orjson.dumps(table), ex=expiry)
        return True
