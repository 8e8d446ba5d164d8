"""Span-metrics messages -> metrics-store documents, from messages the real encoder built."""

from __future__ import annotations

import orjson
import pytest

from pipeline.metrics import otlp
from pipeline.metrics.service_graph import (
    DEFAULT_LATENCY_BUCKETS_SECONDS,
    METRIC_REQUEST_CLIENT_SECONDS,
    METRIC_REQUEST_FAILED_TOTAL,
    METRIC_REQUEST_SERVER_SECONDS,
    METRIC_REQUEST_TOTAL,
)
from pipeline.sampler.span_metrics import window_key
from pipeline.sink import metrics_documents as md
from pipeline.sink.metrics_documents import (
    MetricsMessageError,
    document_id,
    iso_millis,
    metric_documents,
    parse_key,
)
from tests.unit.metrics.spans import tid
from tests.unit.sink.windows import MS, T0, WINDOW, S, graph_window, message, red_window

CALLS = "traces.span.metrics.calls"
DURATION = "traces.span.metrics.duration"


def by_series(docs) -> dict:
    """{(metric, series fields...): source} with the series' identifying fields."""
    out = {}
    for doc in docs:
        s = doc.source
        key = (
            s["metric"],
            s.get("service.name"),
            s.get("span.name"),
            s.get("span.kind"),
            s.get("status.code"),
            s.get("client"),
            s.get("server"),
            s.get("connection_type"),
            orjson.dumps(s.get("attributes"), option=orjson.OPT_SORT_KEYS),
            s.get("overflow", False),
        )
        assert key not in out, "one document per series and window"
        out[key] = s
    return out


def api(status: str, method: bytes = b"null") -> tuple:
    return ("api", "GET /", "SPAN_KIND_SERVER", status, None, None, None, method, False)


GET = b'{"http@method":"GET"}'
DB = ("db", "SELECT", "SPAN_KIND_CLIENT", "STATUS_CODE_OK", None, None, None, b"null", False)


# --- the wire contract --------------------------------------------------------------------


def test_otlp_names_are_the_encoders():
    """The sink spells the metrics topics' names itself; they must be the encoder's."""
    assert md.RED_CALLS == otlp.CALLS
    assert md.OVERFLOW_ATTRIBUTE == otlp.OVERFLOW_ATTRIBUTE
    assert md.SCOPE_KINDS == {
        otlp.SCOPE_NAME: "red",
        otlp.SERVICE_GRAPH_SCOPE_NAME: "service_graph",
    }
    assert otlp.status_code_str(2) == md.STATUS_CODE_ERROR


def test_key_is_the_samplers_window_key():
    assert parse_key(window_key(7, T0)) == (7, T0)
    for bad in (None, b"", b"\x00" * 11, b"\x00" * 13):
        with pytest.raises(MetricsMessageError):
            parse_key(bad)


def test_malformed_messages_are_refused():
    key, value = message(red_window())
    with pytest.raises(MetricsMessageError):
        metric_documents(value, b"short")
    with pytest.raises(MetricsMessageError):
        metric_documents(b"\xff\xff\xff not protobuf", key)


# --- RED ------------------------------------------------------------------------------------


def test_red_window_documents():
    window = red_window()
    key, value = message(window, partition=3)
    docs = metric_documents(value, key)
    series = by_series(docs)
    assert set(series) == {
        (CALLS, *api("STATUS_CODE_UNSET", GET)),
        (CALLS, *api("STATUS_CODE_ERROR")),
        (CALLS, *DB),
        (DURATION, *api("STATUS_CODE_UNSET", GET)),
        (DURATION, *api("STATUS_CODE_ERROR")),
        (DURATION, *DB),
    }
    for s in series.values():
        assert s["@timestamp"] == "2023-11-14T22:13:30.000Z" == iso_millis(T0)
        assert s["window_end"] == "2023-11-14T22:13:45.000Z"
        assert s["window_seconds"] == 15.0
        assert s["partition"] == 3
        assert s["kind"] == "red"

    ok = series[(CALLS, *api("STATUS_CODE_UNSET", GET))]
    assert (ok["value"], ok["calls"], ok["errors"]) == (2, 2, 0)
    assert ok["attributes"] == {"http@method": "GET"}
    assert ok["exemplar_trace_ids"] == [tid(1).hex()]
    failed = series[(CALLS, *api("STATUS_CODE_ERROR"))]
    assert (failed["calls"], failed["errors"]) == (1, 1)
    assert "attributes" not in failed
    db = series[(CALLS, *DB)]
    assert (db["calls"], db["errors"]) == (1, 0)
    assert "unit" not in db

    bounds = list(window.buckets_ms)
    duration = series[(DURATION, *api("STATUS_CODE_UNSET", GET))]
    assert duration["unit"] == "ms"
    assert (duration["count"], duration["sum"]) == (2, 10.0)
    assert duration["explicit_bounds"] == bounds
    assert len(duration["bucket_counts"]) == len(bounds) + 1
    assert sum(duration["bucket_counts"]) == 2
    expected = [0] * (len(bounds) + 1)
    for ms in (3.0, 7.0):
        expected[next(i for i, b in enumerate(bounds) if ms <= b)] += 1
    assert duration["bucket_counts"] == expected
    assert "calls" not in duration and "value" not in duration
    slow = series[(DURATION, *api("STATUS_CODE_ERROR"))]
    assert (slow["count"], slow["sum"]) == (1, 120.0)
    # The totals add up to the aggregator's.
    assert sum(s["calls"] for s in series.values() if s["metric"] == CALLS) == window.calls == 4


