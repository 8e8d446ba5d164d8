"""What policies may share with the other workers, as protocols (Redis is elsewhere).

A worker hands its policies a ``SharedState`` through ``registry.BuildContext.shared``
(``pipeline.shared`` implements it over Redis); unit tests and single workers pass None,
and every policy then works on its own state. Both objects a ``SharedState`` returns are
used while a trace is decided, so neither may wait on the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pipeline.policies.adaptive_rates import AdaptiveRates

#: service.name -> span name -> bucket index -> count (see ``percentiles``)
Counts = dict[str, dict[str, dict[int, int]]]


class PercentileExchange(Protocol):
    """Where workers pool their duration counts."""

    def publish(self, counts: Counts) -> None:
        """Hand over a closed slot's counts."""

    def fleet(self) -> Counts | None:
        """The fleet's counts over the interval, or None when there are none to use."""


class Budget(Protocol):
    """A token bucket shared by the fleet: ``allow(n)`` takes n tokens if it can."""

    def allow(self, n: int) -> bool: ...


class TrafficExchange(Protocol):
    """Where the adaptive policy's workers pool each slot's traffic. It drives the
    slots: when one ends it takes the worker's counts (``AdaptiveRates.take_slot``), adds
    them to the fleet's, and hands the sum back (``apply_slot``), off the decision path."""

    clock: Callable[[], float]  # the wall clock whose slots every worker shares

    def attach(self, rates: AdaptiveRates) -> None:
        """Drive these rates from now on (a reloaded policy's replace the old ones)."""


class SharedState(Protocol):
    def percentile_exchange(
        self, policy: str, slot_seconds: float, slots: int
    ) -> PercentileExchange: ...

    def traffic_exchange(self, policy: str, interval: float) -> TrafficExchange: ...

    def budget(self, policy: str, kind: str, rate: float, burst: int) -> Budget:
        """The fleet's bucket of ``rate`` tokens a second, at most ``burst``, for one
        policy (``kind``: what a token is, e.g. "spans" or "bytes")."""
        ...

    def live_workers(self) -> int:
        """How many workers share the fleet's targets now (last counted; never waits)."""
        ...
