"""How many spans should have been sent by a given moment of a run (steady rate + burst)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.loadgen.topology import Burst


@dataclass(frozen=True, slots=True)
class RateProfile:
    """``rate`` spans/s, times ``burst.multiplier`` inside the burst window."""

    rate: float
    burst: Burst | None = None

    def rate_at(self, elapsed: float) -> float:
        return self.rate * (self.burst.factor(elapsed) if self.burst else 1.0)

    def due(self, elapsed: float) -> float:
        """Spans due in [0, elapsed): the integral of the rate, so pacing never drifts."""
        spans = self.rate * elapsed
        if self.burst is not None:
            inside = min(max(elapsed - self.burst.at, 0.0), self.burst.duration)
            spans += self.rate * (self.burst.multiplier - 1.0) * inside
        return spans
