"""Span metrics and log records for the browser tests, beside their traces.

RED metrics: spans are counted by the real aggregator into one 15 s window a minute over
the last ``MINUTES`` minutes, encoded as the sampler sends them and turned into documents
by the sink's code, as tests/integration/test_query_spm.py does (same helpers), then
indexed into the monthly metrics indices of the private store. The span counts per window
are fixed, so the services page's figures can be checked exactly.

Log records: documents shaped as Data Prepper's OpenTelemetry logs pipeline writes them
(``traceId``, ``spanId``, ``time``, ``observedTime``, ``severityText``, ``severityNumber``,
``body``, ``serviceName``, ``log.attributes.*`` and ``resource.attributes.*`` with ``@``
for dots), in one index.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from opensearchpy import OpenSearch

from pipeline.metrics.red import RedAggregator
from pipeline.sink.metrics_documents import MetricDocument, metric_documents
from tests.unit.metrics.spans import span, trace
from tests.unit.sink.windows import MS, WINDOW, S, message, sid

MINUTES = 50  # windows with spans: one a minute, all inside the last hour for a while


@dataclass(frozen=True)
class Operation:
    """Server spans of one operation per window: ``calls`` of about ``ms`` (a slow wave of
    ±25 % over the windows), every ``fail_every``-th window one of them failed; exemplars
    point at ``trace_id``."""

    service: str
    name: str
    calls: int
    ms: int
    trace_id: bytes
    fail_every: int = 0


def window_starts(now_ns: int | None = None) -> list[int]:
    """Window starts (ns): one a minute back from the last whole 15 s window."""
    now = now_ns if now_ns is not None else time.time_ns()
    last = now - now % WINDOW - WINDOW
    return [last - minute * 60 * S for minute in range(MINUTES)]


def red_documents(operations: list[Operation], starts: list[int]) -> list[MetricDocument]:
    """The metrics documents the sink would write for these spans (one partition)."""
    aggregator = RedAggregator()
    n = 0
    for w, start in enumerate(starts):
        for op in operations:
            spans = []
            for call in range(op.calls):
                n += 1
                failed = bool(op.fail_every) and w % op.fail_every == 0 and call == 0
                ms = op.ms + round(op.ms * 0.25 * math.sin(w / 4)) + call
                end = start + S + call * 100 * MS
                spans.append(
                    span(op.service, op.name, "server", end - ms * MS, end,
                         status="error" if failed else "unset", span_id=sid(n),
                         trace_id=op.trace_id)
                )  # fmt: skip
            aggregator.add_trace(trace(*spans), op.trace_id, True)
    docs: list[MetricDocument] = []
    for closed in aggregator.close(max(starts) + WINDOW):
        key, value = message(closed, partition=0)
        docs.extend(metric_documents(value, key))
    return docs


def iso(unix_nanos: int) -> str:
    """ISO 8601 UTC with microseconds, as Data Prepper writes times."""
    seconds, nanos = divmod(unix_nanos, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos // 1000:06d}Z"


# OpenTelemetry severity numbers of the texts used here.
SEVERITIES = {"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17}


def log_document(
    trace_id: bytes,
    span_id: bytes | None,
    service: str,
    at_ns: int,
    severity: str,
    body: str,
    attributes: dict | None = None,
) -> dict:
    """One log record as Data Prepper's OTel logs pipeline indexes it."""
    doc = {
        "traceId": trace_id.hex(),
        "spanId": span_id.hex() if span_id else "",
        "time": iso(at_ns),
        "observedTime": iso(at_ns + 2 * MS),
        "severityText": severity,
        "severityNumber": SEVERITIES[severity],
        "body": body,
        "serviceName": service,
        "flags": 1,
        "droppedAttributesCount": 0,
        "schemaUrl": "",
        "resource.attributes.service@name": service,
    }
    for key, value in (attributes or {}).items():
        doc[f"log.attributes.{key.replace('.', '@')}"] = value
    return doc


def index_logs(client: OpenSearch, index: str, docs: list[dict]) -> None:
    lines = []
    for doc in docs:
        lines.append(orjson.dumps({"index": {"_index": index}}))
        lines.append(orjson.dumps(doc))
    answer = client.bulk(body=b"\n".join(lines) + b"\n", refresh="true")
    assert not answer["errors"], answer
