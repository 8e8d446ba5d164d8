"""RED messages (built with the real aggregator and encoder) -> the `metrics top` summary."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Sum

from pipeline.metrics.otlp import CALLS, encode_red_windows
from pipeline.metrics.red import DEFAULT_BUCKETS_MS, RedAggregator, RedConfig
from pipeline.metrics.summary import (
    Histogram,
    RedSummary,
    ServiceSummary,
    WindowDelta,
    decode_red_message,
    histogram_quantile,
    sort_summaries,
)
from tests.unit.metrics.spans import span, tid, trace

S = 1_000_000_000
MS = 1_000_000
T0 = 1_699_999_995 * S  # a multiple of 15 s: a window starts here
WINDOW = 15 * S
N_BUCKETS = len(DEFAULT_BUCKETS_MS) + 1
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def spans_at(service: str, window_start: int, durations_ms, *, status="unset", first_id=0):
    """One ``ResourceSpans`` per duration, all ending inside the window at ``window_start``."""
    out = []
    for i, ms in enumerate(durations_ms):
        end = window_start + S + i * MS
        out.append(
            span(
                service,
                "op",
                "server",
                end - int(ms * MS),
                end,
                status=status,
                span_id=(first_id + i + 1).to_bytes(8, "big"),
            )
        )
    return out


def messages(*resource_spans, config: RedConfig | None = None) -> list[bytes]:
    """The encoded red-metrics messages of those spans (one trace each): one per window."""
    agg = RedAggregator(config or RedConfig())
    for i, rs in enumerate(resource_spans):
        agg.add_trace(trace(rs), tid(i + 1), True)
    return [encode_red_windows([w]).SerializeToString() for w in agg.close(T0 + 86_400 * S)]


def one_message(*resource_spans, config: RedConfig | None = None) -> bytes:
    (value,) = messages(*resource_spans, config=config)
    return value


def counts(**by_bound: int) -> list[int]:
    """Default-bucket counts from {"b10": 3, "inf": 1}: the bucket whose upper bound is 10."""
    out = [0] * N_BUCKETS
    for name, c in by_bound.items():
        index = N_BUCKETS - 1 if name == "inf" else DEFAULT_BUCKETS_MS.index(float(name[1:]))
        out[index] = c
    return out


# -- decoding --------------------------------------------------------------------------


def test_decode_one_window_per_service() -> None:
    value = one_message(
        *spans_at("api", T0, [3.0, 3.0, 120.0]),
        *spans_at("api", T0, [7.0], status="error", first_id=10),
        *spans_at("db", T0, [1.0, 2.0], status="ok", first_id=20),
    )
    (window,) = decode_red_message(value)
    assert (window.start_unix_nanos, window.end_unix_nanos) == (T0, T0 + WINDOW)
    assert set(window.services) == {"api", "db"}

    api = window.services["api"]
    assert (api.calls, api.errors) == (4, 1)
    assert api.sum_ms == pytest.approx(133.0)
    assert api.histogram is not None
    assert api.histogram.bounds == DEFAULT_BUCKETS_MS
    assert api.histogram.counts == counts(b4=2, b8=1, b200=1)

    db = window.services["db"]
    assert (db.calls, db.errors) == (2, 0)
    assert db.histogram is not None and db.histogram.counts == counts(b2=2)
    assert db.sum_ms == pytest.approx(3.0)


def test_decode_request_with_several_windows() -> None:
    agg = RedAggregator(RedConfig())
    agg.add_trace(trace(*spans_at("api", T0, [5.0])), tid(1), True)
    agg.add_trace(trace(*spans_at("api", T0 + WINDOW, [5.0, 5.0], status="error")), tid(2), True)
    value = encode_red_windows(agg.close(T0 + 2 * WINDOW)).SerializeToString()
    first, second = decode_red_message(value)
    assert (first.start_unix_nanos, second.start_unix_nanos) == (T0, T0 + WINDOW)
    assert (first.services["api"].calls, first.services["api"].errors) == (1, 0)
    assert (second.services["api"].calls, second.services["api"].errors) == (2, 2)


def test_decode_counts_overflow_calls_without_errors() -> None:
    value = one_message(
        *spans_at("api", T0, [1.0]),
        *spans_at("api", T0, [1.0, 1.0], status="error", first_id=5),  # a second series
        config=RedConfig(max_series_per_service=1),
    )
    (window,) = decode_red_message(value)
    api = window.services["api"]
    # The overflow series carries no status.code: its calls count, its errors do not show.
    assert (api.calls, api.errors) == (3, 0)
    assert api.histogram is not None and api.histogram.count == 3


def test_decode_rejects_garbage_and_skips_other_metrics() -> None:
    with pytest.raises(ValueError):
        decode_red_message(b"\xff\xff\xff")
    assert decode_red_message(b"") == []
    request = ExportMetricsServiceRequest.FromString(one_message(*spans_at("api", T0, [1.0])))
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    cumulative = metrics.add(name=CALLS)
    cumulative.sum.CopyFrom(Sum(aggregation_temporality=CUMULATIVE, is_monotonic=True))
    cumulative.sum.data_points.add(as_int=1000, start_time_unix_nano=T0, time_unix_nano=T0 + S)
    metrics.add(name="something.else").gauge.data_points.add(as_int=7)
    (window,) = decode_red_message(request.SerializeToString())
    assert window.services["api"].calls == 1


# -- quantiles -------------------------------------------------------------------------


def test_quantile_empty_histogram_is_none() -> None:
    assert histogram_quantile(0.5, DEFAULT_BUCKETS_MS, [0] * N_BUCKETS) is None
    assert histogram_quantile(0.5, (), [7]) is None  # only +Inf: nothing finite to return


def test_quantile_all_in_one_bucket_interpolates_linearly() -> None:
    c = counts(b50=4)  # four observations in (10, 50]
    assert histogram_quantile(0.5, DEFAULT_BUCKETS_MS, c) == pytest.approx(30.0)
    assert histogram_quantile(0.25, DEFAULT_BUCKETS_MS, c) == pytest.approx(20.0)
    assert histogram_quantile(0.99, DEFAULT_BUCKETS_MS, c) == pytest.approx(49.6)
    assert histogram_quantile(1.0, DEFAULT_BUCKETS_MS, c) == pytest.approx(50.0)
    assert histogram_quantile(0.0, DEFAULT_BUCKETS_MS, c) == pytest.approx(10.0)


def test_quantile_first_bucket_starts_at_zero() -> None:
    c = counts(b2=2)
    assert histogram_quantile(0.5, DEFAULT_BUCKETS_MS, c) == pytest.approx(1.0)
    assert histogram_quantile(0.5, (0.0, 1.0), [3, 0, 0]) == 0.0  # upper bound <= 0


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.5, DEFAULT_BUCKETS_MS, counts(inf=3)) == 15000.0
    c = counts(b10=98, inf=2)
    assert histogram_quantile(0.98, DEFAULT_BUCKETS_MS, c) == pytest.approx(10.0)
    assert histogram_quantile(0.99, DEFAULT_BUCKETS_MS, c) == 15000.0


def test_quantile_across_buckets() -> None:
    # 10 in (0, 2], 80 in (10, 50], 10 in (100, 200]
    c = counts(b2=10, b50=80, b200=10)
    assert histogram_quantile(0.5, DEFAULT_BUCKETS_MS, c) == pytest.approx(10 + 40 * 40 / 80)
    assert histogram_quantile(0.95, DEFAULT_BUCKETS_MS, c) == pytest.approx(100 + 100 * 5 / 10)
    assert histogram_quantile(0.99, DEFAULT_BUCKETS_MS, c) == pytest.approx(100 + 100 * 9 / 10)
    assert histogram_quantile(0.05, DEFAULT_BUCKETS_MS, c) == pytest.approx(1.0)
    # an empty bucket in between is skipped: rank 10 ends in (0, 2], rank 10.5 in (10, 50]
    assert histogram_quantile(0.1, DEFAULT_BUCKETS_MS, c) == pytest.approx(2.0)
    assert histogram_quantile(0.105, DEFAULT_BUCKETS_MS, c) == pytest.approx(10 + 40 * 0.5 / 80)


def test_quantile_arguments_are_checked() -> None:
    for q in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError):
            histogram_quantile(q, (1.0,), [1, 0])
    with pytest.raises(ValueError):
        histogram_quantile(0.5, (1.0, 2.0), [1, 0])


def test_histograms_with_other_bounds_merge_onto_the_union() -> None:
    h = Histogram((10.0, 100.0), [1, 2, 3])
    h.add((50.0, 100.0), [4, 5, 6])
    assert h.bounds == (10.0, 50.0, 100.0)
    # (0,10]:1, (10,50]: 4, (50,100]: 2 + 5, +Inf: 3 + 6 (each count under its upper bound)
    assert h.counts == [1, 4, 7, 9]
    h.add((10.0, 50.0, 100.0), [1, 1, 1, 1])
    assert h.counts == [2, 5, 8, 10]


# -- the sliding summary ---------------------------------------------------------------


def test_rate_errors_and_quantiles_over_partitions_and_windows() -> None:
    summary = RedSummary(span_seconds=60)
    # Two partitions publish the same window; a third message is the next window.
    p0 = one_message(*spans_at("api", T0, [3.0] * 6), *spans_at("db", T0, [30.0] * 3, first_id=9))
    p1 = one_message(*spans_at("api", T0, [120.0] * 3, status="error"))
    nxt = one_message(*spans_at("api", T0 + WINDOW, [3.0] * 21, first_id=40))
    assert summary.add_message(p0, b"p0-w0")
    assert summary.add_message(p1, b"p1-w0")
    assert summary.add_message(nxt, b"p0-w1")
    assert summary.windows == 2
    assert summary.covered_seconds == 30.0

    rows = {r.service: r for r in summary.summaries()}
    api, db = rows["api"], rows["db"]
    assert (api.calls, api.errors) == (30, 3)
    assert api.rate == pytest.approx(1.0)
    assert api.error_pct == pytest.approx(10.0)
    # 27 in (2, 4], 3 in (100, 200]: p50 at rank 15 -> 2 + 2 * 15/27
    assert api.p50_ms == pytest.approx(2 + 2 * 15 / 27)
    assert api.p95_ms == pytest.approx(100 + 100 * (28.5 - 27) / 3)
    assert api.p99_ms == pytest.approx(100 + 100 * (29.7 - 27) / 3)
    assert api.mean_ms == pytest.approx((27 * 3.0 + 3 * 120.0) / 30)
    assert (db.calls, db.errors, db.rate, db.error_pct) == (3, 0, pytest.approx(0.1), 0.0)
    assert db.p50_ms == pytest.approx(10 + 40 * 1.5 / 3)


def test_sliding_span_drops_old_windows() -> None:
    summary = RedSummary(span_seconds=30)
    for k in range(4):
        value = one_message(*spans_at("api", T0 + k * WINDOW, [1.0] * (k + 1)))
        assert summary.add_message(value, f"w{k}".encode())
    # newest end = T0 + 60 s; kept: windows starting at or after T0 + 30 s
    assert summary.windows == 2
    assert summary.covered_seconds == 30.0
    (api,) = summary.summaries()
    assert api.calls == 3 + 4
    assert api.rate == pytest.approx(7 / 30)
    # a window older than the span that arrives late is ignored
    late = one_message(*spans_at("api", T0, [1.0] * 50))
    assert not summary.add_message(late, b"late")
    assert summary.too_old == 1
    assert summary.summaries()[0].calls == 7


def test_newest_window_is_kept_even_if_longer_than_the_span() -> None:
    summary = RedSummary(span_seconds=5)
    summary.add_message(one_message(*spans_at("api", T0, [1.0] * 2)), b"a")
    summary.add_message(one_message(*spans_at("api", T0 + WINDOW, [1.0] * 3)), b"b")
    assert summary.windows == 1
    assert summary.covered_seconds == 15.0
    assert summary.summaries()[0].calls == 3


def test_duplicates_and_invalid_messages() -> None:
    summary = RedSummary()
    value = one_message(*spans_at("api", T0, [1.0] * 4, status="error"))
    assert summary.add_message(value, b"k")
    assert not summary.add_message(value, b"k")  # redelivered
    assert summary.duplicates == 1
    other = one_message(*spans_at("api", T0, [1.0], first_id=9))
    assert summary.add_message(other, b"k")  # same key, other bytes: another sender
    assert not summary.add_message(b"\x0a\xff", b"x")
    assert not summary.add_message(None)
    assert summary.invalid == 1
    (api,) = summary.summaries()
    assert (api.calls, api.errors, api.error_pct) == (5, 4, pytest.approx(80.0))


def test_empty_summary() -> None:
    summary = RedSummary()
    assert summary.summaries() == []
    assert summary.covered_seconds == 0.0
    assert summary.newest_end_unix_nanos is None
    with pytest.raises(ValueError):
        RedSummary(span_seconds=0)


def test_add_window_directly() -> None:
    summary = RedSummary(span_seconds=60)
    w = WindowDelta(T0, T0 + 10 * S)
    w.service("api").calls = 20
    w.service("api").errors = 5
    assert summary.add_window(w)
    (api,) = summary.summaries()
    assert (api.rate, api.error_pct, api.p99_ms, api.mean_ms) == (2.0, 25.0, None, None)


def row(name: str, rate: float, errors: int, calls: int, p99: float | None) -> ServiceSummary:
    pct = 100.0 * errors / calls if calls else 0.0
    return ServiceSummary(name, calls, errors, rate, pct, None, None, p99, None)


def test_sort_orders() -> None:
    rows = [
        row("cart", 5.0, 1, 10, 40.0),
        row("api", 9.0, 1, 100, 900.0),
        row("db", 5.0, 5, 10, None),
        row("auth", 1.0, 2, 20, 40.0),
    ]

    def names(by: str) -> list[str]:
        return [r.service for r in sort_summaries(rows, by)]

    assert names("rate") == ["api", "cart", "db", "auth"]
    assert names("errors") == ["db", "auth", "cart", "api"]
    assert names("p99") == ["api", "auth", "cart", "db"]
    assert names("name") == ["api", "auth", "cart", "db"]
    with pytest.raises(ValueError):
        sort_summaries(rows, "latency")
