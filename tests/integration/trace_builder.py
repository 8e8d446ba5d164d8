"""Traces built span by span for the query server's tests (API and web UI).

Times are milliseconds after the trace's start, which is ``start_ms`` after ``T0``, ten
minutes ago on a whole second: inside every default lookback.
"""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.wire.otlp import set_any_value

MS = 1_000_000
T0 = (time.time_ns() // 10**9 - 600) * 10**9


class TraceBuilder:
    """One trace as OTLP ``TracesData``: one resource per service, parents by key (the
    span's name unless ``key`` is given)."""

    def __init__(self, start_ms: int, trace_id: bytes | None = None) -> None:
        self.trace_id = trace_id or os.urandom(16)
        self.start = T0 + start_ms * MS
        self.data = TracesData()
        self.ids: dict[str, bytes] = {}
        self.spans_of_service: dict[str, Any] = {}

    @property
    def hex(self) -> str:
        return self.trace_id.hex()

    def span(
        self,
        service: str,
        name: str,
        parent: str | None = None,
        kind: int = Span.SPAN_KIND_SERVER,
        *,
        key: str | None = None,
        at: int = 0,
        ms: int = 10,
        error: bool = False,
        attributes: dict[str, Any] | None = None,
        resource: dict[str, Any] | None = None,
    ) -> Span:
        if service not in self.spans_of_service:
            resource_spans = self.data.resource_spans.add()
            for attribute, value in {"service.name": service, **(resource or {})}.items():
                set_any_value(resource_spans.resource.attributes.add(key=attribute).value, value)
            self.spans_of_service[service] = resource_spans.scope_spans.add().spans
        span_id = self.ids[key or name] = os.urandom(8)
        span = self.spans_of_service[service].add(
            trace_id=self.trace_id,
            span_id=span_id,
            parent_span_id=self.ids[parent] if parent else b"",
            name=name,
            kind=kind,
            start_time_unix_nano=self.start + at * MS,
            end_time_unix_nano=self.start + (at + ms) * MS,
        )
        if error:
            span.status.code, span.status.message = 2, "card declined"
        for attribute, value in (attributes or {}).items():
            set_any_value(span.attributes.add(key=attribute).value, value)
        return span

    def count(self) -> int:
        return len(self.ids)
