"""The latency_percentile policy's duration counts, pooled by all workers in Redis.

Each worker's ``SlidingPercentiles`` hands over a slot's counts when the slot closes
(``publish``, which only queues them). A background thread then adds them to the Redis
hash of that slot, named by wall-clock slot number so that every worker's counts of the
same seconds meet in one hash:

    <prefix>:latency-percentile:<policy name>:<slot length>s:<slot number>
        field [service, operation, bucket] (JSON) -> count

expiring once the slot has left every worker's interval,

and, in the same round trip, reads the hashes of the interval's slots, whose sum is the
fleet's view (``fleet``). A decision never waits on Redis: it reads the last view. When a
call fails, the view is dropped, so the policy falls back to the worker's own counts
(``RedisHealth`` logs it once and counts it), and the next closed slot tries again.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable

import orjson
import redis

from pipeline.policies.shared import Counts
from pipeline.shared.health import RedisHealth

FEATURE = "latency_percentile"
_STOP = object()


class RedisPercentileExchange:
    """One policy's pooled counts; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        slot_seconds: float,
        slots: int,
        health: RedisHealth,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.key = key
        self.slot_seconds = slot_seconds
        self.slots = slots
        self.health = health
        self.clock = clock
        self._view: Counts | None = None
        # Closed slots waiting for the thread; when Redis is slower than slots close,
        # the oldest waiting slot is dropped (its counts then only miss from the pool).
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name=f"percentiles {key}", daemon=True)
        self._thread.start()

    def publish(self, counts: Counts) -> None:
        while True:
            try:
                self._queue.put_nowait(counts)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def fleet(self) -> Counts | None:
        return self._view

    def close(self) -> None:
        self.publish(_STOP)  # type: ignore[arg-type]
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            counts = self._queue.get()
            if counts is _STOP:
                return
            try:
                self._view = self.sync(counts)
            except redis.RedisError as exc:
                self._view = None
                self.health.failed(exc)
            else:
                self.health.succeeded()

    def sync(self, counts: Counts) -> Counts:
        """Add a closed slot's counts to the pool; return the pool over the interval."""
        closed = int(self.clock() // self.slot_seconds) - 1
        pipe = self.client.pipeline(transaction=False)
        name = f"{self.key}:{closed}"
        if counts:
            for service, operations in counts.items():
                for operation, buckets in operations.items():
                    for index, count in buckets.items():
                        pipe.hincrby(name, orjson.dumps([service, operation, index]), count)
            pipe.expire(name, int(self.slot_seconds * (self.slots + 2)) + 1)
        first = closed - self.slots + 1
        for slot in range(first, closed + 1):
            pipe.hgetall(f"{self.key}:{slot}")
        replies = pipe.execute()
        pooled: Counts = {}
        for hash_ in replies[-self.slots :]:
            for field, value in hash_.items():
                service, operation, index = orjson.loads(field)
                buckets = pooled.setdefault(service, {}).setdefault(operation, {})
                buckets[index] = buckets.get(index, 0) + int(value)
        return pooled
