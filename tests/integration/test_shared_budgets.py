"""One budget for the fleet: two workers spend one Redis bucket within ±10 %, and fall
back to half each while Redis is away, then share again."""

from __future__ import annotations

import threading
import time
import uuid

import redis

from pipeline.config.settings import Settings
from pipeline.local.run import free_port, wait_until
from pipeline.shared.budgets import Fleet, LeasedBudget
from pipeline.shared.health import RedisHealth
from tests.integration.test_shared_percentiles import private_redis

RATE = 2_000  # tokens a second, for the whole fleet
BURST = 2_000
TRACE = 10  # tokens a trace takes


def spend(budget: LeasedBudget, seconds: float) -> int:
    """Ask for a trace's tokens as fast as traces could come; the tokens granted."""
    granted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if budget.allow(TRACE):
            granted += TRACE
        time.sleep(0.0005)
    return granted


def spend_together(budgets: list[LeasedBudget], seconds: float) -> list[int]:
    results = [0] * len(budgets)

    def run(i: int) -> None:
        results[i] = spend(budgets[i], seconds)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(budgets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def two_workers(url: str, key: str, health: RedisHealth) -> list[LeasedBudget]:
    budgets = []
    for n in range(2):
        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        fleet = Fleet(client, f"{key}:workers", member=f"worker-{n}")
        budgets.append(LeasedBudget(client, f"{key}:bucket", RATE, BURST, health, fleet))
    return budgets


def both_counted(budgets: list[LeasedBudget]) -> bool:
    """Each worker's last beat counted two live workers (beats come every 5 s)."""
    return all(b.fleet.count == 2 for b in budgets)


def test_two_workers_spend_one_budget_within_ten_percent(stack: Settings):
    key = f"it-{uuid.uuid4().hex[:8]}"
    health = RedisHealth(f"budgets-{key}", "fair share")
    budgets = two_workers(stack.redis_url, key, health)
    try:
        assert wait_until(lambda: both_counted(budgets), "both workers counted", 15)
        seconds = 4.0
        granted = spend_together(budgets, seconds)
        budget = BURST + RATE * seconds  # the bucket starts full
        assert all(g > 0 for g in granted), granted
        assert 0.9 * budget <= sum(granted) <= 1.1 * budget, (granted, budget)
        assert not health.down
    finally:
        for b in budgets:
            b.close()


def test_a_redis_outage_falls_back_to_a_fair_share_and_sharing_resumes():
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    key = f"it-{uuid.uuid4().hex[:8]}"
    health = RedisHealth(f"budgets-{key}", "fair share")
    with private_redis(port) as server:
        budgets = two_workers(url, key, health)
        try:
            assert wait_until(lambda: both_counted(budgets), "both workers counted", 15)
            server.kill()
            server.wait()
            assert wait_until(lambda: all(b.falling_back for b in budgets), "fallback", 10)
            assert health.down
            seconds = 3.0
            granted = spend_together(budgets, seconds)
            # Each has half the budget: together one budget, well within twice it.
            budget = BURST + RATE * seconds
            assert sum(granted) <= 2 * budget
            assert 0.9 * budget <= sum(granted) <= 1.1 * budget, (granted, budget)
            with private_redis(port):
                assert wait_until(lambda: not any(b.falling_back for b in budgets), "back", 10)
                assert not health.down
                assert sum(spend_together(budgets, 1.0)) > 0
        finally:
            for b in budgets:
                b.close()
