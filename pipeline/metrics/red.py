"""RED aggregation (rate, errors, duration) over every decided trace, kept or dropped.

The sampler calls :meth:`RedAggregator.add_trace` once per decided trace with the parsed
``TracesData``; every span is counted into the series

    (service.name, span.name, span.kind, status.code, *dimension values)

of the tumbling event-time window that holds the span's END time (``window_seconds``,
default 15 s). Per series and window: ``calls``, ``errors`` (spans with status ERROR), a
duration histogram in milliseconds (explicit buckets, the spanmetrics connector's
defaults; a duration equal to a bound falls in that bound's bucket, upper bound inclusive
as in OTLP) and its sum, plus up to ``exemplars_per_series`` exemplars.

Semantics borrowed from the OpenTelemetry Collector's spanmetrics connector:

* dimensions are looked up on the span's attributes, then on the resource's; a missing
  one takes its ``default``, and without a default it is left out of the series (``None``
  in the key, no attribute in OTLP);
* a span whose end precedes its start has duration 0;
* at most ``max_series_per_service`` series per service and window; the spans of any
  further new series of that service go to the service's single overflow series (OTLP
  attributes ``service.name`` and ``otel.metric.overflow=true``), counted in
  ``overflow_spans``.

Differences, on purpose: a resource without ``service.name`` is counted under
``unknown_service`` (the connector skips it; here every span counts); exemplars keep
distinct traces and prefer kept traces (a kept trace's exemplar replaces a dropped one's),
so a dashboard can jump to a trace that is actually stored.

Late spans (rule): a span whose window was already closed by :meth:`RedAggregator.close`
(window end <= the highest watermark closed so far) is not lost: it is counted into the
OLDEST OPEN window, the one that holds the watermark, and counted in that window's
``late_spans`` and in :attr:`RedAggregator.late_spans`. Totals stay exact; only the time
bucket of a late span shifts forward (by at most the lateness plus one window).

Pure: imports protobuf types only for annotations; no Kafka, Faust, OpenSearch or HTTP.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.wire.otlp import ResourceRun, any_value_text, flat_spans

if TYPE_CHECKING:
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

#: The spanmetrics connector's default explicit buckets, in milliseconds.
DEFAULT_BUCKETS_MS: tuple[float, ...] = (
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0,
    1000.0, 1400.0, 2000.0, 5000.0, 10000.0, 15000.0,
)  # fmt: skip
DEFAULT_WINDOW_SECONDS = 15.0
DEFAULT_MAX_SERIES_PER_SERVICE = 1000
DEFAULT_EXEMPLARS_PER_SERIES = 1
UNKNOWN_SERVICE = "unknown_service"
STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR

#: (service.name, span.name, span.kind, status.code, dimension values (None: absent))
SeriesKey = tuple[str, str, int, int, tuple[str | None, ...]]
#: (trace_id, span_id, span end unix nanos, duration ms, trace kept)
Exemplar = tuple[bytes, bytes, int, float, bool]


@dataclass(frozen=True)
class Dimension:
    """A configured dimension: an attribute name (span first, then resource), a default."""

    name: str
    default: str | None = None


@dataclass(frozen=True)
class RedConfig:
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    buckets_ms: tuple[float, ...] = DEFAULT_BUCKETS_MS
    dimensions: tuple[Dimension, ...] = ()
    max_series_per_service: int = DEFAULT_MAX_SERIES_PER_SERVICE
    exemplars_per_series: int = DEFAULT_EXEMPLARS_PER_SERIES

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        if int(self.window_seconds * 1e9) <= 0:
            raise ValueError("window_seconds is below one nanosecond")
        if list(self.buckets_ms) != sorted(set(self.buckets_ms)):
            raise ValueError("buckets_ms must be strictly increasing")
        if self.max_series_per_service < 1:
            raise ValueError("max_series_per_service must be >= 1")
        if self.exemplars_per_series < 0:
            raise ValueError("exemplars_per_series must be >= 0")
        names = [d.name for d in self.dimensions]
        reserved = {"service.name", "span.name", "span.kind", "status.code"}
        if len(set(names)) != len(names) or reserved & set(names):
            raise ValueError("dimension names must be unique and not a default dimension")


class SeriesStats:
    """The aggregate of one series in one window (mutable while the window is open)."""

    __slots__ = ("bucket_counts", "calls", "errors", "exemplars", "sum_ms")

    def __init__(self, n_buckets: int) -> None:
        self.calls = 0
        self.errors = 0
        self.sum_ms = 0.0
        self.bucket_counts = [0] * n_buckets
        self.exemplars: list[Exemplar] = []

    def __repr__(self) -> str:
        return (
            f"SeriesStats(calls={self.calls}, errors={self.errors}, sum_ms={self.sum_ms}, "
            f"bucket_counts={self.bucket_counts}, exemplars={len(self.exemplars)})"
        )


@dataclass
class RedWindow:
    """One window's aggregates; what :meth:`RedAggregator.close` returns."""

    start_unix_nanos: int
    end_unix_nanos: int
    dimension_names: tuple[str, ...]
    buckets_ms: tuple[float, ...]
    series: dict[SeriesKey, SeriesStats] = field(default_factory=dict)
    #: service.name -> its overflow series (spans of series beyond the limit)
    overflow: dict[str, SeriesStats] = field(default_factory=dict)
    overflow_spans: int = 0
    late_spans: int = 0
    #: service.name -> number of distinct (non-overflow) series
    series_per_service: dict[str, int] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.series.values()) + sum(
            s.calls for s in self.overflow.values()
        )


