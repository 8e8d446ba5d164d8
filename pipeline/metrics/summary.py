"""RED messages from the red-metrics topic -> a per-service summary over a sliding span.

The pure half of ``spansieve metrics top`` (the Kafka consumer and the table are in
``pipeline.local.metrics_top``). A message is one ``ExportMetricsServiceRequest`` as
:mod:`pipeline.metrics.otlp` builds it (DELTA temporality, one closed window of one
partition): :func:`decode_red_message` turns it into :class:`WindowDelta` objects, one per
window bounds found on its data points, each holding per ``service.name``

* ``calls``: the sum of the ``traces.span.metrics.calls`` points;
* ``errors``: the part of those whose ``status.code`` is ``STATUS_CODE_ERROR`` (the
  overflow series has no status code: its calls count, its errors cannot be seen here);
* the ``traces.span.metrics.duration`` points merged into one :class:`Histogram` (bucket
  counts added; points with other bounds are re-bucketed onto the union of the bounds,
  each bucket's count kept under its own upper bound) and their sum in ms.

:class:`RedSummary` accumulates windows over a sliding EVENT-TIME span: windows of every
partition with the same bounds are added together, and only windows starting at or after
``newest window end - span`` are kept (the newest window itself always is). A window that
is older than that when it arrives is ignored; a message seen twice (same key, same bytes,
as a redelivery gives) is counted once. Figures per service:

* rate = calls / covered seconds, the covered span being from the earliest kept window's
  start to the newest kept window's end (windows with no spans are not published, so a gap
  is time without calls); a partition whose newest window is not closed yet makes the
  newest window's rate a little low;
* error % = 100 * errors / calls;
* p50 / p95 / p99 from the merged histogram, as Prometheus' ``histogram_quantile``
  estimates them: linear interpolation inside the bucket holding the rank, the first
  bucket starting at 0; a rank in the +Inf bucket gives the highest finite bound.

Pure: protobuf classes only; no Kafka, Faust, OpenSearch or HTTP library.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from pipeline.metrics.otlp import CALLS, DURATION
from pipeline.wire.metrics_json import MessageDecodeError, decode_any

NANOS = 1_000_000_000
ERROR_STATUS = "STATUS_CODE_ERROR"
DEFAULT_SPAN_SECONDS = 60.0
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
#: What the rows can be sorted by (``errors`` sorts by error %, then by error count).
SORT_KEYS = ("rate", "errors", "p99", "name")


# -- quantiles -------------------------------------------------------------------------


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The q-quantile (0 <= q <= 1) of an explicit-bounds histogram, or None when empty.

    ``counts`` has one more entry than ``bounds``: the last is the +Inf bucket. Estimated
    as Prometheus' ``histogram_quantile`` does: the bucket holding rank ``q * total`` is
    found on the cumulative counts and the value interpolated linearly between its lower
    and upper bound (the first bucket's lower bound is 0, unless its upper bound is <= 0,
    which is then returned); a rank in the +Inf bucket returns the highest finite bound;
    q = 0 gives the lower bound of the first non-empty bucket. None without observations
    or without a finite bound.
    """
    if not 0.0 <= q <= 1.0:  # NaN fails this too
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    if len(counts) != len(bounds) + 1:
        raise ValueError("counts must have one entry more than bounds (the +Inf bucket)")
    total = sum(counts)
    if total == 0 or not bounds:
        return None
    rank = q * total
    below = 0  # observations in the buckets before bucket i
    i = 0
    while not (counts[i] and below + counts[i] >= rank):  # q = 0: first non-empty bucket
        below += counts[i]
        i += 1
    if i == len(bounds):
        return float(bounds[-1])
    upper = float(bounds[i])
    if i == 0 and upper <= 0:
        return upper
    lower = 0.0 if i == 0 else float(bounds[i - 1])
    return lower + (upper - lower) * (rank - below) / counts[i]


# -- decoded deltas --------------------------------------------------------------------


@dataclass
class Histogram:
    """Explicit bounds (ms) and bucket counts (one more than the bounds: +Inf last)."""

    bounds: tuple[float, ...]
    counts: list[int]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1:
            raise ValueError("counts must have one entry more than bounds (the +Inf bucket)")

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, bounds: Sequence[float], counts: Sequence[int]) -> None:
        """Add another histogram's counts (re-bucketed onto the union if bounds differ)."""
        bounds = tuple(float(b) for b in bounds)
        if len(counts) != len(bounds) + 1:
            raise ValueError("counts must have one entry more than bounds (the +Inf bucket)")
        if bounds != self.bounds:
            union = tuple(sorted(set(self.bounds) | set(bounds)))
            if union != self.bounds:
                self.counts = _rebucket(self.bounds, self.counts, union)
                self.bounds = union
            counts = _rebucket(bounds, counts, union)
        for i, c in enumerate(counts):
            self.counts[i] += c

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.bounds, self.counts)

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts))


