"""The Grafana dashboard queries only what SpanMetricsCollector exposes.

Every PromQL ``expr`` (and the ``service`` variable's ``label_values`` query) is taken
apart with regular expressions: the metric names (selectors ``name{...}``, ``name[...]``
or bare identifiers that are no PromQL function or keyword), the label names of their
matchers, of ``by (...)`` and of ``{{label}}`` in the legend. Each must be a sample name
(or a label of it) in a scrape of a collector fed with a small window.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics.prometheus import SpanMetricsCollector
from pipeline.metrics.red import RedAggregator
from pipeline.metrics.service_graph import ServiceGraph
from tests.unit.metrics.spans import span, tid, trace

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "spansieve-span-metrics.json"
)
S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_010 * S

IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
# PromQL functions, aggregations and keywords (not metric names).
_WORDS = """
    abs absent absent_over_time avg avg_over_time bool bottomk by ceil changes clamp
    clamp_max clamp_min count count_over_time count_values day_of_month day_of_week delta
    deriv exp floor group group_left group_right histogram_quantile holt_winters idelta
    ignoring increase inf irate label_join label_replace last_over_time ln log10 log2
    max max_over_time min min_over_time nan offset on or and unless predict_linear quantile
    quantile_over_time rate resets round scalar sgn sort sort_desc sqrt stddev stdvar sum
    sum_over_time time timestamp topk vector without le
"""
PROMQL_WORDS = frozenset(_WORDS.split())


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    out = []
    for p in board["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def targets(board: dict) -> list[dict]:
    return [t for p in panels(board) for t in p.get("targets", [])]


def exposed() -> dict[str, set[str]]:
    """{sample name: label names} of a collector fed one RED and one service-graph window."""
    red = RedAggregator()
    graph = ServiceGraph()
    data = trace(
        span("api", "GET /", "server", T0, T0 + 3 * MS, span_id=b"\x01" * 8),
        span("api", "q", "client", T0, T0 + 2 * MS, span_id=b"\x02" * 8, parent=b"\x01" * 8),
        span("db", "q", "server", T0, T0 + MS, span_id=b"\x03" * 8, parent=b"\x02" * 8,
             status="error"),
    )  # fmt: skip
    red.add_trace(data, tid(1), True)
    graph.add_trace(data, tid(1), True)
    collector = SpanMetricsCollector()
    for w in red.close(T0 + 15 * S):
        collector.add_red_window(w)
    for w in graph.close(T0 + 15 * S):
        collector.add_graph_window(w)
    reg = CollectorRegistry()
    reg.register(collector)
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


class Parsed:
    """What one PromQL expression refers to."""

    def __init__(self, expr: str) -> None:
        text = STRING.sub('""', expr)
        self.grouping = {
            label.strip()
            for group in GROUPING.findall(text)
            for label in group.split(",")
            if label.strip()
        }
        text = GROUPING.sub(" ", text)
        self.matchers: dict[str, set[str]] = {}
        for name, body in SELECTOR.findall(text):
            self.matchers.setdefault(name, set()).update(MATCHER.findall(body))
        text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
        self.metrics = set(self.matchers) | {
            w for w in IDENT.findall(text) if w not in PROMQL_WORDS
        }


def test_the_parser_finds_names_and_labels() -> None:
    p = Parsed(
        'histogram_quantile(0.9, sum by (service_name, le) (rate(a_bucket{x=~"$v", y!="by"}'
        "[$__rate_interval]))) / on() b_total"
    )
    assert p.metrics == {"a_bucket", "b_total"}
    assert p.matchers == {"a_bucket": {"x", "y"}}
    assert p.grouping == {"service_name", "le"}


def test_dashboard_has_the_data_source_and_service_variables() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["service"]["includeAll"] and variables["service"]["multi"]
    for p in panels(board):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert "$service" in t["expr"], p["title"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))


def test_every_metric_and_label_of_the_dashboard_is_exposed() -> None:
    names = exposed()
    board = dashboard()
    checked = set()
    for t in targets(board):
        p = Parsed(t["expr"])
        assert p.metrics, t["expr"]
        for metric in p.metrics:
            assert metric in names, f"{metric} is not exposed (in {t['expr']!r})"
            checked.add(metric)
            for label in p.matchers.get(metric, set()) | p.grouping:
                assert label in names[metric], f"{metric} has no label {label!r}"
        legend = set(LEGEND.findall(t.get("legendFormat", "")))
        assert legend <= p.grouping, f"legend {legend - p.grouping} is not grouped by"
    assert checked == {
        "traces_span_metrics_calls_total",
        "traces_span_metrics_duration_milliseconds_bucket",
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
    }
    # the service variable: label_values(metric, label)
    (service,) = [v for v in board["templating"]["list"] if v["name"] == "service"]
    m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", service["query"]["query"])
    assert m is not None
    assert m.group(2) in names[m.group(1)]


@pytest.mark.parametrize("quantile", ["0.50", "0.95", "0.99"])
def test_latency_panel_has_each_quantile(quantile: str) -> None:
    exprs = [t["expr"] for t in targets(dashboard())]
    assert any(
        e.startswith(f"histogram_quantile({quantile}, sum by (service_name, le)") for e in exprs
    )
