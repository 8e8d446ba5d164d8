"""latency_percentile's counts pooled in Redis: two workers see one percentile, a Redis
outage falls back to each worker's own counts, and the pool comes back with Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from pipeline.config.settings import Settings
from pipeline.local.run import free_port, wait_until
from pipeline.policies.percentiles import SlidingPercentiles, bucket_of
from pipeline.shared.health import REDIS_ERRORS, REDIS_FALLBACK, RedisHealth
from pipeline.shared.percentiles import FEATURE, RedisPercentileExchange
from pipeline.shared.state import RedisSharedState
from tests.integration.sampling_helpers import (
    decided_total,
    make_span,
    post,
    request_of,
    sampling_pipeline,
    worker_metrics,
)

MS = 1_000_000
KEY = ("checkout", "POST /orders")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FixedView:
    """An exchange whose fleet view is given (what a sync returned)."""

    def __init__(self, view: dict) -> None:
        self.view = view

    def publish(self, counts: dict) -> None:
        pass

    def fleet(self) -> dict:
        return self.view


def counts_of(durations_ms: list[float]) -> dict:
    buckets: dict[int, int] = {}
    for ms in durations_ms:
        index = bucket_of(int(ms * MS))
        buckets[index] = buckets.get(index, 0) + 1
    return {KEY[0]: {KEY[1]: buckets}}


def test_two_workers_pool_their_counts_into_one_percentile(stack: Settings):
    """Worker A sees only 10 ms durations and B only 1 s ones (as two partitions might
    early on): once pooled, both compare with the same p50, which neither has alone."""
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    wall = Clock()
    health = RedisHealth("latency_percentile", "own counts")
    exchanges = [
        RedisPercentileExchange(
            redis.Redis.from_url(stack.redis_url), prefix, 10.0, 6, health, clock=wall
        )
        for _ in range(2)
    ]
    try:
        a, b = exchanges
        a.sync(counts_of([10.0] * 100))
        pooled = b.sync(counts_of([1000.0] * 100))
        assert sum(pooled[KEY[0]][KEY[1]].values()) == 200
        local = SlidingPercentiles(50.0, 60.0, 10, Clock(), exchange=None)
        local.current.update(counts_of([10.0] * 100))
        assert local.threshold(KEY) == pytest.approx(10 * MS, rel=0.05)
        shared = SlidingPercentiles(50.0, 60.0, 10, Clock(), exchange=FixedView(pooled))
        shared.advance()
        assert 10 * MS < shared.threshold(KEY) <= 1000 * MS * 1.05
        # Slots age out: 7 slots later the pooled hash is out of the interval.
        wall.now += 70.0
        assert a.sync({}) == {}
        ttl = redis.Redis.from_url(stack.redis_url).ttl(f"{prefix}:{1_000_000 // 10 - 1}")
        assert 0 < ttl <= 81
    finally:
        for exchange in exchanges:
            exchange.close()


def test_closed_slots_reach_the_pool_through_the_background_thread(stack: Settings):
    """What the policy does: ``advance`` hands a closed slot over and later reads the
    fleet view the thread fetched; no call waits on Redis."""
    state = RedisSharedState(stack.redis_url, f"it-{uuid.uuid4().hex[:8]}")
    clock = Clock()
    try:
        exchange = state.percentile_exchange("slow", 1.0, 6)
        assert state.percentile_exchange("slow", 1.0, 6) is exchange  # kept across reloads
        percentiles = SlidingPercentiles(99.0, 6.0, 10, clock, exchange=exchange)
        for _ in range(50):
            percentiles.record(KEY, 20 * MS)
        clock.now += 1.0
        percentiles.advance()  # the slot closes: published, synced in the background
        assert wait_until(lambda: exchange.fleet() is not None, "pooled view", 10)
        percentiles.advance()
        assert percentiles.threshold(KEY) == pytest.approx(20 * MS, rel=0.05)
    finally:
        state.close()


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen]:
    """A redis-server of this test's own (the stack's stays up for the other tests)."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is part of the local stack"
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        assert wait_until(lambda: _answers(client), "private redis", 10)
        yield server
    finally:
        server.kill()
        server.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_an_outage_falls_back_to_own_counts_once_logged_and_the_pool_returns(tmp_path):
    port = free_port()
    feature = f"latency_percentile-{uuid.uuid4().hex[:6]}"  # a label of this test's own
    health = RedisHealth(feature, "own counts")
    client = redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
    exchange = RedisPercentileExchange(client, "it-outage", 1.0, 6, health)
    clock = Clock()
    percentiles = SlidingPercentiles(50.0, 6.0, 10, clock, exchange=exchange)

    def close_slot(duration_ms: float) -> None:
        for _ in range(20):
            percentiles.record(KEY, int(duration_ms * MS))
        clock.now += 1.0
        percentiles.advance()

    try:
        with private_redis(port) as server:
            close_slot(100.0)
            assert wait_until(lambda: exchange.fleet() is not None, "pooled view", 10)
            server.kill()
            server.wait()
            close_slot(100.0)
            assert wait_until(lambda: health.down, "fallback", 10)
            assert exchange.fleet() is None
            percentiles.advance()
            # Own counts decide meanwhile: the two local slots, 100 ms each.
            assert percentiles.threshold(KEY) == pytest.approx(100 * MS, rel=0.05)
            close_slot(100.0)  # a second failure: counted, not logged again
            assert wait_until(
                lambda: REDIS_ERRORS.labels(feature)._value.get() >= 2, "errors counted", 10
            )
            assert REDIS_FALLBACK.labels(feature)._value.get() == 1
        with private_redis(port):
            close_slot(100.0)
            assert wait_until(lambda: not health.down, "back to the pool", 10)
            assert REDIS_FALLBACK.labels(feature)._value.get() == 0
            assert exchange.fleet() is not None
    finally:
        exchange.close()


