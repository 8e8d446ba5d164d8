"""RED aggregation: windows, counts, buckets, dimensions, overflow, exemplars, late spans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.metrics.red import (
    DEFAULT_BUCKETS_MS,
    UNKNOWN_SERVICE,
    Dimension,
    RedAggregator,
    RedConfig,
    RedWindow,
    SeriesStats,
)
from tests.unit.metrics.spans import span, tid, trace

S = 1_000_000_000
MS = 1_000_000
SERVER, CLIENT = 2, 3
UNSET, OK, ERROR = 0, 1, 2
T0 = 1_699_999_995 * S  # a multiple of 15 s
assert T0 % (15 * S) == 0


def one(service: str, name: str, end_ns: int, dur_ms: float, **kw) -> object:
    return span(service, name, kw.pop("kind", "server"), end_ns - int(dur_ms * MS), end_ns, **kw)


def series(w: RedWindow, service: str, name: str, kind=SERVER, code=UNSET, dims=()) -> SeriesStats:
    return w.series[(service, name, kind, code, dims)]


def test_defaults() -> None:
    cfg = RedConfig()
    assert cfg.window_seconds == 15
    assert cfg.max_series_per_service == 1000
    assert cfg.exemplars_per_series == 1
    assert cfg.dimensions == ()
    assert DEFAULT_BUCKETS_MS == (
        2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000,
    )  # fmt: skip
    assert cfg.buckets_ms == DEFAULT_BUCKETS_MS


@pytest.mark.parametrize(
    "kw",
    [
        {"window_seconds": 0},
        {"buckets_ms": (5.0, 2.0)},
        {"buckets_ms": (2.0, 2.0)},
        {"max_series_per_service": 0},
        {"exemplars_per_series": -1},
        {"dimensions": (Dimension("a"), Dimension("a"))},
        {"dimensions": (Dimension("span.name"),)},
    ],
)
def test_config_rejects(kw: dict) -> None:
    with pytest.raises(ValueError):
        RedConfig(**kw)


def test_exact_counts_over_several_windows() -> None:
    agg = RedAggregator()
    # window 0 = [T0, T0+15s), window 1 = [T0+15s, T0+30s), window 2 = [T0+30s, T0+45s)
    agg.add_trace(
        trace(
            one("api", "GET /", T0 + 1 * S, 1.0),  # bucket 0 (<= 2)
            one("api", "GET /", T0 + 2 * S, 2.0),  # bucket 0: upper bound inclusive
            one("api", "GET /", T0 + 3 * S, 2.5),  # bucket 1 (2, 4]
            one("api", "GET /", T0 + 4 * S, 20_000.0),  # overflow bucket (> 15000)
            one("api", "GET /", T0 + 5 * S, 70.0, status="error"),  # other series
        ),
        tid(1),
        True,
    )
    agg.add_trace(
        trace(
            one("api", "GET /", T0 + 15 * S, 100.0),  # exactly at window 1's start
            one("db", "SELECT", T0 + 16 * S, 3.0, kind="client", status="ok"),
            one("db", "SELECT", T0 + 44 * S, 3.0, kind="client", status="ok"),
        ),
        tid(2),
        False,
    )
    assert agg.spans == 8
    w0, w1 = agg.close(T0 + 30 * S)
    assert (w0.start_unix_nanos, w0.end_unix_nanos) == (T0, T0 + 15 * S)
    assert (w1.start_unix_nanos, w1.end_unix_nanos) == (T0 + 15 * S, T0 + 30 * S)

    ok = series(w0, "api", "GET /")
    assert (ok.calls, ok.errors) == (4, 0)
    assert ok.sum_ms == pytest.approx(1.0 + 2.0 + 2.5 + 20_000.0)
    assert ok.bucket_counts == [2, 1] + [0] * 14 + [1]
    err = series(w0, "api", "GET /", code=ERROR)
    assert (err.calls, err.errors) == (1, 1)
    assert err.bucket_counts[6] == 1  # 70 ms: (50, 100]
    assert len(w0.series) == 2 and w0.calls == 5

    assert series(w1, "api", "GET /").bucket_counts[6] == 1  # 100 -> (50, 100]
    db = series(w1, "db", "SELECT", kind=CLIENT, code=OK)
    assert (db.calls, db.errors, db.bucket_counts[1]) == (1, 0, 1)
    assert w1.calls == 2

    (w2,) = agg.close(T0 + 45 * S)
    assert w2.start_unix_nanos == T0 + 30 * S
    assert series(w2, "db", "SELECT", kind=CLIENT, code=OK).calls == 1
    assert agg.close(T0 + 100 * S) == []


def test_zero_and_negative_durations_and_unknown_service() -> None:
    agg = RedAggregator()
    agg.add_trace(
        trace(
            span(None, "orphan", "internal", T0 + 5 * S, T0 + 1 * S),  # end < start
            span("api", "zero", "server", T0 + S, T0 + S),
        ),
        tid(1),
        False,
    )
    (w,) = agg.close(T0 + 15 * S)
    orphan = w.series[(UNKNOWN_SERVICE, "orphan", 1, UNSET, ())]
    assert (orphan.calls, orphan.sum_ms, orphan.bucket_counts[0]) == (1, 0.0, 1)
    assert series(w, "api", "zero").bucket_counts[0] == 1


def test_custom_buckets_and_window() -> None:
    agg = RedAggregator(RedConfig(window_seconds=1, buckets_ms=(10.0, 100.0)))
    agg.add_trace(
        trace(
            one("a", "x", T0 + 100 * MS, 5.0),
            one("a", "x", T0 + 900 * MS, 10.0),
            one("a", "x", T0 + 1_000 * MS, 50.0),
            one("a", "x", T0 + 1_500 * MS, 500.0),
        ),
        tid(1),
        False,
    )
    w0, w1 = agg.close(T0 + 2 * S)
    assert w0.end_unix_nanos - w0.start_unix_nanos == S
    assert series(w0, "a", "x").bucket_counts == [2, 0, 0]
    assert series(w1, "a", "x").bucket_counts == [0, 1, 1]
    assert w0.buckets_ms == (10.0, 100.0)


def test_dimensions_span_then_resource_then_default() -> None:
    dims = (Dimension("http.method"), Dimension("region", "eu"), Dimension("tenant"))
    agg = RedAggregator(RedConfig(dimensions=dims))
    agg.add_trace(
        trace(
            # span attribute wins over resource; region from the resource; no tenant
            one(
                "api", "GET", T0 + S, 1.0,
                attributes={"http.method": "GET", "other": "x"},
                resource={"http.method": "POST", "region": "us"},
            ),
            # nothing anywhere: region default, method and tenant left out
            one("api", "GET", T0 + S, 1.0),
            # non-string values are stringified; first of duplicated keys wins
            span(
                "api", "GET", "server", T0, T0 + S,
                attributes={"tenant": 7, "http.method": True},
            ),
            one("api", "GET", T0 + S, 1.0, resource={"tenant": "t1"}),
        ),
        tid(1),
        False,
    )  # fmt: skip
    (w,) = agg.close(T0 + 15 * S)
    assert w.dimension_names == ("http.method", "region", "tenant")
    assert series(w, "api", "GET", dims=("GET", "us", None)).calls == 1
    assert series(w, "api", "GET", dims=(None, "eu", None)).calls == 1
    assert series(w, "api", "GET", dims=("true", "eu", "7")).calls == 1
    assert series(w, "api", "GET", dims=(None, "eu", "t1")).calls == 1
    assert len(w.series) == 4


def test_duplicate_span_attribute_first_wins() -> None:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    agg = RedAggregator(RedConfig(dimensions=(Dimension("k"),)))
    rs = one("api", "GET", T0 + S, 1.0)
    sp = rs.scope_spans[0].spans[0]
    sp.attributes.append(KeyValue(key="k", value=AnyValue(string_value="first")))
    sp.attributes.append(KeyValue(key="k", value=AnyValue(string_value="second")))
    agg.add_trace(trace(rs), tid(1), False)
    (w,) = agg.close(T0 + 15 * S)
    assert list(w.series) == [("api", "GET", SERVER, UNSET, ("first",))]


def test_overflow_series_once_the_limit_is_hit() -> None:
    agg = RedAggregator(RedConfig(max_series_per_service=2))
    agg.add_trace(
        trace(
            one("api", "a", T0 + S, 1.0),
            one("api", "b", T0 + S, 1.0),
            one("api", "b", T0 + S, 1.0, status="error"),  # 3rd series -> overflow
            one("api", "c", T0 + S, 60.0),  # 4th -> overflow
            one("api", "c", T0 + S, 1.0),  # still overflow
            one("api", "a", T0 + S, 1.0),  # known series: counted normally
            one("db", "q", T0 + S, 1.0),  # other service: own limit
            one("api", "d", T0 + 16 * S, 1.0),  # next window: fresh limit
        ),
        tid(1),
        True,
    )
    w0, w1 = agg.close(T0 + 30 * S)
    assert set(w0.series) == {
        ("api", "a", SERVER, UNSET, ()),
        ("api", "b", SERVER, UNSET, ()),
        ("db", "q", SERVER, UNSET, ()),
    }
    assert series(w0, "api", "a").calls == 2
    over = w0.overflow["api"]
    assert (over.calls, over.errors) == (3, 1)
    assert over.bucket_counts[0] == 2 and over.bucket_counts[6] == 1
    assert over.sum_ms == pytest.approx(62.0)
    assert w0.overflow_spans == 3 and agg.overflow_spans == 3
    assert w0.series_per_service == {"api": 2, "db": 1}
    assert "db" not in w0.overflow
    assert w0.calls == 7
    assert w1.overflow == {} and series(w1, "api", "d").calls == 1


def test_exemplars_prefer_kept_traces() -> None:
    agg = RedAggregator()
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0, span_id=b"\x01" * 8)), tid(1), False)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(2), False)  # full: ignored
    agg.add_trace(trace(one("api", "x", T0 + 2 * S, 5.0, span_id=b"\x03" * 8)), tid(3), True)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(4), True)  # kept, but full of kept
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(5), False)
    (w,) = agg.close(T0 + 15 * S)
    (ex,) = series(w, "api", "x").exemplars
    assert ex == (tid(3), b"\x03" * 8, T0 + 2 * S, 5.0, True)


def test_several_exemplars_distinct_traces() -> None:
    agg = RedAggregator(RedConfig(exemplars_per_series=2))
    # one trace with three spans of one series: only one exemplar slot taken
    agg.add_trace(trace(*[one("api", "x", T0 + S, 1.0)] * 3), tid(1), False)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(2), False)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(3), True)  # replaces tid(1)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(4), True)  # replaces tid(2)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(5), True)  # full of kept
    (w,) = agg.close(T0 + 15 * S)
    assert [(e[0], e[4]) for e in series(w, "api", "x").exemplars] == [
        (tid(3), True),
        (tid(4), True),
    ]


def test_no_exemplars_when_disabled() -> None:
    agg = RedAggregator(RedConfig(exemplars_per_series=0))
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(1), True)
    (w,) = agg.close(T0 + 15 * S)
    assert series(w, "api", "x").exemplars == []


def test_close_by_watermark() -> None:
    agg = RedAggregator()
    assert agg.watermark is None
    agg.add_trace(
        trace(*(one("api", "x", T0 + i * 15 * S + S, 1.0) for i in range(4))), tid(1), False
    )
    assert agg.close(T0 + 15 * S - 1) == []  # window 0 ends at T0+15s: still open
    (w0,) = agg.close(T0 + 15 * S)  # end <= watermark: closed
    assert w0.start_unix_nanos == T0
    (w1,) = agg.close(T0 + 40 * S)  # window 2 = [30 s, 45 s) stays open
    assert w1.start_unix_nanos == T0 + 15 * S
    agg.add_trace(trace(one("api", "x", T0 + 31 * S, 1.0)), tid(2), False)
    w2, w3 = agg.close(T0 + 60 * S)  # several at once, oldest first
    assert [w.start_unix_nanos for w in (w2, w3)] == [T0 + 30 * S, T0 + 45 * S]
    assert w2.calls == 2 and w2.late_spans == 0
    assert agg.close(T0 + 20 * S) == []  # watermarks only advance
    assert agg.watermark == T0 + 60 * S
    assert agg.open_windows() == []
    agg.add_trace(trace(one("api", "x", T0 + 61 * S, 1.0)), tid(3), False)
    assert [w.start_unix_nanos for w in agg.open_windows()] == [T0 + 60 * S]


def test_late_span_goes_to_the_oldest_open_window() -> None:
    agg = RedAggregator()
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(1), False)
    (w0,) = agg.close(T0 + 20 * S)  # watermark inside window 1 = [15 s, 30 s)
    assert w0.late_spans == 0
    agg.add_trace(
        trace(
            one("api", "x", T0 + 2 * S, 3.0, status="error"),  # window 0: closed -> late
            one("api", "x", T0 + 16 * S, 1.0),  # window 1: still open, not late
        ),
        tid(2),
        True,
    )
    assert agg.late_spans == 1 and agg.spans == 3
    (w1,) = agg.close(T0 + 30 * S)
    assert (w1.start_unix_nanos, w1.late_spans) == (T0 + 15 * S, 1)
    assert series(w1, "api", "x", code=ERROR).calls == 1
    assert series(w1, "api", "x").calls == 1
    # a watermark on a window boundary: the window starting there is the oldest open one
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(3), False)
    (w2,) = agg.close(T0 + 45 * S)
    assert (w2.start_unix_nanos, w2.late_spans, w2.calls) == (T0 + 30 * S, 1, 1)
    assert agg.late_spans == 2


# ---- property ---------------------------------------------------------------------

span_specs = st.lists(
    st.tuples(
        st.sampled_from(["api", "db", "web"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(0, 5),  # kind
        st.integers(0, 2),  # status
        st.integers(0, 120 * S),  # end offset
        st.integers(-5 * MS, 30_000 * MS),  # duration (negative: end before start)
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    traces=st.lists(st.tuples(span_specs, st.booleans()), max_size=6),
    limit=st.integers(1, 4),
    closes=st.lists(st.integers(0, 150 * S), max_size=4),
)
def test_property_counts_are_exact(traces, limit, closes) -> None:
    agg = RedAggregator(RedConfig(max_series_per_service=limit, exemplars_per_series=2))
    closed: list[RedWindow] = []
    added = errors = 0
    closes = sorted(closes)
    for i, (specs, kept) in enumerate(traces):
        rss = [
            span(svc, name, kind, T0 + end - dur, T0 + end, status=code)
            for svc, name, kind, code, end, dur in specs
        ]
        agg.add_trace(trace(*rss), tid(i), kept)
        added += len(specs)
        errors += sum(1 for s in specs if s[3] == ERROR)
        if closes:
            closed += agg.close(T0 + closes.pop(0))
    closed += agg.close(T0 + 10_000 * S)
    assert agg.open_windows() == []
    starts = [w.start_unix_nanos for w in closed]
    assert starts == sorted(set(starts))
    all_stats = [s for w in closed for s in (*w.series.values(), *w.overflow.values())]
    for s in all_stats:
        assert sum(s.bucket_counts) == s.calls
        assert 0 <= s.errors <= s.calls
        assert len(s.exemplars) <= 2
        assert len({e[0] for e in s.exemplars}) == len(s.exemplars)
    for w in closed:
        assert all(n <= limit for n in w.series_per_service.values())
    assert sum(s.calls for s in all_stats) == added == agg.spans
    assert sum(s.errors for s in all_stats) == errors
    assert sum(w.overflow_spans for w in closed) == agg.overflow_spans
    assert sum(w.late_spans for w in closed) == agg.late_spans


# ---- hot-path internals: resource cache, window switching, snapshots ---------------


def test_resource_cache_keeps_services_and_dimensions_apart(monkeypatch) -> None:
    import pipeline.metrics.red as red

    monkeypatch.setattr(red, "RESOURCE_CACHE_SIZE", 2)  # forces clearing the cache
    agg = RedAggregator(RedConfig(dimensions=(Dimension("region", "eu"),)))
    for i in range(3):
        agg.add_trace(
            trace(
                one("api", "x", T0 + S, 1.0, resource={"region": "us"}),
                one("api", "x", T0 + S, 1.0),  # same service, other resource
                one("db", "x", T0 + S, 1.0, resource={"region": "us"}),
                one("api", "x", T0 + S, 1.0, resource={"region": "us"}),  # repeated
            ),
            tid(i),
            False,
        )
    (w,) = agg.close(T0 + 15 * S)
    assert series(w, "api", "x", dims=("us",)).calls == 6
    assert series(w, "api", "x", dims=("eu",)).calls == 3
    assert series(w, "db", "x", dims=("us",)).calls == 3
    assert len(w.series) == 3 and agg.spans == 12


def test_many_spans_per_resource_switching_windows_and_lateness() -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

    agg = RedAggregator()
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(1), False)
    (w0,) = agg.close(T0 + 20 * S)  # window 0 closed; window 1 = [15 s, 30 s) open
    assert w0.calls == 1
    rs = one("api", "x", T0 + 16 * S, 1.0)
    ends = [2, 31, 17, 3, 46, 29, 1]  # seconds: late, w2, w1, late, w3, w1, late
    spans = rs.scope_spans[0].spans
    for e in ends:
        sp = spans.add()
        sp.CopyFrom(spans[0])
        sp.start_time_unix_nano, sp.end_time_unix_nano = T0 + e * S - MS, T0 + e * S
    rs.scope_spans.append(ScopeSpans(spans=[spans[0]]))  # a second scope: window 1
    agg.add_trace(trace(rs), tid(2), True)
    assert agg.spans == 1 + 1 + len(ends) + 1 and agg.late_spans == 3
    w1, w2, w3 = agg.close(T0 + 60 * S)
    assert [w.start_unix_nanos for w in (w1, w2, w3)] == [T0 + 15 * S, T0 + 30 * S, T0 + 45 * S]
    # window 1: its own spans at 16 s, 17 s, 29 s and the second scope's, plus 3 late
    assert (series(w1, "api", "x").calls, w1.late_spans) == (4 + 3, 3)
    assert series(w2, "api", "x").calls == 1 and series(w3, "api", "x").calls == 1
    assert w2.late_spans == w3.late_spans == 0
    assert sum(series(w1, "api", "x").bucket_counts) == 7


def test_open_windows_are_snapshots_of_the_counts() -> None:
    agg = RedAggregator(RedConfig(max_series_per_service=1))
    agg.add_trace(
        trace(
            one("api", "x", T0 + S, 3.0, status="error"),
            one("api", "y", T0 + S, 1.0, status="error"),  # overflow
            one("api", "z", T0 + S, 1.0),  # overflow
        ),
        tid(1),
        True,
    )
    (snap,) = agg.open_windows()
    st = series(snap, "api", "x", code=ERROR)
    assert (st.calls, st.errors, st.sum_ms, st.bucket_counts[1]) == (1, 1, 3.0, 1)
    assert st.exemplars == [(tid(1), b"\x00" * 7 + b"\x01", T0 + S, 3.0, True)]
    over = snap.overflow["api"]
    assert (over.calls, over.errors, snap.overflow_spans) == (2, 1, 2)
    assert snap.series_per_service == {"api": 1}
    agg.add_trace(trace(one("api", "x", T0 + S, 3.0, status="error")), tid(2), False)
    assert st.calls == 1  # a snapshot does not change
    (w,) = agg.close(T0 + 15 * S)
    assert series(w, "api", "x", code=ERROR).calls == 2 and w.calls == 4
    assert isinstance(series(w, "api", "x", code=ERROR), SeriesStats)


def test_exemplar_slots_fill_then_kept_replace_dropped_in_order() -> None:
    agg = RedAggregator(RedConfig(exemplars_per_series=3))
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(1), False)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(2), True)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(2), True)  # same trace again
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(3), False)  # fills the slots
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(4), False)  # full: ignored
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(5), True)  # replaces tid(1)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(6), True)  # replaces tid(3)
    agg.add_trace(trace(one("api", "x", T0 + S, 1.0)), tid(7), True)  # all kept: ignored
    (w,) = agg.close(T0 + 15 * S)
    assert [(e[0], e[4]) for e in series(w, "api", "x").exemplars] == [
        (tid(5), True),
        (tid(2), True),
        (tid(6), True),
    ]
