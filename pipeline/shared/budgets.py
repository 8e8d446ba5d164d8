"""Token buckets shared by all workers: one bucket in Redis, spent from local leases.

The fleet's bucket (``rate`` tokens a second, at most ``burst``) lives in one Redis hash,
refilled and taken from atomically by a Lua script on Redis's own clock. A worker never
asks Redis while deciding: a background thread leases tokens in chunks of about
``LEASE_SECONDS`` of the worker's share of the rate (``rate / live workers``), and
``allow(n)`` spends from what the worker holds. A trace that finds too few tokens is
refused (as the collector's bucket refuses it) and the next lease asks for at least its
size, so a trace larger than a chunk can pass once the bucket has the tokens.

What a lease costs the fleet: a worker holds at most about one chunk it has not spent, so
up to ``rate x LEASE_SECONDS`` tokens (a quarter of a second's budget) sit with workers
whose traffic stopped.

Live workers: each worker beats into a sorted set (member: worker id, score: time of the
beat), from its lease threads or, for policies that only read the count (adaptive), from
a thread of its own (``Fleet.keep_beating``, whose failures count under the budgets'
feature); workers silent for ``WORKER_TTL_SECONDS`` no longer count.

Redis unreachable: the worker falls back to a bucket of its own holding its fair share
(``rate`` and ``burst`` divided by the live workers last counted, 1 if never counted),
logged once and counted (``RedisHealth``); the thread keeps trying once a second, and the
first lease that succeeds ends the fallback.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import redis

from pipeline.policies.limiter import TokenBucket
from pipeline.shared.health import RedisHealth

FEATURE = "budgets"
LEASE_SECONDS = 0.25
RETRY_SECONDS = 1.0  # between attempts while Redis is unreachable
WORKER_TTL_SECONDS = 15.0
BEAT_SECONDS = 5.0

# KEYS[1]: the bucket's hash; ARGV: rate, burst, tokens wanted, expiry (s). Returns the
# tokens granted: as many as wanted if the bucket holds them, else all it holds.
LEASE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
end
local grant = math.floor(math.min(want, tokens))
if grant < 0 then
  grant = 0
end
tokens = tokens - grant
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return grant
"""


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Fleet:
    """The workers alive now, counted from their beats in a sorted set."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        member: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.key = key
        self.member = member or worker_id()
        self.clock = clock
        self.count = 1  # until Redis has told
        self._beaten_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> int:
        """Beat (at most every ``BEAT_SECONDS``) and return the live workers' count."""
        now = self.clock()
        if self._beaten_at is not None and now - self._beaten_at < BEAT_SECONDS:
            return self.count
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.key, {self.member: now})
        pipe.zremrangebyscore(self.key, "-inf", now - WORKER_TTL_SECONDS)
        pipe.zcard(self.key)
        pipe.expire(self.key, int(WORKER_TTL_SECONDS * 2))
        self.count = max(1, int(pipe.execute()[2]))
        self._beaten_at = now
        return self.count

    def leave(self) -> None:
        self._stop.set()
        self.client.zrem(self.key, self.member)

    def keep_beating(self, health: RedisHealth) -> None:
        """Beat from a thread of its own, for readers of ``count`` that lease nothing."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.beat()
                except redis.RedisError as exc:
                    health.failed(exc)
                else:
                    health.succeeded()
                self._stop.wait(BEAT_SECONDS)

        self._thread = threading.Thread(target=run, name=f"beats {self.key}", daemon=True)
        self._thread.start()


class LeasedBudget:
    """``policies.shared.Budget`` over the fleet's bucket in Redis; see the module."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate: float,
        burst: int,
        health: RedisHealth,
        fleet: Fleet,
    ) -> None:
        self.client = client
        self.key = key
        self.rate = float(rate)
        self.burst = int(burst)
        self.health = health
        self.fleet = fleet
        self._lease = client.register_script(LEASE_SCRIPT)
        self._lock = threading.Lock()
        self._held = 0  # tokens leased, not spent
        self._need = 0  # the largest request refused since the last lease
        self._fallback: TokenBucket | None = None  # the fair share while Redis is away
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"budget {key}", daemon=True)
        self._thread.start()

    @property
    def falling_back(self) -> bool:
        return self._fallback is not None

    def configure(self, rate: float, burst: int) -> None:
        """New limits (a reloaded policy file); the bucket in Redis follows at once."""
        self.rate, self.burst = float(rate), int(burst)

    def allow(self, n: int) -> bool:
        fallback = self._fallback
        if fallback is not None:
            return fallback.allow(n)
        with self._lock:
            if self._held >= n:
                self._held -= n
                return True
            if n > self._need:
                self._need = n
        self._wake.set()
        return False

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pause = LEASE_SECONDS / 2
            try:
                self.top_up()
            except redis.RedisError as exc:
                self.health.failed(exc)
                if self._fallback is None:
                    share = self.fleet.count
                    self._fallback = TokenBucket(self.rate / share, max(1, self.burst // share))
                pause = RETRY_SECONDS
            else:
                self._fallback = None
                self.health.succeeded()
            self._wake.wait(pause)
            self._wake.clear()

    def top_up(self) -> int:
        """Lease what brings the held tokens up to a chunk (or the largest refused
        request); returns the tokens granted."""
        workers = self.fleet.beat()
        chunk = max(1, int(self.rate * LEASE_SECONDS / workers))
        with self._lock:
            want = max(chunk, self._need) - self._held
            self._need = 0
        if want <= 0:
            return 0
        expiry = int(self.burst / self.rate) + 60 if self.rate > 0 else 86_400
        granted = int(self._lease(keys=[self.key], args=[self.rate, self.burst, want, expiry]))
        if granted:
            with self._lock:
                self._held += granted
        return granted
