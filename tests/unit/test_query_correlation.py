"""Logs and metrics beside a trace: the log-link settings and their checks, Data Prepper
log documents -> records, the OpenSearch bodies, exemplar shaping, and the handlers over
a canned client."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from starlette.requests import Request
from starlette.routing import Route

import pipeline.query as query_package
from pipeline.cli import main
from pipeline.config.settings import LOG_LINK_PLACEHOLDERS, LogLink, Settings
from pipeline.query.correlation import (
    EXEMPLAR_DOCUMENTS,
    LogReader,
    exemplars,
    exemplars_body,
    log_links_config,
    log_record,
    metrics_exemplars,
    parse_exemplars_query,
    parse_micros,
    trace_logs,
    trace_logs_body,
    ui_config,
)
from pipeline.query.params import ParamError
from pipeline.query.spm import CALLS_METRIC, DURATION_METRIC, KIND_RED
from tests.asgi import get_all, handlers_app
from tests.unit.test_query_spm import FakeClient

TRACE = "5b8aa5a2d2c872e8321cf37308d69df2"
SPAN = "051581bf3cb55c13"
LINKS_ENV = "SPANSIEVE_QUERY_LOG_LINKS"
# 2023-11-14T22:13:20.123456Z
T_US = 1_700_000_000_123_456


# --- settings -------------------------------------------------------------------------------


def test_log_links_come_from_json_in_the_environment(monkeypatch):
    url = "https://logs.example/?q={trace_id}&span={span_id}&from={start}&to={end_ms}"
    monkeypatch.setenv(LINKS_ENV, f'[{{"name": "Logs", "url": "{url}"}}]')
    settings = Settings()
    assert settings.query_log_links == [LogLink(name="Logs", url=url)]
    assert settings.query_logs_index == "logs-otel-v1*"  # Data Prepper's log alias
    assert settings.query_max_logs == 1000
    monkeypatch.setenv(LINKS_ENV, "")
    assert Settings().query_log_links == []


def problems(**fields: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(**fields)
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors()]


def test_an_unknown_placeholder_names_the_field_the_link_and_the_placeholder():
    links = '[{"name": "Kibana", "url": "https://k.example/?trace={traceId}"}]'
    [problem] = problems(query_log_links=links)
    assert "query_log_links" in problem
    assert "'Kibana'" in problem
    assert "{traceId}" in problem
    for name in LOG_LINK_PLACEHOLDERS:
        assert f"{{{name}}}" in problem  # and says what is allowed


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://x/?t={start:%Y}", "{start:%Y}"),  # no format specs
        ("https://x/?t={trace_id!r}", "{trace_id!r}"),
        ("https://x/?t={0}", "{0}"),
        ("https://x/?t={trace_id", "malformed"),
        ("javascript:alert(1)//{trace_id}", "http(s)"),
        ("logs.example/{trace_id}", "http(s)"),
    ],
)
def test_bad_link_templates_are_refused(url, said):
    [problem] = problems(query_log_links=[{"name": "L", "url": url}])
    assert said in problem


def test_link_shape_and_json_are_checked():
    assert "not JSON" in problems(query_log_links="[{")[0]
    assert problems(query_log_links='[{"name": "", "url": "https://x/"}]')
    assert problems(query_log_links='[{"name": "L", "url": "https://x/", "x": 1}]')
    assert problems(query_max_logs=0) and problems(query_max_logs=10_001)


def test_literal_braces_and_paths_are_fine():
    settings = Settings(
        query_log_links=[
            {"name": "Proxy", "url": '/logs?q={{"trace":"{trace_id}"}}'},
            {"name": "Grafana", "url": "HTTPS://g.example/explore?from={start_ms}&to={end_ms}"},
        ],
        query_logs_index="  app-logs-*  ",
    )
    assert [link.name for link in settings.query_log_links] == ["Proxy", "Grafana"]
    assert settings.query_logs_index == "app-logs-*"


def test_the_query_command_takes_the_settings_as_flags():
    seen: list[Settings] = []
    links = '[{"name": "Logs", "url": "https://l.example/?q={trace_id}"}]'
    with mock.patch.object(query_package, "run_query", seen.append):
        runner = CliRunner()
        args = ["query", "--query-log-links", links, "--query-logs-index", "", "--query-max-logs"]
        ok = runner.invoke(main, [*args, "7"])
        bad = runner.invoke(main, ["query", "--query-log-links", links.replace("trace_id", "t")])
    assert ok.exit_code == 0, ok.output
    [settings] = seen
    assert settings.query_log_links[0].url == "https://l.example/?q={trace_id}"
    assert (settings.query_logs_index, settings.query_max_logs) == ("", 7)
    assert bad.exit_code == 2
    assert "query_log_links" in bad.output and "{t}" in bad.output


# --- log links ------------------------------------------------------------------------------


def test_log_links_config_is_what_the_ui_reads():
    settings = Settings(
        query_log_links=[{"name": "Logs", "url": "https://l/?q={trace_id}"}], query_logs_index=""
    )
    assert log_links_config(settings) == {
        "logLinks": [{"name": "Logs", "url": "https://l/?q={trace_id}"}],
        "logs": False,
    }
    assert log_links_config(Settings(query_log_links=[]))["logs"] is True


# --- log records ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        ("2023-11-14T22:13:20.123456789Z", T_US),  # Data Prepper: nanoseconds
        ("2023-11-14T22:13:20.123456Z", T_US),
        ("2023-11-14T22:13:20Z", T_US - 123_456),
        ("2023-11-14T23:13:20.123456+01:00", T_US),
        ("2023-11-14T22:13:20.123456", T_US),  # no zone: UTC
        (1_700_000_000_123, T_US - 456),  # epoch_millis
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_micros(value, micros):
    assert parse_micros(value) == micros


def data_prepper_log(**overrides: Any) -> dict[str, Any]:
    """A log document as Data Prepper's default codec writes it: attributes flattened into
    the top level, "." in their keys written "@"."""
    doc = {
        "traceId": TRACE,
        "spanId": SPAN,
        "time": "2023-11-14T22:13:20.123456789Z",
        "observedTimestamp": "2023-11-14T22:13:21Z",
        "serviceName": "cart",
        "severityText": "WARN",
        "severityNumber": 13,
        "body": "cart is slow",
        "flags": 1,
        "droppedAttributesCount": 0,
        "schemaUrl": "",
        "log.attributes.http@method": "GET",
        "log.attributes.retries": 2,
        "resource.attributes.service@name": "cart",
        "resource.attributes.host@name": "node-1",
        "instrumentationScope.name": "app",
    }
    doc.update(overrides)
    return doc


def test_a_data_prepper_log_document_becomes_a_record():
    assert log_record(data_prepper_log()) == {
        "timestamp": T_US,
        "traceID": TRACE,
        "spanID": SPAN,
        "service": "cart",
        "severity": "WARN",
        "severityNumber": 13,
        "body": "cart is slow",
        "attributes": {"http.method": "GET", "retries": 2},
    }


def test_the_standard_codec_shape_is_read_too():
    doc = {
        "traceId": TRACE.upper(),
        "spanId": "",
        "time": "1970-01-01T00:00:00Z",  # time unset: the observed time counts
        "observedTime": "2023-11-14T22:13:20.123456Z",
        "severity": {"text": "", "number": 17},
        "body": {"event": "checkout", "items": 3},
        "attributes": {"http.method": "POST"},
        "resource": {"attributes": {"service.name": "checkout"}},
    }
    record = log_record(doc)
    assert record["timestamp"] == T_US
    assert (record["traceID"], record["spanID"]) == (TRACE, "")
    assert (record["service"], record["severity"], record["severityNumber"]) == (
        "checkout",
        "ERROR",  # from the number's range
        17,
    )
    assert record["body"] == '{"event":"checkout","items":3}'
    assert record["attributes"] == {"http.method": "POST"}


def test_missing_fields_are_left_empty():
    assert log_record({}, TRACE) == {
        "timestamp": 0,
        "traceID": TRACE,
        "spanID": "",
        "service": "",
        "severity": "",
        "severityNumber": None,
        "body": "",
        "attributes": {},
    }
    assert log_record(data_prepper_log(severityNumber=0, severityText=""))["severityNumber"] is None


def test_trace_logs_body_is_one_sorted_capped_search():
    assert trace_logs_body(TRACE, 50) == {
        "size": 50,
        "track_total_hits": True,
        "query": {"bool": {"filter": [{"term": {"traceId": TRACE}}]}},
        "sort": [{"time": {"order": "asc", "unmapped_type": "date"}}],
    }


def hits(*sources: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    found = [{"_source": source} for source in sources]
    return {"hits": {"total": {"value": len(found) if total is None else total}, "hits": found}}


def test_log_reader_reads_in_time_order_and_tells_a_cap():
    later = data_prepper_log(time="2023-11-14T22:13:21Z", body="later")
    no_time = data_prepper_log(time=None, observedTimestamp="2023-11-14T22:13:20.5Z")
    client = FakeClient(hits(later, no_time, data_prepper_log(), total=5))
    reader = LogReader(client, "logs-*", 3)  # type: ignore[arg-type]
    records, capped = asyncio.run(reader.trace_logs(TRACE))
    assert [r["body"] for r in records] == ["cart is slow", "cart is slow", "later"]
    assert [r["timestamp"] for r in records] == [T_US, T_US - 123_456 + 500_000, T_US + 876_544]
    assert capped
    [request] = client.requests
    assert request["index"] == "logs-*"
    assert request["ignore_unavailable"] and request["allow_no_indices"]
    assert request["body"] == trace_logs_body(TRACE, 3)
    assert asyncio.run(LogReader(FakeClient(), "", 3).trace_logs(TRACE)) == ([], False)  # type: ignore[arg-type]


# --- exemplars ------------------------------------------------------------------------------


def test_exemplars_body():
    body = exemplars_body("api", "GET /", 1_000, 61_000, ("SPAN_KIND_SERVER",))
    assert body["size"] == EXEMPLAR_DOCUMENTS
    assert body["sort"] == [{"window_end": "desc"}]
    assert body["query"]["bool"]["filter"] == [
        {"term": {"kind": KIND_RED}},
        {"terms": {"metric": [CALLS_METRIC, DURATION_METRIC]}},
        {"term": {"service.name": "api"}},
        {"exists": {"field": "exemplar_trace_ids"}},
        {"range": {"window_end": {"gt": 1_000, "lte": 61_000, "format": "epoch_millis"}}},
        {"term": {"span.name": "GET /"}},
        {"terms": {"span.kind": ["SPAN_KIND_SERVER"]}},
    ]
    assert "exemplar_trace_ids" in body["_source"]
    assert len(exemplars_body("api", None, 0, 1)["query"]["bool"]["filter"]) == 5


def red(end: str, metric: str, name: str | None, ids: list[str], **numbers: Any) -> dict:
    doc: dict[str, Any] = {"window_end": end, "metric": metric, "exemplar_trace_ids": ids}
    if name is not None:
        doc["span.name"] = name
    return {**doc, **numbers}


def test_exemplars_one_per_trace_newest_then_slowest():
    late, early = "2023-11-14T22:13:35.000Z", "2023-11-14T22:13:20.000Z"
    sources = [
        red(late, CALLS_METRIC, "GET /", ["aa"]),
        red(late, DURATION_METRIC, "GET /", ["aa"], count=2, sum=30.0),
        red(late, DURATION_METRIC, "POST /", ["bb"], count=1, sum=90.0),
        red(early, CALLS_METRIC, "GET /", ["AA", "cc"]),  # aa again, older: not repeated
        red(early, CALLS_METRIC, None, ["dd"]),  # the overflow series: no span name
    ]
    at_late, at_early = 1_700_000_015_000, 1_700_000_000_000
    assert exemplars(sources) == [
        {"traceID": "bb", "timestamp": at_late, "operation": "POST /", "durationMs": 90.0},
        {"traceID": "aa", "timestamp": at_late, "operation": "GET /", "durationMs": 15.0},
        {"traceID": "cc", "timestamp": at_early, "operation": "GET /", "durationMs": None},
        {"traceID": "dd", "timestamp": at_early, "operation": None, "durationMs": None},
    ]
    assert len(exemplars(sources, limit=2)) == 2
    many = [red(late, CALLS_METRIC, "GET /", [f"{i:032x}" for i in range(30)])]
    assert len(exemplars(many)) == 20


def test_exemplars_query_parameters():
    pairs = [("service", ""), ("service", " api "), ("operation", "GET /"), ("endTs", "61000")]
    assert parse_exemplars_query([*pairs, ("lookback", "60000")], 0) == (
        "api",
        "GET /",
        1_000,
        61_000,
        (),
    )
    now = 10_000_000
    assert parse_exemplars_query([("service", "api"), ("spanKind", "server")], now) == (
        "api",
        None,
        now - 3_600_000,  # an hour back, as the other metrics endpoints
        now,
        ("SPAN_KIND_SERVER",),
    )
    for bad, param in (
        ([], "service"),
        ([("service", "api"), ("endTs", "soon")], "endTs"),
        ([("service", "api"), ("lookback", "-1")], "lookback"),
        ([("service", "api"), ("spanKind", "sideways")], "spanKind"),
    ):
        with pytest.raises(ParamError) as caught:
            parse_exemplars_query(bad, now)
        assert caught.value.param == param


# --- handlers -------------------------------------------------------------------------------


def serve(
    client: FakeClient, *paths: str, visible: Any = None, **settings: Any
) -> list[httpx.Response]:
    routes = [
        Route("/api/traces/{trace_id}/logs", trace_logs),
        Route("/api/ui/config", ui_config),
        Route("/api/metrics/exemplars", metrics_exemplars),
    ]
    app = handlers_app(routes, client, Settings(store_index_prefix="t-", **settings))
    if visible is not None:
        app.state.visible_log_record = visible
    return get_all(app, paths)


def test_trace_logs_handler_answers_the_envelope():
    client = FakeClient(hits(data_prepper_log()), hits(data_prepper_log(), total=2))
    short_id = TRACE[16:]
    full, capped = serve(
        client,
        f"/api/traces/{TRACE.upper()}/logs",
        f"/api/traces/{short_id}/logs",
        query_max_logs=1,
    )
    body = full.json()
    assert full.status_code == 200
    assert set(body) == {"data", "total", "limit", "offset", "errors"}
    assert (body["total"], body["errors"]) == (1, None)
    assert body["data"][0]["attributes"] == {"http.method": "GET", "retries": 2}
    assert client.requests[0]["body"]["query"]["bool"]["filter"] == [{"term": {"traceId": TRACE}}]
    assert client.requests[1]["body"]["query"]["bool"]["filter"] == [
        {"term": {"traceId": short_id.rjust(32, "0")}}
    ]
    assert client.requests[0]["index"] == "logs-otel-v1*"
    [note] = capped.json()["warnings"]
    assert "query_max_logs=1" in note


def test_trace_logs_handler_applies_the_visibility_hook():
    seen: list[tuple[Request, dict]] = []

    def visible(request: Request, record: dict[str, Any]) -> bool:
        seen.append((request, record))
        return record["service"] != "secret"

    client = FakeClient(hits(data_prepper_log(), data_prepper_log(serviceName="secret")))
    [reply] = serve(client, f"/api/traces/{TRACE}/logs", visible=visible)
    assert [r["service"] for r in reply.json()["data"]] == ["cart"]
    assert reply.json()["total"] == 1
    assert len(seen) == 2 and isinstance(seen[0][0], Request)


def test_trace_logs_off_bad_ids_and_ui_config():
    client = FakeClient()
    off, bad, config = serve(
        client,
        f"/api/traces/{TRACE}/logs",
        "/api/traces/not-hex/logs",
        "/api/ui/config",
        query_logs_index="",
        query_log_links=[{"name": "Logs", "url": "https://l/?q={trace_id}"}],
    )
    assert off.json()["data"] == [] and "query_logs_index" in off.json()["warnings"][0]
    assert client.requests == []  # nothing searched
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["msg"].startswith("traceID: ")
    assert config.json() == {
        "logLinks": [{"name": "Logs", "url": "https://l/?q={trace_id}"}],
        "logs": False,
    }


def test_exemplars_handler():
    source = red("2023-11-14T22:13:35Z", DURATION_METRIC, "GET /", ["ab" * 16], count=1, sum=4.5)
    client = FakeClient(hits(source))
    ok, missing = serve(
        client,
        "/api/metrics/exemplars?service=api&operation=GET%20/&endTs=1700000020000&lookback=60000",
        "/api/metrics/exemplars?operation=x",
    )
    assert ok.json()["data"] == [
        {
            "traceID": "ab" * 16,
            "timestamp": 1_700_000_015_000,
            "operation": "GET /",
            "durationMs": 4.5,
        }
    ]
    [request] = client.requests
    assert request["index"] == "t-spansieve-metrics-*"
    assert request["body"] == exemplars_body("api", "GET /", 1_699_999_960_000, 1_700_000_020_000)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["msg"] == "service: is required"
