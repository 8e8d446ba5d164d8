"""Clock-skew adjustment of a Jaeger trace, as Jaeger's query service does it.

Spans from different hosts are stamped by different clocks, so a child can appear to
start before its parent or end after it. Walking each trace tree from its roots:

* a child on the **same host** as its parent keeps its timestamps relative to the
  parent, so it only inherits the parent's shift;
* a child on **another host** (``host.id``, else ``host.ip``, else ``host.name`` of its
  process) in a synchronous call that already fits inside its parent gets no shift of
  its own; one that is
  longer than its parent is moved only so that it does not start before the parent; any
  other is centred in its parent (the network latency either way is unknown, half each
  way is the best guess);
* a **messaging** child (a ``consumer`` span, or any child of a ``producer`` span) gets
  no shift of its own: it may rightly start after its parent ended, and centring it in
  the parent would invent a timing (Jaeger's adjuster does not tell these apart);
* a shift moves the span's start and its logs together, never its duration, and the
  span carries a warning naming the shift;
* a shift larger than the allowed maximum is not applied; the warning says so.

Jaeger's own query service leaves this off unless ``--query.max-clock-skew-adjustment``
is set; ``spansieve query`` applies it with ``SPANSIEVE_QUERY_MAX_CLOCK_SKEW`` (5 s by
default, 0 turns it off), and ``raw=true`` on a request shows the stored times.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

JSON = dict[str, Any]

HOST_KEYS = ("host.id", "host.ip", "host.name")  # the first one a process has is its host
KIND_TAG = "span.kind"


def process_host(process: JSON) -> str | None:
    """The host a Jaeger process ran on, from its tags; None when they do not say."""
    tags = {tag["key"]: tag["value"] for tag in process.get("tags") or []}
    return next((str(tags[key]) for key in HOST_KEYS if tags.get(key) not in (None, "")), None)


def _kind(span: JSON) -> str:
    return next((t["value"] for t in span.get("tags") or [] if t["key"] == KIND_TAG), "")


def _asynchronous(child: JSON, parent: JSON) -> bool:
    """A message handed over, not a call waited for: the child may end after its parent."""
    return _kind(child) == "consumer" or _kind(parent) == "producer"


def _parent_id(span: JSON) -> str | None:
    """The span's CHILD_OF parent within its own trace (links do not count)."""
    for reference in span.get("references") or []:
        if reference["refType"] == "CHILD_OF" and reference["traceID"] == span["traceID"]:
            return reference["spanID"]
    return None


def skew_delta(
    child_start: int, child_duration: int, parent_start: int, parent_duration: int
) -> int:
    """Microseconds to add to a child's start (on another host) so it sits in its parent."""
    parent_end = parent_start + parent_duration
    if child_start >= parent_start and child_start + child_duration <= parent_end:
        return 0
    if child_duration > parent_duration:
        return max(parent_start - child_start, 0)
    return parent_start + (parent_duration - child_duration) // 2 - child_start


def _warn(span: JSON, message: str) -> None:
    span["warnings"] = [*(span.get("warnings") or []), message]


def _shift(span: JSON, micros: int) -> None:
    span["startTime"] += micros
    for log in span.get("logs") or []:
        log["timestamp"] += micros


def adjust_clock_skew(trace: JSON, max_adjustment_us: int) -> JSON:
    """Shift the spans of a Jaeger trace (in place, and returned) as described above;
    ``max_adjustment_us`` <= 0 leaves the trace as it is."""
    if max_adjustment_us <= 0:
        return trace
    spans: list[JSON] = trace["spans"]
    by_id = {span["spanID"]: span for span in spans}
    children: dict[str, list[JSON]] = defaultdict(list)
    roots = []
    for span in spans:
        parent = _parent_id(span)
        if parent is not None and parent in by_id and parent != span["spanID"]:
            children[parent].append(span)
        else:
            roots.append(span)
    hosts = {pid: process_host(process) for pid, process in trace["processes"].items()}
    shifts: dict[str, int] = {}  # span id -> its total shift, once its start is final
    stack: list[tuple[JSON, JSON | None]] = [(root, None) for root in roots]
    while stack:  # iterative: deep traces would exhaust Python's recursion limit
        span, parent = stack.pop()
        if span["spanID"] in shifts:  # a repeated span id; spans in a cycle are never reached
            continue
        inherited = shifts[parent["spanID"]] if parent is not None else 0
        own = 0
        if parent is not None:
            here, there = hosts.get(span["processID"]), hosts.get(parent["processID"])
            if (
                here is not None
                and there is not None
                and here != there
                and not _asynchronous(span, parent)
            ):
                own = skew_delta(
                    span["startTime"] + inherited,
                    span["duration"],
                    parent["startTime"],
                    parent["duration"],
                )
                if abs(own) > max_adjustment_us:
                    _warn(
                        span,
                        f"clock skew of {own} µs against the parent span's host exceeds "
                        f"the maximum adjustment of {max_adjustment_us} µs; not adjusted",
                    )
                    own = 0
        total = inherited + own
        if total:
            _shift(span, total)
            _warn(span, f"timestamps shifted by {total} µs to correct clock skew")
        shifts[span["spanID"]] = total
        stack.extend((child, span) for child in children.get(span["spanID"], ()))
    return trace
