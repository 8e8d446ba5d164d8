"""The worker's shared state, connected on first use: a worker whose policies share
nothing never imports the Redis client (9 MiB of RSS) nor opens a connection."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.shared.budgets import LeasedBudget
    from pipeline.shared.percentiles import RedisPercentileExchange
    from pipeline.shared.state import RedisSharedState
    from pipeline.shared.traffic import RedisTrafficExchange


class LazySharedState:
    """``policies.shared.SharedState``; builds a ``RedisSharedState`` when first asked."""

    def __init__(self, redis_url: str, key_prefix: str) -> None:
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.state: RedisSharedState | None = None

    def connected(self) -> RedisSharedState:
        if self.state is None:
            from pipeline.shared.state import RedisSharedState

            self.state = RedisSharedState(self.redis_url, self.key_prefix)
        return self.state

    def percentile_exchange(
        self, policy: str, slot_seconds: float, slots: int
    ) -> RedisPercentileExchange:
        return self.connected().percentile_exchange(policy, slot_seconds, slots)

    def traffic_exchange(self, policy: str, interval: float) -> RedisTrafficExchange:
        return self.connected().traffic_exchange(policy, interval)

    def budget(self, policy: str, kind: str, rate: float, burst: int) -> LeasedBudget:
        return self.connected().budget(policy, kind, rate, burst)

    def live_workers(self) -> int:
        return self.connected().live_workers()

    def close(self) -> None:
        if self.state is not None:
            self.state.close()
            self.state = None