PERCENTILE_POLICIES = """\
decision_wait: 1s
policies:
  - name: slow-for-its-operation
    type: latency_percentile
    latency_percentile: {percentile: 99, interval: 6s, min_samples: 50, root_only: true}
"""
POLICY = "slow-for-its-operation"


def orders(count: int, duration_ms: int = 10):
    spans = [
        make_span(os.urandom(16), name="POST /orders", duration_ms=duration_ms)
        for _ in range(count)
    ]
    return request_of({"checkout": spans})


def kept_by_policy(workers) -> float:
    label = f'spansieve_sampler_traces_decided_total{{decision="sampled",policy="{POLICY}"}}'
    return sum(worker_metrics(settings).get(label, 0.0) for settings, _ in workers)


def test_two_worker_processes_pool_the_policys_counts_in_redis(pipeline_settings, tmp_path):
    """Real gateway and two workers: both add their counts to the policy's Redis hashes
    (more traces pooled than either worker decided), neither falls back, and a trace far
    slower than the operation's p99 is the only one the policy keeps."""
    with sampling_pipeline(pipeline_settings, tmp_path, PERCENTILE_POLICIES, workers=2) as (
        gateway,
        workers,
    ):
        client = redis.Redis.from_url(gateway.redis_url)
        pattern = f"{gateway.topic_prefix}:latency-percentile:{POLICY}:1s:*"

        def pooled() -> int:
            return sum(int(v) for key in client.scan_iter(pattern) for v in client.hvals(key))

        deadline = time.monotonic() + 90
        # A worker hands a slot over when it decides a trace after the slot ended, so
        # traces keep coming until the pool holds at least 300 of them.
        while pooled() < 300 and time.monotonic() < deadline:
            post(gateway, orders(50))
            time.sleep(1.0)
        decided = [decided_total(settings) for settings, _ in workers]
        assert all(count > 0 for count in decided)
        assert pooled() > max(decided)  # the pool holds both workers' counts
        for settings, _ in workers:
            fallback = worker_metrics(settings)
            assert fallback[f'spansieve_redis_fallback{{feature="{FEATURE}"}}'] == 0
        post(gateway, orders(1, duration_ms=2_000))
        assert wait_until(lambda: kept_by_policy(workers) == 1, "the slow trace kept", 30)
        post(gateway, orders(50))
        time.sleep(3)
        assert kept_by_policy(workers) == 1