#: Resources seen, by their serialized bytes -> (service.name, resource dimension values);
#: cleared when it reaches this size (a deployment has far fewer distinct resources).
RESOURCE_CACHE_SIZE = 4096


class _OpenWindow:
    """An open window in the hot path's compact form (published as :class:`RedWindow`).

    A series is a plain list ``[bucket 0 .. bucket n-1, sum_ns, errors, free, kept_free,
    exemplars]`` (offsets relative to n = the number of buckets): ``calls`` is the sum of
    the bucket counts; ``errors`` is counted only for the overflow series (a regular
    series has its status code in its key); ``free`` is the number of empty exemplar slots
    and ``kept_free`` that plus the number of exemplars from dropped traces, so a span of a
    dropped (kept) trace needs exemplar work only if ``free`` (``kept_free``) is non-zero.
    """

    __slots__ = (
        "checkpointed",
        "late_spans",
        "overflow",
        "overflow_spans",
        "per_service",
        "series",
        "start",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.series: dict[SeriesKey, list] = {}
        self.overflow: dict[str, list] = {}
        self.overflow_spans = 0
        self.late_spans = 0
        self.per_service: dict[str, int] = {}
        # What the last checkpoint saw: series -> its counts, sum and errors (a copy of
        # the list's head), and the window's late and overflow span counts.
        self.checkpointed: dict = {}


class RedAggregator:
    """Tumbling event-time windows of RED series; see the module docstring."""

    def __init__(self, config: RedConfig | None = None) -> None:
        cfg = config or RedConfig()
        self.config = cfg
        self._win_ns = int(cfg.window_seconds * 1_000_000_000)
        self._bounds = tuple(float(b) for b in cfg.buckets_ms)
        # The same bounds in nanoseconds: the hot loop buckets and sums integer durations
        # (int bounds where exact: an int compares faster with an int than with a float).
        self._bounds_ns = tuple(
            int(ns) if (ns := b * 1e6).is_integer() else ns for b in self._bounds
        )
        self._n_buckets = len(self._bounds) + 1
        self._dim_names = tuple(d.name for d in cfg.dimensions)
        self._dim_pos = {d.name: i for i, d in enumerate(cfg.dimensions)}
        self._dim_set = frozenset(self._dim_pos)
        self._dim_defaults = tuple(d.default for d in cfg.dimensions)
        self._limit = cfg.max_series_per_service
        self._max_ex = cfg.exemplars_per_series
        self._windows: dict[int, _OpenWindow] = {}
        self._watermark: int | None = None  # highest watermark closed so far
        self._open_from = 0  # windows starting before this are closed
        self._checkpointed_state: tuple[int, int | None] = (0, None)
        self._resources: dict[bytes, tuple[str, tuple[str | None, ...], bool]] = {}
        #: spans counted, in total, late (into the oldest open window), into overflow series
        self.spans = 0
        self.late_spans = 0
        self.overflow_spans = 0

    # -- feeding ----------------------------------------------------------------------

    def add_trace(self, data: TracesData, trace_id: bytes, kept: bool) -> None:
        """Count every span of one decided trace (or of late spans of one trace)."""
        spans, runs = flat_spans(data.resource_spans)
        self.add_spans(spans, runs, trace_id, kept)

    def add_spans(
        self,
        spans: list[Span],
        runs: list[ResourceRun],
        trace_id: bytes,
        kept: bool,
        sides: tuple[list, list] | tuple[list, list, set] | None = None,
        codes: list[int] | None = None,
        times: list[tuple[int, int]] | None = None,
    ) -> None:
        """Count spans of one trace, given flat (see ``pipeline.wire.otlp.flat_spans``).

        ``codes`` and ``times``: the spans' status codes and (start, end) times, in span
        order, when the caller has them already (the policies' ``TraceView`` does: the
        status_code and latency policies read them), else read here.

        ``sides``: two lists that receive, in the same pass, the client-side (CLIENT,
        PRODUCER) and server-side (SERVER, CONSUMER) spans of resources that name their
        service, as ``(index in spans, service, kind, the resource's serialized bytes)``:
        what the service graph pairs (``ServiceGraph.add_sides``), so that it need not walk
        the spans again. An optional third member, a set, receives the named services.

        The hot loop: per resource run one serialization of the resource, looked up in a
        cache of (service.name, resource dimension values); per span a handful of field
        reads, one dict lookup by a tuple key into the window's series (plain lists), a
        bisect for the bucket; exemplar work only when the series may take one.
        """
        bounds = self._bounds_ns
        i_sum = self._n_buckets
        i_need = i_sum + 3 if kept else i_sum + 2  # kept_free / free
        resources = self._resources
        dim_pos = self._dim_pos
        dim_set = self._dim_set
        lo = hi = 0  # end times in [lo, hi) map to `window` (late if `late`)
        window: _OpenWindow | None = None
        late = False
        get = {}.get
        n_late = 0
        clients = servers = note_service = None
        if sides is not None:
            clients, servers = sides[0], sides[1]
            if len(sides) > 2:
                note_service = sides[2].add
        if codes is None:
            codes = [sp.status.code for sp in spans]
        if times is None:
            times = [(sp.start_time_unix_nano, sp.end_time_unix_nano) for sp in spans]
        for res, first, last in runs:
            info = resources.get(raw := res.SerializeToString())
            if info is None:
                info = self._resource(res, raw)
            service, base_dims, named = info
            collect = named and clients is not None
            if collect and note_service is not None:
                note_service(service)
            for i in range(first, last):  # indexing beats zipping three slices
                sp = spans[i]
                start, end = times[i]
                d = end - start
                if d < 0:
                    d = 0  # an end before the start counts as no time
                dims = base_dims
                if dim_set:
                    found: dict[int, str] | None = None
                    for kv in sp.attributes[:]:
                        if (k := kv.key) in dim_set:
                            j = dim_pos[k]
                            if found is None:
                                found = {}
                            elif j in found:
                                continue  # first one wins
                            v = kv.value
                            found[j] = v.string_value or any_value_text(v)
                    if found is not None:
                        vals = list(base_dims)
                        for j, text in found.items():
                            vals[j] = text
                        dims = tuple(vals)
                if not lo <= end < hi:
                    window, lo, hi, late = self._locate(end)
                    get = window.series.get
                if late:
                    window.late_spans += 1  # type: ignore[union-attr]
                    n_late += 1
                kind = sp.kind
                if collect and kind > 1:  # 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER
                    side = clients if kind == 3 or kind == 4 else servers
                    side.append((i, service, kind, raw))  # type: ignore[union-attr]
                key = (service, sp.name, kind, codes[i], dims)
                st = get(key)
                if st is None:
                    st = self._new_series(window, key)  # type: ignore[arg-type]
                st[bisect_left(bounds, d)] += 1  # a bound's value is in its bucket
                st[i_sum] += d
                if st[i_need]:
                    self._exemplar(st, trace_id, sp.span_id, end, d / 1e6, kept)
        self.spans += len(spans)
        if n_late:
            self.late_spans += n_late

    def _resource(self, res: Resource, raw: bytes) -> tuple[str, tuple[str | None, ...], bool]:
        """service.name, the resource's dimension values (defaults applied) and whether
        the resource names its service; cached."""
        service = UNKNOWN_SERVICE
        dim_pos = self._dim_pos
        vals: list[str | None] = [None] * len(self._dim_names)
        for kv in res.attributes:
            k = kv.key
            if k == "service.name":
                service = kv.value.string_value or UNKNOWN_SERVICE
            else:
                i = dim_pos.get(k)
                if i is not None and vals[i] is None:
                    vals[i] = any_value_text(kv.value)
        base = tuple(
            v if v is not None else d for v, d in zip(vals, self._dim_defaults, strict=True)
        )
        if len(self._resources) >= RESOURCE_CACHE_SIZE:
            self._resources.clear()
        info = self._resources[raw] = (service, base, service != UNKNOWN_SERVICE)
        return info

    def _locate(self, end: int) -> tuple[_OpenWindow, int, int, bool]:
        """The window counting a span ending at ``end``, the range of ends it takes, late."""
        win_ns = self._win_ns
        ws = end - end % win_ns
        open_from = self._open_from
        if ws < open_from:  # closed: into the oldest open window (open_from is aligned)
            ws, lo, hi, late = open_from, 0, open_from, True
        else:
            lo, hi, late = ws, ws + win_ns, False
        w = self._windows.get(ws)
        if w is None:
            w = self._windows[ws] = _OpenWindow(ws)
        return w, lo, hi, late

    def _series_list(self) -> list:
        free = self._max_ex
        return [0] * self._n_buckets + [0, 0, free, free, []]

    def _new_series(self, window: _OpenWindow, key: SeriesKey) -> list:
        service = key[0]
        per = window.per_service
        count = per.get(service, 0)
        if count < self._limit:
            per[service] = count + 1
            st = window.series[key] = self._series_list()
            return st
        # Over the limit: the span goes to the service's overflow series. The key is not
        # remembered, so every span of an over-limit series takes this path (and is counted).
        window.overflow_spans += 1
        self.overflow_spans += 1
        st = window.overflow.get(service)
        if st is None:
            st = window.overflow[service] = self._series_list()
        if key[3] == STATUS_CODE_ERROR:
            st[self._n_buckets + 1] += 1
        return st

    def _exemplar(
        self, st: list, trace_id: bytes, span_id: bytes, end: int, dur_ms: float, kept: bool
    ) -> None:
        """Offer a span as an exemplar: distinct traces, a kept trace replaces a dropped one."""
        nb = self._n_buckets
        ex: list[Exemplar] = st[nb + 4]
        for e in ex:
            if e[0] == trace_id:
                return
        max_ex = self._max_ex
        if len(ex) < max_ex:
            ex.append((trace_id, span_id, end, dur_ms, kept))
        elif kept:
            for j, e in enumerate(ex):
                if not e[4]:
                    ex[j] = (trace_id, span_id, end, dur_ms, True)
                    break
            else:
                return
        else:
            return
        free = max_ex - len(ex)
        st[nb + 2] = free
        st[nb + 3] = free + sum(1 for e in ex if not e[4])

    # -- publishing -------------------------------------------------------------------

    def _stats(self, st: list, errors: int | None) -> SeriesStats:
        nb = self._n_buckets
        s = SeriesStats(nb)
        s.bucket_counts = st[:nb]
        s.calls = sum(s.bucket_counts)
        s.errors = s.calls if errors is None else errors
        s.sum_ms = st[nb] / 1e6
        s.exemplars = list(st[nb + 4])
        return s

    def _publish(self, w: _OpenWindow) -> RedWindow:
        nb = self._n_buckets
        stats = self._stats
        out = RedWindow(w.start, w.start + self._win_ns, self._dim_names, self._bounds)
        out.series = {
            key: stats(st, None if key[3] == STATUS_CODE_ERROR else 0)
            for key, st in w.series.items()
        }
        out.overflow = {svc: stats(st, st[nb + 1]) for svc, st in w.overflow.items()}
        out.overflow_spans = w.overflow_spans
        out.late_spans = w.late_spans
        out.series_per_service = dict(w.per_service)
        return out

    # -- closing ----------------------------------------------------------------------

    def close(self, watermark_unix_nanos: int) -> list[RedWindow]:
        """Return and forget every window whose end is <= the watermark, oldest first.

        A watermark lower than one already closed changes nothing (watermarks only advance).
        """
        if self._watermark is not None and watermark_unix_nanos <= self._watermark:
            return []
        self._watermark = watermark_unix_nanos
        # Windows starting at or after this stay open: end = start + win > watermark.
        wm = watermark_unix_nanos
        self._open_from = max(self._open_from, wm - wm % self._win_ns)
        win_ns = self._win_ns
        done = sorted(ws for ws in self._windows if ws + win_ns <= wm)
        return [self._publish(self._windows.pop(ws)) for ws in done]

    # -- checkpoints (exact counts across a change of owner) ---------------------------

    def checkpoint(self) -> dict | None:
        """What changed in the open windows since the last checkpoint, as JSON-able data.

        A new owner of the partition sums every checkpoint it finds (see :meth:`restore`)
        to rebuild the open windows exactly. Series whose counts did not move are left
        out; a changed series is described by its count increments and its current
        exemplars. Returns None when nothing changed.
        """
        nb = self._n_buckets
        head = nb + 2  # bucket counts, sum, errors
        windows = []
        for ws, w in self._windows.items():
            seen = w.checkpointed
            changed = []
            for group, table in ((0, w.series), (1, w.overflow)):
                for key, st in table.items():
                    now = st[:head]
                    before = seen.get((group, key))
                    if before == now:
                        continue
                    delta = (
                        now if before is None else [a - b for a, b in zip(now, before, strict=True)]
                    )
                    exemplars = [[t.hex(), s.hex(), e, d, k] for t, s, e, d, k in st[nb + 4]]
                    changed.append([group, list(key) if group == 0 else key, delta, exemplars])
                    seen[(group, key)] = now
            late, overflow = seen.get("spans", (0, 0))
            if changed or late != w.late_spans or overflow != w.overflow_spans:
                windows.append([ws, w.late_spans - late, w.overflow_spans - overflow, changed])
                seen["spans"] = (w.late_spans, w.overflow_spans)
        state = (self._open_from, self._watermark)
        if not windows and state == self._checkpointed_state:
            return None
        self._checkpointed_state = state
        return {"open_from": self._open_from, "watermark": self._watermark, "windows": windows}

    def restore(self, checkpoints: Sequence[dict]) -> None:
        """Add up checkpoints (oldest first) into the open windows of this aggregator.

        Windows the checkpoints' owners had already closed (before the latest
        ``open_from``) are skipped: they were sent. The result counts as checkpointed, so
        the next :meth:`checkpoint` holds only what is counted after this.
        """
        for cp in checkpoints:
            self._open_from = max(self._open_from, cp["open_from"])
            if cp["watermark"] is not None:
                self._watermark = max(self._watermark or 0, cp["watermark"])
        nb = self._n_buckets
        head = nb + 2
        for cp in checkpoints:
            for ws, late, overflow, changed in cp["windows"]:
                if ws < self._open_from:
                    continue
                w = self._windows.get(ws)
                if w is None:
                    w = self._windows[ws] = _OpenWindow(ws)
                w.late_spans += late
                w.overflow_spans += overflow
                for group, raw_key, delta, exemplars in changed:
                    if group == 0:
                        service, name, kind, code, dims = raw_key
                        key = (service, name, kind, code, tuple(dims))
                        table = w.series
                    else:
                        key = raw_key
                        table = w.overflow
                    st = table.get(key)
                    if st is None:
                        st = table[key] = self._series_list()
                        if group == 0:
                            w.per_service[service] = w.per_service.get(service, 0) + 1
                    for i, value in enumerate(delta):
                        st[i] += value
                    ex = [
                        (bytes.fromhex(t), bytes.fromhex(s), e, d, k) for t, s, e, d, k in exemplars
                    ]
                    st[nb + 4] = ex
                    free = self._max_ex - len(ex)
                    st[nb + 2] = free
                    st[nb + 3] = free + sum(1 for e in ex if not e[4])
        self._checkpointed_state = (self._open_from, self._watermark)
        for w in self._windows.values():
            w.checkpointed = {(0, k): st[:head] for k, st in w.series.items()}
            w.checkpointed.update({(1, k): st[:head] for k, st in w.overflow.items()})
            w.checkpointed["spans"] = (w.late_spans, w.overflow_spans)

    def open_windows(self) -> list[RedWindow]:
        """The windows still open (for inspection: snapshots, not removed), oldest first."""
        return [self._publish(self._windows[ws]) for ws in sorted(self._windows)]

    @property
    def watermark(self) -> int | None:
        return self._watermark


def dimensions(spec: Sequence[str | tuple[str, str | None] | Dimension]) -> tuple[Dimension, ...]:
    """Build dimensions from names, (name, default) pairs or :class:`Dimension` objects."""
    out: list[Dimension] = []
    for d in spec:
        if isinstance(d, Dimension):
            out.append(d)
        elif isinstance(d, str):
            out.append(Dimension(d))
        else:
            out.append(Dimension(d[0], d[1]))
    return tuple(out)
