"""A token bucket with the semantics of Go's golang.org/x/time/rate.Limiter.AllowN.

The collector's rate_limiting and bytes_limiting policies are such a limiter: ``rate``
tokens per second, at most ``burst`` tokens, full at the start. ``allow(n)``:

* refills ``elapsed_seconds * rate`` tokens since the last successful take (capped at
  ``burst``; a clock that went backwards refills nothing);
* grants when ``n <= burst`` and the bucket holds ``n`` tokens (a deficit worth less than
  one nanosecond of refill counts as none, as Go's integer Duration does); only a grant
  changes the state;
* with ``rate == 0`` the burst itself is a one-time allowance that grants consume.

Time comes from an injected clock (seconds, float) so tests are deterministic; it is
converted to integer nanoseconds like Go's ``time.Time``.

``scope: fleet`` (spansieve's option of rate_limiting and bytes_limiting): the budget is
the whole fleet's, a bucket in Redis spent from local leases (``pipeline.shared.budgets``)
instead of one bucket per worker; see :func:`bucket_for`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from pipeline.policies.shared import Budget, SharedState

Scope = Literal["worker", "fleet"]


def scope_field() -> Scope:
    """The ``scope`` key of a budget policy's section."""
    return Field(  # type: ignore[return-value]
        "worker",
        description=(
            "worker: each worker has the whole budget (the collector's way, per instance); "
            "fleet: all workers share one budget through Redis"
        ),
    )


def bucket_for(
    scope: Scope,
    shared: SharedState | None,
    policy: str,
    kind: str,
    rate: float,
    burst: int,
    clock: Callable[[], float],
) -> Budget:
    """The policy's bucket: its own, or with ``scope: fleet`` the fleet's (a worker's own
    when it shares no state, e.g. ``spansieve policies check`` or a unit test)."""
    if scope == "fleet" and shared is not None:
        return shared.budget(policy, kind, rate, burst)
    return TokenBucket(rate, burst, clock)


class TokenBucket:
    __slots__ = ("burst", "clock", "last_ns", "rate", "tokens")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = float(rate)
        self.burst = int(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.last_ns: int | None = None

    def allow(self, n: int) -> bool:
        if self.rate == 0:
            if self.burst >= n:
                self.burst -= n
                return True
            return False
        now = round(self.clock() * 1e9)
        last = self.last_ns if self.last_ns is not None else now
        if now < last:
            last = now
        tokens = self.tokens + (now - last) / 1e9 * self.rate
        if tokens > self.burst:
            tokens = float(self.burst)
        tokens -= n
        wait_ns = int(-tokens / self.rate * 1e9) if tokens < 0 else 0
        if n <= self.burst and wait_ns <= 0:
            self.last_ns = now
            self.tokens = tokens
            return True
        return False