def _rebucket(bounds: Sequence[float], counts: Sequence[int], union: Sequence[float]) -> list[int]:
    """Counts over ``bounds`` moved onto ``union`` (a superset): same upper bound each."""
    position = {b: i for i, b in enumerate(union)}
    out = [0] * (len(union) + 1)
    for i, c in enumerate(counts):
        out[position[bounds[i]] if i < len(bounds) else len(union)] += c
    return out


@dataclass
class ServiceDelta:
    """One service's calls, errors and duration histogram in one window (or several)."""

    calls: int = 0
    errors: int = 0
    sum_ms: float = 0.0
    histogram: Histogram | None = None

    def add_histogram(self, bounds: Sequence[float], counts: Sequence[int], total: float) -> None:
        self.sum_ms += total
        if self.histogram is None:
            self.histogram = Histogram(tuple(float(b) for b in bounds), [0] * (len(bounds) + 1))
        self.histogram.add(bounds, counts)

    def merge(self, other: ServiceDelta) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.sum_ms += other.sum_ms
        if other.histogram is not None:
            if self.histogram is None:
                self.histogram = other.histogram.copy()
            else:
                self.histogram.add(other.histogram.bounds, other.histogram.counts)


@dataclass
class WindowDelta:
    """The RED deltas of one window (event-time bounds in unix nanos), per service.name."""

    start_unix_nanos: int
    end_unix_nanos: int
    services: dict[str, ServiceDelta] = field(default_factory=dict)

    def service(self, name: str) -> ServiceDelta:
        delta = self.services.get(name)
        if delta is None:
            delta = self.services[name] = ServiceDelta()
        return delta


def _string_attributes(attributes) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in attributes if kv.value.HasField("string_value")}


def decode_red_message(value: bytes) -> list[WindowDelta]:
    """One red-metrics message -> its windows' per-service deltas, oldest window first.

    Only the RED metrics (``traces.span.metrics.calls`` / ``.duration``) in DELTA
    temporality are read; anything else in the request is skipped. The service is the
    resource's ``service.name`` (else the data point's). Raises ValueError when the bytes
    are not an ``ExportMetricsServiceRequest``.
    """
    try:
        request = decode_any(value)  # protobuf or OTLP/JSON
    except MessageDecodeError as exc:
        raise ValueError(f"not an OTLP metrics request: {exc}") from None
    windows: dict[tuple[int, int], WindowDelta] = {}

    def delta(point, resource_service: str | None) -> ServiceDelta:
        bounds = (point.start_time_unix_nano, point.time_unix_nano)
        window = windows.get(bounds)
        if window is None:
            window = windows[bounds] = WindowDelta(*bounds)
        attributes = _string_attributes(point.attributes)
        service = resource_service or attributes.get("service.name") or "unknown_service"
        return window.service(service)

    for rm in request.resource_metrics:
        resource_service = _string_attributes(rm.resource.attributes).get("service.name")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if metric.name == CALLS and kind == "sum":
                    if metric.sum.aggregation_temporality != DELTA:
                        continue
                    for point in metric.sum.data_points:
                        calls = (
                            point.as_int
                            if point.WhichOneof("value") != "as_double"
                            else round(point.as_double)
                        )
                        d = delta(point, resource_service)
                        d.calls += calls
                        status = _string_attributes(point.attributes).get("status.code")
                        if status == ERROR_STATUS:
                            d.errors += calls
                elif metric.name == DURATION and kind == "histogram":
                    if metric.histogram.aggregation_temporality != DELTA:
                        continue
                    for point in metric.histogram.data_points:
                        if len(point.bucket_counts) != len(point.explicit_bounds) + 1:
                            continue  # no buckets (count and sum only): nothing to estimate
                        delta(point, resource_service).add_histogram(
                            point.explicit_bounds, point.bucket_counts, point.sum
                        )
    return [windows[b] for b in sorted(windows)]


# -- the sliding summary ---------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSummary:
    """One row of ``metrics top``: a service's figures over the summary's span."""

    service: str
    calls: int
    errors: int
    rate: float  # calls per second of covered event time
    error_pct: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


