"""OpenSearch layout of the span-metrics store: monthly indices and their template.

Span metrics (RED series, service-graph edges) are kept far longer than traces
(``metrics_retention_days``, 90 by default, against 7 for spans), as one small document
per series and window. They go to one index per calendar month (UTC) of the window start,
``<store_index_prefix>spansieve-metrics-YYYY.MM``: written by the metrics writer without an
alias (a document's month picks its index, so a late or replayed window lands where its
month's other windows are), created on first write from the template installed here, and
deleted whole by ``pipeline.store.metrics_lifecycle`` once the month is past retention.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.store.indices import SCHEMAS

METRICS_INDEX = "spansieve-metrics"
METRICS_TEMPLATE_FILE = SCHEMAS / "spansieve-metrics-template.json"
_MONTH = re.compile(r"-(\d{4})\.(\d{2})$")


def metrics_index_base(settings: Settings) -> str:
    """``<prefix>spansieve-metrics``: the monthly indices are ``<base>-YYYY.MM``."""
    return f"{settings.store_index_prefix}{METRICS_INDEX}"


def metrics_template_name(settings: Settings) -> str:
    return metrics_index_base(settings)


def month_suffix(unix_nanos: int) -> str:
    """``YYYY.MM`` of a time (UTC)."""
    return datetime.fromtimestamp(unix_nanos // 1_000_000_000, UTC).strftime("%Y.%m")


def metrics_index(base: str, unix_nanos: int) -> str:
    """The monthly index a window starting at ``unix_nanos`` belongs to."""
    return f"{base}-{month_suffix(unix_nanos)}"


def index_month(base: str, index: str) -> tuple[int, int] | None:
    """(year, month) of ``<base>-YYYY.MM``; None for any other name."""
    if not index.startswith(f"{base}-"):
        return None
    match = _MONTH.search(index)
    if match is None or match.start() != len(base):
        return None
    year, month = int(match.group(1)), int(match.group(2))
    return (year, month) if 1 <= month <= 12 else None


def metrics_template(settings: Settings) -> dict:
    """The metrics index template for these settings (pattern, replicas, refresh)."""
    body = orjson.loads(METRICS_TEMPLATE_FILE.read_bytes())
    body["index_patterns"] = [f"{metrics_index_base(settings)}-*"]
    index_settings = body["template"]["settings"]
    index_settings["index.number_of_replicas"] = settings.store_replicas
    index_settings["index.refresh_interval"] = settings.store_refresh_interval
    return body


def install_metrics_template(client: OpenSearch, settings: Settings) -> str:
    """Put the metrics index template (idempotent); returns its name.

    Existing monthly indices keep their mapping; the next month's index takes a changed one.
    """
    name = metrics_template_name(settings)
    client.indices.put_index_template(name=name, body=metrics_template(settings))
    return name
