"""Trace generation: reproducible, well-formed, with the configured errors and timings."""

import textwrap
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.loadgen.generator import (
    CLIENT,
    CONSUMER,
    PRODUCER,
    SERVER,
    GeneratedTrace,
    TraceGenerator,
    encode_request,
)
from pipeline.loadgen.pool import build_pool
from pipeline.loadgen.topology import load_topology, parse_topology
from pipeline.wire.otlp import ExportTraceServiceRequest

START = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def estate():
    return load_topology("topologies/estate-30.yaml")


def play(topology, requests: int, seed: int = 1, elapsed: float = 0.0) -> list[GeneratedTrace]:
    generator = TraceGenerator(topology, seed)
    traces = []
    for number in range(requests):
        traces.extend(generator.generate(START + number * 1_000_000, elapsed))
    return traces


def attributes(span) -> dict:
    return dict(span.attributes)


def check_trace(trace: GeneratedTrace) -> None:
    """Ids, parents and timing of one trace (times compared on the hosts' true clocks)."""
    by_id = {span.span_id: span for span in trace.spans}
    assert len(by_id) == len(trace.spans), "span ids are unique within a trace"
    roots = [s for s in trace.spans if not s.parent_span_id]
    assert len(roots) == 1
    for span in trace.spans:
        assert span.end >= span.start
        if not span.parent_span_id:
            continue
        parent = by_id[span.parent_span_id]
        start = span.start - span.instance.skew_ns
        end = span.end - span.instance.skew_ns
        parent_start = parent.start - parent.instance.skew_ns
        parent_end = parent.end - parent.instance.skew_ns
        if span.kind == CONSUMER:
            assert parent.kind == PRODUCER
            assert start >= parent_end, "a consumer picks the message up after it was sent"
        else:
            assert parent_start <= start and end <= parent_end, (span.name, parent.name)


def test_same_seed_gives_byte_identical_requests(estate):
    first = encode_request(play(estate, 300, seed=42)).SerializeToString()
    again = encode_request(play(estate, 300, seed=42)).SerializeToString()
    other = encode_request(play(estate, 300, seed=43)).SerializeToString()
    assert first == again
    assert first != other
    pool = [b.body for b in build_pool(TraceGenerator(estate, 9), 3, 500)]
    assert pool == [b.body for b in build_pool(TraceGenerator(estate, 9), 3, 500)]


def test_traces_are_well_formed(estate):
    traces = play(estate, 2000)
    for trace in traces:
        check_trace(trace)
    assert len({t.trace_id for t in traces}) == len(traces)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**63), elapsed=st.sampled_from([0.0, 100.0]))
def test_any_seed_gives_well_formed_traces(estate, seed, elapsed):
    for trace in play(estate, 40, seed=seed, elapsed=elapsed):
        check_trace(trace)


def test_about_ten_spans_per_trace(estate):
    traces = play(estate, 5000)
    average = sum(len(t.spans) for t in traces) / len(traces)
    assert 8 <= average <= 13


def test_encoding_groups_spans_per_instance(estate):
    traces = play(estate, 200)
    request = ExportTraceServiceRequest.FromString(encode_request(traces).SerializeToString())
    seen = set()
    total = 0
    for resource_spans in request.resource_spans:
        resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
        key = resource["service.instance.id"]
        assert key not in seen
        seen.add(key)
        assert resource["deployment.environment"] == "production"
        assert resource["host.name"].startswith("ip-10-")
        for span in resource_spans.scope_spans[0].spans:
            total += 1
            assert span.flags & 0x100
    assert total == sum(len(t.spans) for t in traces)


def test_semantic_convention_attributes(estate):
    spans = [span for trace in play(estate, 500) for span in trace.spans]
    kinds = Counter()
    for span in spans:
        a = attributes(span)
        if "http.route" in a:
            kinds["http-server"] += 1
            assert {"http.request.method", "url.path", "http.response.status_code"} <= a.keys()
            assert "{" not in a["url.path"]
        if "url.full" in a:
            kinds["http-client"] += 1
            assert a["url.full"].startswith("http://")
        if a.get("rpc.system") == "grpc":
            kinds["rpc"] += 1
            assert {"rpc.service", "rpc.method", "rpc.grpc.status_code"} <= a.keys()
        if "db.system" in a:
            kinds["db"] += 1
            assert {"db.statement", "db.operation.name", "server.address"} <= a.keys()
        if "messaging.system" in a:
            kinds[f"messaging-{span.kind}"] += 1
            assert a["messaging.destination.name"]
    assert kinds["http-server"] and kinds["http-client"] and kinds["rpc"] and kinds["db"]
    assert kinds[f"messaging-{PRODUCER}"] and kinds[f"messaging-{CONSUMER}"]


