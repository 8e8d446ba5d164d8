"""Service dependencies from stored spans: each span joined to its parent in its trace.

Jaeger computes these links with a separate batch job; here they come from the spans of
the asked window at request time (the span reader caps how many). A call from service A
to service B is a span of B whose parent span is A's; a span whose parent is in its own
service is a call of the service to itself, counted as Jaeger counts it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

JSON = dict[str, Any]


def service_calls(spans: Iterable[JSON]) -> list[JSON]:
    """``[{parent, child, callCount}]`` over spans with ``traceId``, ``spanId``,
    ``parentSpanId`` and ``serviceName``; most calls first, then by name.

    A parent outside the given spans (outside the window, or not kept) links nothing.
    """
    services: dict[str, dict[str, str]] = defaultdict(dict)  # trace -> span -> service
    children: list[tuple[str, str, str]] = []  # (trace, parent span, child service)
    for span in spans:
        trace = span["traceId"]
        services[trace][span["spanId"]] = span.get("serviceName", "")
        if span.get("parentSpanId"):
            children.append((trace, span["parentSpanId"], span.get("serviceName", "")))
    calls: Counter[tuple[str, str]] = Counter()
    for trace, parent_span, child in children:
        parent = services[trace].get(parent_span)
        if parent is not None:
            calls[parent, child] += 1
    ordered = sorted(calls.items(), key=lambda item: (-item[1], item[0]))
    return [
        {"parent": parent, "child": child, "callCount": count} for (parent, child), count in ordered
    ]
