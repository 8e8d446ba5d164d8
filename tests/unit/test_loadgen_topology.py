"""Topology files: the shipped estate loads; mistakes are reported with file, line and field."""

import random
import statistics
import textwrap

import pytest

from pipeline.loadgen.generator import latency_draw
from pipeline.loadgen.topology import (
    Latency,
    TopologyError,
    load_topology,
    parse_topology,
)

ESTATE = "topologies/estate-30.yaml"

SMALL = """
name: small
entry_points:
  - {service: web, operation: "GET /"}
services:
  web:
    operations:
      "GET /":
        latency: {median: 2ms}
        calls:
          - {call: api, operation: Get}
  api:
    protocol: grpc
    operations:
      Get:
        latency: {median: 1ms}
"""


def error(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as caught:
        parse_topology(textwrap.dedent(text), "t.yaml")
    return caught.value


def test_the_shipped_estate_loads():
    topology = load_topology(ESTATE)
    assert len(topology.services) == 30
    assert topology.bad_deploy is not None and topology.burst is not None
    assert {d.system for d in topology.datastores.values()} >= {"postgresql", "redis"}
    assert any(s.clock_skew for s in topology.services.values())
    assert any(
        c.continuation == "link" for s in topology.services.values() for c in s.consumes.values()
    )


def test_defaults():
    topology = parse_topology(SMALL)
    assert topology.services["web"].protocol == "http"
    assert topology.services["web"].instances == 2
    assert topology.error_propagation == 0.5
    assert topology.bad_deploy is None and topology.burst is None


def test_unknown_service_in_a_call_names_line_and_field():
    e = error(SMALL.replace("{call: api, operation: Get}", "{call: apj, operation: Get}"))
    assert (e.source, e.line) == ("t.yaml", 11)
    assert e.field == "services.web.operations.GET /.calls[0].call"
    assert "unknown service 'apj'" in e.message and "known: api, web" in e.message
    assert str(e).startswith("t.yaml:11:")


def test_unknown_operation_names_the_operations_there_are():
    e = error(SMALL.replace("operation: Get}", "operation: Put}"))
    assert e.field.endswith("calls[0].operation")
    assert "has no operation 'Put'; it has: Get" in e.message


def test_unknown_key_points_at_the_key():
    e = error(SMALL.replace("latency: {median: 1ms}", "latency: {median: 1ms, sigmaa: 2}"))
    assert (e.line, e.column) == (16, 32)
    assert e.field == "services.api.operations.Get.latency.sigmaa"
    assert "unknown key 'sigmaa'" in e.message and "sigma" in e.message


def test_bad_values_name_the_field():
    e = error(SMALL.replace("latency: {median: 1ms}", "latency: {median: soon}"))
    assert e.field == "services.api.operations.Get.latency.median"
    assert "invalid duration 'soon'" in e.message
    e = error(
        SMALL.replace("latency: {median: 1ms}", "latency: {median: 1ms}\n        error_rate: 2")
    )
    assert (e.line, e.field) == (17, "services.api.operations.Get.error_rate")
    assert "less than or equal to 1" in e.message


def test_several_problems_are_listed_one_a_line():
    e = error(
        SMALL.replace("latency: {median: 2ms}", "latency: {median: soon}").replace(
            "protocol: grpc", "protocol: grpc\n    instances: two"
        )
    )
    lines = str(e).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("t.yaml:9:27: services.web.operations.GET /.latency.median: ")
    assert "invalid duration 'soon'" in lines[0]
    assert lines[1] == "t.yaml:14:16: services.api.instances: expected an integer, got 'two'"
    assert (e.line, e.field) == (9, "services.web.operations.GET /.latency.median")


def test_call_cycles_are_refused():
    text = SMALL.replace(
        "latency: {median: 1ms}",
        "latency: {median: 1ms}\n        calls: [{call: web, operation: GET /}]",
    )
    e = error(text)
    assert "call cycle: web/GET / -> api/Get -> web/GET /" in e.message
    assert (e.line, e.field) == (17, "services.api.operations.Get.calls[0].call")


def test_http_operations_are_method_and_route():
    e = error(
        SMALL.replace('"GET /":', '"fetch":').replace('operation: "GET /"', 'operation: "fetch"')
    )
    assert e.field == "services.web.operations.fetch"
    assert "METHOD /route" in e.message


def test_a_step_has_one_kind():
    e = error(SMALL.replace("{call: api, operation: Get}", "{call: api, operation: Get, db: x}"))
    assert e.field == "services.web.operations.GET /.calls[0]"
    assert "exactly one of call, db, publish, internal, parallel" in e.message


def test_references_to_datastores_and_topics_are_checked():
    e = error(SMALL.replace("{call: api, operation: Get}", "{db: pg, statement: SELECT 1}"))
    assert e.field.endswith("calls[0].db") and "unknown datastore 'pg'" in e.message
    e = error(SMALL.replace("{call: api, operation: Get}", "{publish: orders}"))
    assert e.field.endswith("calls[0].publish") and "unknown topic 'orders'" in e.message


def test_clock_skew_instances_must_exist():
    e = error(SMALL.replace("    protocol: grpc", "    protocol: grpc\n    clock_skew: {3: -2s}"))
    assert e.field == "services.api.clock_skew.3"
    assert "instances are 0..1" in e.message


def test_negative_clock_skew_is_allowed():
    topology = parse_topology(
        SMALL.replace("    protocol: grpc", "    protocol: grpc\n    clock_skew: {1: -250ms}")
    )
    assert topology.services["api"].clock_skew == {1: -0.25}


def test_bad_deploy_service_must_exist():
    e = error(SMALL + "bad_deploy: {service: nope, at: 10s, error_rate: 0.5}\n")
    assert e.field == "bad_deploy.service"


def test_yaml_problems():
    assert "empty" in error("").message
    assert "expected a mapping at the top" in error("- a\n- b\n").message
    e = error(SMALL + "name: again\n")
    assert "duplicate key 'name'" in e.message
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology("/nonexistent/topology.yaml")


@pytest.mark.parametrize(
    "latency",
    [Latency(median=0.002, sigma=0.8), Latency(distribution="pareto", median=0.005, alpha=1.3)],
)
def test_latency_draws_have_the_configured_median(latency):
    draw = latency_draw(latency)
    rng = random.Random(3)
    samples = [draw(rng) for _ in range(20_000)]
    assert statistics.median(samples) == pytest.approx(latency.median * 1e9, rel=0.05)
    assert max(samples) <= latency.cap * 1e9
    assert max(samples) > 3 * latency.median * 1e9  # a heavy tail
