"""Whether Redis answers, per feature: a fallback is logged once, counted, and ended."""

from __future__ import annotations

import threading

import structlog
from prometheus_client import Counter, Gauge

log = structlog.get_logger(__name__)

REDIS_ERRORS = Counter(
    "spansieve_redis_errors_total",
    "Redis calls that failed (timeout, refused, error reply), by feature",
    ["feature"],
)
REDIS_FALLBACK = Gauge(
    "spansieve_redis_fallback",
    "1 while a feature works without Redis (each worker on its own state), by feature",
    ["feature"],
)


class RedisHealth:
    """Tracks one feature's Redis calls: the first failure of an outage is logged with
    what the feature does instead; later failures only count; the first success after
    that is logged as the return to shared state."""

    def __init__(self, feature: str, fallback: str) -> None:
        self.feature = feature
        self.fallback = fallback
        self.down = False
        self._lock = threading.Lock()
        REDIS_FALLBACK.labels(feature).set(0)

    def failed(self, error: Exception) -> None:
        REDIS_ERRORS.labels(self.feature).inc()
        with self._lock:
            if self.down:
                return
            self.down = True
        REDIS_FALLBACK.labels(self.feature).set(1)
        log.warning(
            "redis unreachable; falling back",
            feature=self.feature,
            fallback=self.fallback,
            error=str(error),
        )

    def succeeded(self) -> None:
        with self._lock:
            if not self.down:
                return
            self.down = False
        REDIS_FALLBACK.labels(self.feature).set(0)
        log.info("redis reachable again; shared state in use", feature=self.feature)
