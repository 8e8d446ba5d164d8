"""Checkpoints of the open windows: a new owner that adds up the checkpoints of the old
one, then carries on, closes exactly the windows the old one would have closed."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.metrics.red import RedAggregator, RedConfig
from pipeline.metrics.service_graph import ServiceGraph
from tests.unit.metrics.spans import span, tid, trace

S = 1_000_000_000
T0 = 1_699_999_995 * S  # a multiple of 15 s
SERVICES = ("web", "api", "db")

# One step: a trace (service, name, end second, duration ms, error, kept), a checkpoint
# ("cp"), or a close at a watermark second ("close", s).
trace_step = st.tuples(
    st.sampled_from(SERVICES),
    st.sampled_from(("GET /", "POST /pay", "query")),
    st.integers(0, 80),
    st.floats(0, 3000, allow_nan=False),
    st.booleans(),
    st.booleans(),
)
steps = st.lists(
    st.one_of(trace_step, st.just(("cp",)), st.tuples(st.just("close"), st.integers(0, 90))),
    max_size=60,
)


def traces_of(step, number: int):
    service, name, end_s, dur_ms, error, kept = step
    end = T0 + end_s * S
    client = span(
        service,
        name,
        "client",
        end - int(dur_ms * 1e6),
        end,
        span_id=b"c" * 8,
        trace_id=tid(number),
    )
    server = span(
        SERVICES[(SERVICES.index(service) + 1) % 3],
        name,
        "server",
        end - int(dur_ms * 5e5),
        end,
        status="error" if error else "unset",
        span_id=b"s" * 8,
        parent=b"c" * 8,
        trace_id=tid(number),
    )
    return trace(client, server), tid(number), kept


def fresh() -> tuple[RedAggregator, ServiceGraph]:
    config = RedConfig(max_series_per_service=2, exemplars_per_series=2)  # overflow happens
    return RedAggregator(config), ServiceGraph(service_map=False)


def run(all_steps, switch_at: int | None):
    """Closed windows (as comparable data) of one owner, or of two with a switch."""
    red, graph = fresh()
    saved: list[bytes] = []
    closed = []
    for number, step in enumerate(all_steps):
        if switch_at is not None and number == switch_at:
            saved.append(orjson.dumps({"red": red.checkpoint(), "graph": graph.checkpoint()}))
            red, graph = fresh()
            loaded = [orjson.loads(raw) for raw in saved]
            red.restore([cp["red"] for cp in loaded if cp["red"]])
            graph.restore([cp["graph"] for cp in loaded if cp["graph"]])
        if step == ("cp",):
            saved.append(orjson.dumps({"red": red.checkpoint(), "graph": graph.checkpoint()}))
        elif step[0] == "close":
            watermark = T0 + step[1] * S
            closed += [comparable_red(w) for w in red.close(watermark)]
            closed += [comparable_graph(w) for w in graph.close(watermark)]
        else:
            data, trace_id, kept = traces_of(step, number)
            red.add_trace(data, trace_id, kept)
            graph.add_trace(data, trace_id, kept)
    closed += [comparable_red(w) for w in red.close(T0 + 1000 * S)]
    closed += [comparable_graph(w) for w in graph.close(T0 + 1000 * S)]
    return closed


def comparable_red(window):
    series = {
        key: (s.calls, s.errors, tuple(s.bucket_counts), round(s.sum_ms, 6), sorted(s.exemplars))
        for key, s in window.series.items()
    }
    overflow = {
        key: (s.calls, s.errors, tuple(s.bucket_counts), round(s.sum_ms, 6))
        for key, s in window.overflow.items()
    }
    return ("red", window.start_unix_nanos, series, overflow, window.overflow_spans)


def comparable_graph(window):
    edges = {
        key: (
            s.requests,
            s.failed,
            tuple(s.client_seconds.counts),
            round(s.client_seconds.sum, 9),
            tuple(s.server_seconds.counts),
            s.server_seconds.count,
        )
        for key, s in window.edges.items()
    }
    return ("graph", window.start_unix_nanos, edges)


@settings(max_examples=200, deadline=None)
@given(all_steps=steps, switch=st.integers(0, 60))
def test_a_new_owner_restored_from_checkpoints_closes_the_same_windows(all_steps, switch):
    """The switch happens right after a checkpoint: what a tick saves is what it counted."""
    switch_at = min(switch, len(all_steps))
    assert run(all_steps, switch_at) == run(all_steps, None)


def test_no_change_means_no_checkpoint():
    red, graph = fresh()
    assert red.checkpoint() is None and graph.checkpoint() is None
    data, trace_id, kept = traces_of(("web", "GET /", 3, 10.0, False, True), 1)
    red.add_trace(data, trace_id, kept)
    graph.add_trace(data, trace_id, kept)
    assert red.checkpoint() is not None and graph.checkpoint() is not None
    assert red.checkpoint() is None and graph.checkpoint() is None


def test_a_close_alone_is_checkpointed_so_a_new_owner_does_not_send_the_window_again():
    red, graph = fresh()
    data, trace_id, kept = traces_of(("web", "GET /", 3, 10.0, False, True), 1)
    red.add_trace(data, trace_id, kept)
    graph.add_trace(data, trace_id, kept)
    saved = [(red.checkpoint(), graph.checkpoint())]
    assert len(red.close(T0 + 20 * S)) == 1 and len(graph.close(T0 + 20 * S)) == 1
    saved.append((red.checkpoint(), graph.checkpoint()))  # nothing counted, but closed
    assert saved[-1] != (None, None)
    red, graph = fresh()
    red.restore([r for r, _ in saved if r])
    graph.restore([g for _, g in saved if g])
    assert red.close(T0 + 60 * S) == [] and graph.close(T0 + 60 * S) == []
