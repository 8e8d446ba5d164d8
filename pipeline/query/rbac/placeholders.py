"""Spans of services outside a principal's role, shown as placeholders.

A trace that crosses services keeps its shape for a reader who may see only some of
them: each foreign span keeps its ids, its parent and links (ids only) and its timing, so
the timeline and the critical path still add up, but its service, name, kind, status,
attributes, events and scope are withheld. The span documents are masked before any
shaping, so every answer built from them (Jaeger JSON, OTLP/JSON, trace summaries) shows
the same placeholders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]

HIDDEN = "(hidden)"  # service and span name of a placeholder
# Fields a placeholder keeps: identity, position in the trace and timing.
KEPT = ("traceId", "spanId", "parentSpanId", "startTime", "endTime", "durationInNanos")
SPAN_WARNING = "span of a service outside your role: name and attributes withheld"


def placeholder(doc: JSON) -> JSON:
    kept = {name: doc[name] for name in KEPT if name in doc}
    kept["serviceName"] = kept["name"] = HIDDEN
    links = doc.get("links")
    if links:
        kept["links"] = [{"traceId": link["traceId"], "spanId": link["spanId"]} for link in links]
    return kept


def masked(documents: list[JSON], visible: Callable[[str], bool]) -> tuple[list[JSON], int]:
    """The documents with foreign spans replaced by placeholders, and how many were."""
    shown: list[JSON] = []
    hidden = 0
    for doc in documents:
        if visible(doc.get("serviceName", "")):
            shown.append(doc)
        else:
            shown.append(placeholder(doc))
            hidden += 1
    return shown, hidden


def trace_warning(hidden: int) -> str:
    return (
        f"{hidden} span{'s' if hidden != 1 else ''} of services outside your role shown as "
        "placeholders (timing kept, names and attributes withheld)"
    )


def mark_jaeger_trace(trace: JSON, hidden: int) -> JSON:
    """Say so in a Jaeger trace's ``warnings`` and on each placeholder span's."""
    if not hidden:
        return trace
    hidden_processes = {
        pid for pid, process in trace["processes"].items() if process["serviceName"] == HIDDEN
    }
    for span in trace["spans"]:
        if span["processID"] in hidden_processes:
            span["warnings"] = [SPAN_WARNING]
    trace["warnings"] = [trace_warning(hidden)]
    return trace