def test_red_overflow_series():
    window = red_window(max_series=1)  # api has two series: the second overflows
    assert window.overflow
    docs = metric_documents(*reversed(message(window)))
    overflows = {d.source["metric"]: d.source for d in docs if d.source.get("overflow")}
    assert set(overflows) == {CALLS, DURATION}
    calls = overflows[CALLS]
    assert calls["service.name"] == "api"
    assert "status.code" not in calls and "span.name" not in calls
    assert "errors" not in calls  # the message does not say
    assert calls["calls"] == window.overflow["api"].calls
    assert "attributes" not in calls  # otel.metric.overflow is the overflow field
    assert overflows[DURATION]["count"] == window.overflow["api"].calls
    assert calls["kind"] == "red"


# --- service graph ------------------------------------------------------------------------


def test_service_graph_window_documents():
    window = graph_window()
    key, value = message(window, partition=1)
    docs = metric_documents(value, key)
    series = {
        (d.source["metric"], d.source["client"], d.source["server"], d.source["connection_type"]): d
        for d in docs
    }
    assert len(series) == len(docs) == 7
    api, db = ("frontend", "backend", ""), ("backend", "orders", "database")
    assert set(series) == {
        (METRIC_REQUEST_TOTAL, *api),
        (METRIC_REQUEST_TOTAL, *db),
        (METRIC_REQUEST_FAILED_TOTAL, *api),
        (METRIC_REQUEST_SERVER_SECONDS, *api),
        (METRIC_REQUEST_SERVER_SECONDS, *db),
        (METRIC_REQUEST_CLIENT_SECONDS, *api),
        (METRIC_REQUEST_CLIENT_SECONDS, *db),
    }
    for doc in docs:
        s = doc.source
        assert s["kind"] == "service_graph"
        assert s["partition"] == 1
        assert (s["@timestamp"], s["window_seconds"]) == (iso_millis(T0), 15.0)
        assert "service.name" not in s and "attributes" not in s
        assert "calls" not in s and "errors" not in s

    total = series[(METRIC_REQUEST_TOTAL, *api)].source
    assert total["value"] == 2
    assert total["exemplar_trace_ids"] in ([tid(10).hex()], [tid(11).hex()])
    assert series[(METRIC_REQUEST_TOTAL, *db)].source["value"] == 1
    assert series[(METRIC_REQUEST_FAILED_TOTAL, *api)].source["value"] == 1
    client = series[(METRIC_REQUEST_CLIENT_SECONDS, *api)].source
    assert client["unit"] == "s"
    assert client["count"] == 2
    assert client["sum"] == pytest.approx(3.03)
    assert client["explicit_bounds"] == list(DEFAULT_LATENCY_BUCKETS_SECONDS)
    assert sum(client["bucket_counts"]) == 2
    server = series[(METRIC_REQUEST_SERVER_SECONDS, *api)].source
    assert server["sum"] == pytest.approx(0.021)


# --- ids ----------------------------------------------------------------------------------


def test_ids_are_deterministic_unique_and_replay_safe():
    red_key, red_value = message(red_window())
    graph_key, graph_value = message(graph_window())
    first = metric_documents(red_value, red_key) + metric_documents(graph_value, graph_key)
    again = metric_documents(red_value, red_key) + metric_documents(graph_value, graph_key)
    assert [d.id for d in first] == [d.id for d in again]
    assert [d.source for d in first] == [d.source for d in again]
    assert len({d.id for d in first}) == len(first)
    # A rebuilt window (new aggregator, same spans) has the same ids: a replay overwrites.
    rebuilt = metric_documents(*reversed(message(red_window())))
    assert {d.id for d in rebuilt} == {d.id for d in metric_documents(red_value, red_key)}


def test_id_depends_on_partition_window_metric_and_attributes_not_their_order():
    attributes = [("service.name", "string", "api"), ("span.name", "string", "GET /")]
    base = document_id(3, T0, CALLS, attributes)
    assert document_id(3, T0, CALLS, list(reversed(attributes))) == base
    assert document_id(4, T0, CALLS, attributes) != base
    assert document_id(3, T0 + WINDOW, CALLS, attributes) != base
    assert document_id(3, T0, DURATION, attributes) != base
    assert document_id(3, T0, CALLS, attributes[:1]) != base
    assert document_id(3, T0, CALLS, [("service.name", "bool", "api"), attributes[1]]) != base
    assert len(base) == 32 and int(base, 16) >= 0

    other_partition = metric_documents(*reversed(message(red_window(), partition=4)))
    same = metric_documents(*reversed(message(red_window(), partition=3)))
    assert not {d.id for d in other_partition} & {d.id for d in same}
    later = metric_documents(*reversed(message(red_window(T0 + WINDOW))))
    assert not {d.id for d in later} & {d.id for d in same}
    assert {d.source["@timestamp"] for d in later} == {iso_millis(T0 + WINDOW)}


def test_documents_encode_as_json():
    for doc in metric_documents(*reversed(message(red_window()))):
        assert orjson.loads(doc.encoded()) == doc.source
        assert doc.start_unix_nanos == T0


def test_iso_millis():
    assert iso_millis(T0 + 1 * S + 250 * MS + 999) == "2023-11-14T22:13:31.250Z"
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
