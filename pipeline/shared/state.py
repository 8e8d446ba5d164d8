"""What a worker hands its policies to share state with the other workers: one Redis
client; per policy, an exchange that pools percentiles or traffic, or a leased budget
that spends a fleet's bucket (all kept across policy reloads)."""

from __future__ import annotations

import contextlib

import redis

from pipeline.shared.budgets import FEATURE as BUDGETS
from pipeline.shared.budgets import Fleet, LeasedBudget
from pipeline.shared.health import RedisHealth
from pipeline.shared.percentiles import FEATURE as PERCENTILES
from pipeline.shared.percentiles import RedisPercentileExchange
from pipeline.shared.traffic import FEATURE as ADAPTIVE
from pipeline.shared.traffic import RedisTrafficExchange

# A Redis call that takes longer than this fails (and the policy falls back); it runs
# on a background thread, never while a trace is decided.
TIMEOUT_SECONDS = 2.0


class RedisSharedState:
    """``policies.shared.SharedState`` over Redis; keys start with ``key_prefix``."""

    def __init__(self, redis_url: str, key_prefix: str, member: str | None = None) -> None:
        self.member = member  # this worker in the fleet's set; None: host and process
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        self.key_prefix = key_prefix
        self._percentiles_health = RedisHealth(
            PERCENTILES, "each worker's own duration percentiles"
        )
        self._exchanges: dict[tuple[str, float, int], RedisPercentileExchange] = {}
        self._traffic_health = RedisHealth(
            ADAPTIVE, "each worker's own traffic and its share of the target"
        )
        self._traffic: dict[tuple[str, float], RedisTrafficExchange] = {}
        self._budgets_health = RedisHealth(BUDGETS, "each worker's fair share of the budget")
        self._budgets: dict[tuple[str, str], LeasedBudget] = {}
        self._fleet: Fleet | None = None

    def percentile_exchange(
        self, policy: str, slot_seconds: float, slots: int
    ) -> RedisPercentileExchange:
        key = (policy, slot_seconds, slots)
        exchange = self._exchanges.get(key)
        if exchange is None:
            exchange = self._exchanges[key] = RedisPercentileExchange(
                self.client,
                f"{self.key_prefix}:latency-percentile:{policy}:{slot_seconds:g}s",
                slot_seconds,
                slots,
                self._percentiles_health,
            )
        return exchange

    def traffic_exchange(self, policy: str, interval: float) -> RedisTrafficExchange:
        exchange = self._traffic.get((policy, interval))
        if exchange is None:
            exchange = self._traffic[(policy, interval)] = RedisTrafficExchange(
                self.client, self.key_prefix, policy, interval, self._traffic_health
            )
        return exchange

    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = Fleet(self.client, f"{self.key_prefix}:workers", self.member)
        return self._fleet

    def live_workers(self) -> int:
        """The live workers last counted (a background thread beats and counts)."""
        fleet = self.fleet()
        fleet.keep_beating(self._budgets_health)
        return fleet.count

    def budget(self, policy: str, kind: str, rate: float, burst: int) -> LeasedBudget:
        budget = self._budgets.get((policy, kind))
        if budget is not None:
            budget.configure(rate, burst)
            return budget
        budget = self._budgets[(policy, kind)] = LeasedBudget(
            self.client,
            f"{self.key_prefix}:budget:{policy}:{kind}",
            rate,
            burst,
            self._budgets_health,
            self.fleet(),
        )
        return budget

    def close(self) -> None:
        for exchange in self._exchanges.values():
            exchange.close()
        self._exchanges.clear()
        for traffic in self._traffic.values():
            traffic.close()
        self._traffic.clear()
        for budget in self._budgets.values():
            budget.close()
        self._budgets.clear()
        if self._fleet is not None:
            with contextlib.suppress(redis.RedisError):  # else its beats expire
                self._fleet.leave()
        self.client.close()