def test_link_continuations_point_at_their_producer(estate):
    traces = play(estate, 3000)
    producers = {(t.trace_id, s.span_id) for t in traces for s in t.spans if s.kind == PRODUCER}
    linked = [s for t in traces for s in t.spans if s.links]
    assert linked
    for span in linked:
        assert span.kind == CONSUMER and not span.parent_span_id
        assert span.links[0] in producers


LEAF = """
name: errors
error_propagation: 0.0
entry_points: [{service: front, operation: "GET /"}]
services:
  front:
    operations:
      "GET /":
        latency: {median: 1ms}
        calls:
          - {call: back, operation: Get}
          - {db: pg, statement: "SELECT 1", table: t}
  back:
    protocol: grpc
    instances: 1
    clock_skew: {0: 2s}
    error_rate: 0.2
    operations:
      Get: {latency: {median: 1ms}}
datastores:
  pg: {system: postgresql, host: pg, port: 5432, latency: {median: 1ms}, error_rate: 0.05}
bad_deploy: {service: back, at: 60s, error_rate: 0.6, version: 9.9.9}
"""


def error_share(traces, name: str, kind: int = SERVER) -> float:
    spans = [s for t in traces for s in t.spans if s.name == name and s.kind == kind]
    return sum(s.error is not None for s in spans) / len(spans)


def test_error_rates_follow_the_topology():
    topology = parse_topology(textwrap.dedent(LEAF))
    traces = play(topology, 6000, seed=5)
    assert error_share(traces, "shop.back/Get") == pytest.approx(0.2, abs=0.025)
    assert error_share(traces, "SELECT t", CLIENT) == pytest.approx(0.05, abs=0.012)
    # error_propagation 0: the front end fails only on its own (error_rate 0)
    assert error_share(traces, "GET /") == 0.0
    failed = [
        s
        for t in traces
        for s in t.spans
        if s.name == "shop.back/Get" and s.kind == SERVER and s.error
    ]
    assert all(dict(s.attributes)["rpc.grpc.status_code"] != 0 for s in failed)
    assert all(s.events and s.events[0][0] == "exception" for s in failed)


def test_spans_say_how_replays_may_fail_them():
    """What the pool varies errors with: each span's own error rate (after a bad deploy,
    the deploy's), the status message a replay gives it, and for a client span the server
    span whose outcome it reports."""
    topology = parse_topology(textwrap.dedent(LEAF))
    for elapsed, back_rate in ((0.0, 0.2), (60.0, 0.6)):
        [trace] = TraceGenerator(topology, 2).generate(START, elapsed)
        by_name = {(s.name, s.kind): s for s in trace.spans}
        server = by_name["shop.back/Get", SERVER]
        client = by_name["shop.back/Get", CLIENT]
        db = by_name["SELECT t", CLIENT]
        front = by_name["GET /", SERVER]
        assert (server.error_rate, server.failure, server.reports) == (
            back_rate,
            "gRPC status 14",
            b"",
        )
        assert (client.error_rate, client.failure, client.reports) == (
            0.0,
            "gRPC status 14",
            server.span_id,
        )
        assert (db.error_rate, db.failure) == (0.05, "query failed")
        assert (front.error_rate, front.failure) == (0.0, "HTTP 500")


def test_bad_deploy_raises_the_error_rate_from_its_start():
    topology = parse_topology(textwrap.dedent(LEAF))
    generator = TraceGenerator(topology, 3)
    before = [t for n in range(3000) for t in generator.generate(START + n, 59.9)]
    after = [t for n in range(3000) for t in generator.generate(START + n, 60.0)]
    assert error_share(before, "shop.back/Get") == pytest.approx(0.2, abs=0.03)
    assert error_share(after, "shop.back/Get") == pytest.approx(0.6, abs=0.03)
    version = {s.instance.version for t in after for s in t.spans if s.instance.service == "back"}
    assert version == {"9.9.9"}


def test_skewed_hosts_report_shifted_times():
    topology = parse_topology(textwrap.dedent(LEAF))
    for trace in play(topology, 50):
        client = next(s for s in trace.spans if s.kind == 3 and s.name == "shop.back/Get")
        server = next(s for s in trace.spans if s.kind == 2 and s.name == "shop.back/Get")
        # the server's clock is 2 s ahead: it seems to start after its client ended
        assert server.start - client.start > 1.9e9
        assert server.instance.skew_ns == 2_000_000_000
