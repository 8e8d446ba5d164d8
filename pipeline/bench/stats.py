"""Quantiles of measured samples, the same way in every bench stage."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def quantile(samples: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0 < q < 1) of the samples, by percent; NaN when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]