class RedSummary:
    """Windows of the red-metrics topic over the last ``span_seconds`` of event time."""

    def __init__(self, span_seconds: float = DEFAULT_SPAN_SECONDS) -> None:
        if not span_seconds > 0:
            raise ValueError("span_seconds must be > 0")
        self.span_ns = int(span_seconds * NANOS)
        self._windows: dict[tuple[int, int], WindowDelta] = {}
        self._seen: dict[tuple[bytes, bytes], int] = {}  # (key, digest) -> window start
        self.messages = 0  # messages that added something
        self.duplicates = 0  # messages seen before (same key and bytes)
        self.invalid = 0  # messages that did not decode
        self.too_old = 0  # windows that arrived already outside the span

    # -- feeding -----------------------------------------------------------------------

    def add_message(self, value: bytes | None, key: bytes | None = None) -> bool:
        """Count one message; False when it was a duplicate, invalid, empty or too old."""
        if not value:
            return False
        digest = (key or b"", hashlib.blake2b(value, digest_size=16).digest())
        if key is not None and digest in self._seen:
            self.duplicates += 1
            return False
        try:
            windows = decode_red_message(value)
        except ValueError:
            self.invalid += 1
            return False
        if not windows:
            return False
        if key is not None:
            self._seen[digest] = min(w.start_unix_nanos for w in windows)
        added = [self.add_window(window) for window in windows]
        if not any(added):
            return False
        self.messages += 1
        return True

    def add_window(self, window: WindowDelta) -> bool:
        """Add one window's deltas (merged with the same window of other partitions)."""
        newest = self.newest_end_unix_nanos
        if (
            newest is not None
            and window.end_unix_nanos <= newest
            and window.start_unix_nanos < self._horizon(newest)
        ):
            self.too_old += 1
            return False
        bounds = (window.start_unix_nanos, window.end_unix_nanos)
        held = self._windows.get(bounds)
        if held is None:
            held = self._windows[bounds] = WindowDelta(*bounds)
        for service, delta in window.services.items():
            held.service(service).merge(delta)
        self._prune()
        return True

    def _horizon(self, newest_end: int) -> int:
        """Windows starting before this are out of the span (the newest one never is)."""
        newest_start = max(s for s, e in self._windows if e == newest_end)
        return min(newest_end - self.span_ns, newest_start)

    def _prune(self) -> None:
        newest = self.newest_end_unix_nanos
        if newest is None:
            return
        horizon = self._horizon(newest)
        for bounds in [b for b in self._windows if b[0] < horizon]:
            del self._windows[bounds]
        for seen in [k for k, start in self._seen.items() if start < horizon]:
            del self._seen[seen]

    # -- reading -----------------------------------------------------------------------

    @property
    def newest_end_unix_nanos(self) -> int | None:
        return max((e for _, e in self._windows), default=None)

    @property
    def oldest_start_unix_nanos(self) -> int | None:
        return min((s for s, _ in self._windows), default=None)

    @property
    def windows(self) -> int:
        """Distinct windows (by bounds) in the span."""
        return len(self._windows)

    @property
    def covered_seconds(self) -> float:
        """Event time from the earliest kept window's start to the newest one's end."""
        newest, oldest = self.newest_end_unix_nanos, self.oldest_start_unix_nanos
        if newest is None or oldest is None:
            return 0.0
        return (newest - oldest) / NANOS

    def totals(self) -> dict[str, ServiceDelta]:
        """Per service, the deltas of every window in the span added up."""
        out: dict[str, ServiceDelta] = {}
        for bounds in sorted(self._windows):
            for service, delta in self._windows[bounds].services.items():
                out.setdefault(service, ServiceDelta()).merge(delta)
        return out

    def summaries(self, sort: str = "rate") -> list[ServiceSummary]:
        """One row per service, sorted (see :func:`sort_summaries`)."""
        seconds = self.covered_seconds
        rows = [summarize(service, delta, seconds) for service, delta in self.totals().items()]
        return sort_summaries(rows, sort)


def summarize(service: str, delta: ServiceDelta, seconds: float) -> ServiceSummary:
    """A service's row from its accumulated deltas over ``seconds`` of event time."""
    h = delta.histogram
    observed = h.count if h is not None else 0
    return ServiceSummary(
        service=service,
        calls=delta.calls,
        errors=delta.errors,
        rate=delta.calls / seconds if seconds > 0 else 0.0,
        error_pct=100.0 * delta.errors / delta.calls if delta.calls else 0.0,
        p50_ms=h.quantile(0.5) if h is not None else None,
        p95_ms=h.quantile(0.95) if h is not None else None,
        p99_ms=h.quantile(0.99) if h is not None else None,
        mean_ms=delta.sum_ms / observed if observed else None,
    )


def sort_summaries(rows: Iterable[ServiceSummary], by: str = "rate") -> list[ServiceSummary]:
    """Rows by ``rate`` (highest first), ``errors`` (highest error %, then most errors),
    ``p99`` (slowest first, services without a latency last) or ``name`` (A to Z); ties
    are broken by name."""
    rows = sorted(rows, key=lambda r: r.service)  # stable: the tie-break
    if by == "name":
        return rows
    if by == "rate":
        return sorted(rows, key=lambda r: -r.rate)
    if by == "errors":
        return sorted(rows, key=lambda r: (-r.error_pct, -r.errors))
    if by == "p99":
        return sorted(rows, key=lambda r: (r.p99_ms is None, -(r.p99_ms or 0.0)))
    raise ValueError(f"unknown sort key {by!r}; expected one of {', '.join(SORT_KEYS)}")
