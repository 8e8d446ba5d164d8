"""What a worker hands its policies to share state with the other workers: one Redis
client, and one exchange per policy that pools (kept across policy reloads)."""

from __future__ import annotations

import redis

from pipeline.shared.health import RedisHealth
from pipeline.shared.percentiles import FEATURE as PERCENTILES
from pipeline.shared.percentiles import RedisPercentileExchange

# A Redis call that takes longer than this fails (and the policy falls back); it runs
# on a background thread, never while a trace is decided.
TIMEOUT_SECONDS = 2.0


class RedisSharedState:
    """``policies.percentiles.SharedState`` over Redis; keys start with ``key_prefix``."""

    def __init__(self, redis_url: str, key_prefix: str) -> None:
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        self.key_prefix = key_prefix
        self._percentiles_health = RedisHealth(
            PERCENTILES, "each worker's own duration percentiles"
        )
        self._exchanges: dict[tuple[str, float, int], RedisPercentileExchange] = {}

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

    def close(self) -> None:
        for exchange in self._exchanges.values():
            exchange.close()
        self._exchanges.clear()
        self.client.close()
