"""Clock-skew adjustment of Jaeger traces (pipeline.query.skew)."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from pipeline.query.skew import adjust_clock_skew, process_host, skew_delta

TRACE = "0" * 31 + "1"
SECOND = 1_000_000


def span(span_id: str, start: int, duration: int, process: str, parent: str | None = None):
    references = [{"refType": "CHILD_OF", "traceID": TRACE, "spanID": parent}] if parent else []
    return {
        "traceID": TRACE,
        "spanID": span_id,
        "references": references,
        "startTime": start,
        "duration": duration,
        "logs": [{"timestamp": start + 5, "fields": []}],
        "processID": process,
        "warnings": None,
    }


def trace(*spans, hosts=("a", "b", "c")):
    processes = {
        f"p{n}": {
            "serviceName": f"s{n}",
            "tags": [{"key": "host.name", "type": "string", "value": h}],
        }
        for n, h in enumerate(hosts, 1)
    }
    return {"traceID": TRACE, "spans": list(spans), "processes": processes, "warnings": None}


def by_id(result):
    return {s["spanID"]: s for s in result["spans"]}


def test_host_comes_from_host_id_then_ip_then_name():
    def process(*pairs):
        return {"tags": [{"key": k, "type": "string", "value": v} for k, v in pairs]}

    assert process_host(process(("host.name", "n"), ("host.id", "i"))) == "i"
    assert process_host(process(("host.name", "n"), ("host.ip", "1.2.3.4"))) == "1.2.3.4"
    assert process_host(process(("host.name", "n"))) == "n"
    assert process_host(process(("region", "eu"))) is None


def test_delta_rules():
    assert skew_delta(110, 50, 100, 100) == 0  # fits
    assert skew_delta(50, 40, 100, 100) == 80  # centred: 100 + (100 - 40) / 2 - 50
    assert skew_delta(160, 50, 100, 100) == -35  # sticks out at the end: centred too
    assert skew_delta(50, 300, 100, 100) == 50  # longer and earlier: moved to the start
    assert skew_delta(150, 300, 100, 100) == 0  # longer but not earlier: left alone


def test_child_on_another_host_is_centred_with_its_logs_and_a_warning():
    result = by_id(
        adjust_clock_skew(
            trace(span("r", 100, 100, "p1"), span("c", 50, 40, "p2", parent="r")), SECOND
        )
    )
    child = result["c"]
    assert child["startTime"] == 130 and child["duration"] == 40
    assert child["logs"][0]["timestamp"] == 135
    assert "shifted by 80" in child["warnings"][0]
    assert result["r"]["startTime"] == 100 and result["r"]["warnings"] is None


def test_same_host_children_inherit_the_shift_of_their_parent():
    result = by_id(
        adjust_clock_skew(
            trace(
                span("r", 100, 100, "p1"),
                span("c", 50, 40, "p2", parent="r"),
                span("g", 60, 10, "p2", parent="c"),  # same host as c: keeps its offset to c
            ),
            SECOND,
        )
    )
    assert result["g"]["startTime"] - result["c"]["startTime"] == 10
    assert result["g"]["warnings"]


def test_fitting_child_same_host_child_and_unknown_hosts_are_left_alone():
    original = trace(
        span("r", 100, 100, "p1"),
        span("fits", 120, 10, "p2", parent="r"),
        span("same", 10, 10, "p1", parent="r"),  # outside, but the same clock
    )
    assert adjust_clock_skew(copy.deepcopy(original), SECOND) == original
    unknown = trace(span("r", 100, 100, "p1"), span("c", 10, 10, "p2", parent="r"))
    unknown["processes"]["p2"]["tags"] = []
    assert adjust_clock_skew(copy.deepcopy(unknown), SECOND) == unknown


def with_kind(span_json, kind):
    span_json["tags"] = [{"key": "span.kind", "type": "string", "value": kind}]
    return span_json


def test_messaging_children_get_no_shift_of_their_own():
    # A consumer on another host that handles the message a second after the producer
    # finished is not skew; nor is any child of a producer span.
    original = trace(
        with_kind(span("r", 100, 100, "p1"), "server"),
        with_kind(span("produce", 110, 10, "p1", parent="r"), "producer"),
        with_kind(span("consume", 1_000_000, 40, "p2", parent="produce"), "consumer"),
        with_kind(span("handled", 2_000_000, 40, "p3", parent="produce"), "internal"),
    )
    assert adjust_clock_skew(copy.deepcopy(original), SECOND) == original


def test_client_to_server_pairs_are_corrected():
    result = by_id(
        adjust_clock_skew(
            trace(
                with_kind(span("call", 100, 100, "p1"), "client"),
                with_kind(span("serve", 50, 40, "p2", parent="call"), "server"),
            ),
            SECOND,
        )
    )
    assert result["serve"]["startTime"] == 130


def test_shift_beyond_the_maximum_is_not_applied_but_reported():
    result = by_id(
        adjust_clock_skew(
            trace(span("r", 10 * SECOND, 100, "p1"), span("c", 0, 40, "p2", parent="r")), SECOND
        )
    )
    assert result["c"]["startTime"] == 0
    assert "exceeds the maximum adjustment" in result["c"]["warnings"][0]


def test_zero_maximum_turns_it_off_and_cycles_do_not_hang():
    skewed = trace(span("r", 100, 100, "p1"), span("c", 50, 40, "p2", parent="r"))
    assert adjust_clock_skew(copy.deepcopy(skewed), 0) == skewed
    cycle = trace(span("x", 0, 10, "p1", parent="y"), span("y", 500, 10, "p2", parent="x"))
    assert adjust_clock_skew(copy.deepcopy(cycle), SECOND) == cycle


@st.composite
def trees(draw):
    count = draw(st.integers(1, 12))
    spans = []
    for n in range(count):
        parent = f"s{draw(st.integers(0, n - 1))}" if n else None
        spans.append(
            span(
                f"s{n}",
                draw(st.integers(0, 10_000)),
                draw(st.integers(0, 5_000)),
                f"p{draw(st.integers(1, 3))}",
                parent=parent,
            )
        )
    return trace(*spans)


@given(trees())
def test_children_on_other_hosts_end_up_inside_their_parents(original):
    result = adjust_clock_skew(copy.deepcopy(original), 10**9)
    spans = by_id(result)
    for before, after in zip(original["spans"], result["spans"], strict=True):
        assert after["duration"] == before["duration"]
        shift = after["startTime"] - before["startTime"]
        assert after["logs"][0]["timestamp"] - before["logs"][0]["timestamp"] == shift
        parent_ref = after["references"]
        if not parent_ref:
            continue
        parent = spans[parent_ref[0]["spanID"]]
        if parent["processID"] != after["processID"] and after["duration"] <= parent["duration"]:
            assert parent["startTime"] <= after["startTime"]
            assert (
                after["startTime"] + after["duration"] <= parent["startTime"] + parent["duration"]
            )
