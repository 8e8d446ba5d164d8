"""Reads Prometheus text from a component's /metrics (benchmarks and tests)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[str, float]:
    """Sample name (with labels, e.g. 'x{a="b"}') -> value; label-less sums under the name."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            values[name] = sample.value
            values[sample.name + ":sum"] = values.get(sample.name + ":sum", 0.0) + sample.value
    return values
