"""Retention of the span-metrics store: delete monthly indices past ``metrics_retention_days``.

A monthly index ``<base>-YYYY.MM`` holds windows that start within that month (UTC), so its
newest possible document starts just before the first instant of the next month. The
index is deleted once that instant is more than the retention ago: every window is kept at
least ``metrics_retention_days``, and at most about a month longer.

Core APIs only (``_cat/indices``, delete index), no Index State Management plugin: the
sink role's group leader runs :func:`run_metrics_lifecycle` on a timer, on every cluster.
The decision is made from the index *name*, not its creation date, so an index created
late (a replayed old window) is judged by the month it holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.store.metrics_indices import index_month, metrics_index_base

log = structlog.get_logger(__name__)

DAY = 86_400


def metrics_retention_seconds(settings: Settings) -> float:
    return settings.metrics_retention_days * DAY


def month_end(year: int, month: int) -> float:
    """Unix seconds of the first instant after the month (UTC)."""
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def is_expired(base: str, index: str, retention: float, now: float) -> bool:
    """Whether the monthly index's newest possible window is older than ``retention`` s."""
    month = index_month(base, index)
    return month is not None and now - month_end(*month) > retention


def expired_metrics_indices(
    base: str, indices: Iterable[str], retention: float, now: float
) -> list[str]:
    """The monthly metrics indices among ``indices`` that are past the retention."""
    return sorted(name for name in indices if is_expired(base, name, retention, now))


def metrics_indices(client: OpenSearch, settings: Settings) -> list[str]:
    """Every index of the metrics pattern on the cluster (open or closed)."""
    rows = client.cat.indices(
        index=f"{metrics_index_base(settings)}-*", format="json", h="index", expand_wildcards="all"
    )
    return sorted(row["index"] for row in rows)


def run_metrics_lifecycle(
    client: OpenSearch, settings: Settings, now: float | None = None
) -> list[str]:
    """One retention pass: delete the expired monthly indices; returns their names."""
    now = time.time() if now is None else now
    base = metrics_index_base(settings)
    names = metrics_indices(client, settings)
    expired = expired_metrics_indices(base, names, metrics_retention_seconds(settings), now)
    if expired:
        client.indices.delete(index=",".join(expired), ignore_unavailable=True)
        log.info("expired span-metrics indices deleted", indices=expired)
    return expired
