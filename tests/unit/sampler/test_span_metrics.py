"""Span metrics wired into the sampler (settings.span_metrics): every span, kept or
dropped, late ones included, counted into RED series and service-graph edges, sent per
closed window as OTLP metrics; read back with the opentelemetry-proto classes only."""

from __future__ import annotations

import asyncio
import struct
from collections import Counter

import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.sampler import metrics
from tests.unit.sampler.harness import (
    NS,
    POLICIES,
    T0,
    FakeClock,
    Gateway,
    SpansTopic,
    TraceMaker,
    Worker,
    merged,
    policy_of,
    settings_for,
)

WINDOW = 10.0  # T0 is a multiple of 10 s: windows [T0, T0+10), [T0+10, T0+20)
GRACE = 2.0  # with the policies' decision_wait of 5 s: a window closes 7 s after its end


class Stack:
    def __init__(self, tmp_path, **settings) -> None:
        self.settings = settings_for(tmp_path, **settings)
        self.clock = FakeClock()
        self.topic = SpansTopic(self.settings.partitions, self.clock)
        self.gateway = Gateway(self.settings, self.topic)
        self.worker = Worker(self.settings, self.topic, tmp_path / "worker")
        self.outputs = self.worker.outputs

    async def export(self, *requests) -> None:
        await self.gateway.export(merged(*requests))

    async def seconds(self, count: int) -> None:
        for _ in range(count):
            self.clock.advance(1.0)
            self.topic.tick()
            await self.worker.consume()


def checkout(trace: TraceMaker, failing: bool) -> ExportTraceServiceRequest:
    """web (root SERVER) -> web CLIENT -> api SERVER, the api span failing if ``failing``."""
    request = ExportTraceServiceRequest()
    trace.add(request, "web", "GET /checkout", root=True)
    client = trace.add(request, "web", "POST api")
    client.kind = Span.SPAN_KIND_CLIENT
    server = trace.add(request, "api", "charge", error=failing)
    server.kind = Span.SPAN_KIND_SERVER
    server.parent_span_id = client.span_id
    return request


def single(trace: TraceMaker, service: str, name: str, *, root=False, error=False):
    request = ExportTraceServiceRequest()
    trace.add(request, service, name, root=root, error=error)
    return request


async def scenario(stack: Stack) -> dict[str, TraceMaker]:
    """Two windows of traces, errors and not (kept and dropped), late spans of both."""
    t1, t2 = TraceMaker(start=T0), TraceMaker(start=T0)
    await stack.export(checkout(t1, failing=True), checkout(t2, failing=False))
    await stack.seconds(7)  # decided (decision_wait 5 s); window 1 still open
    assert [trace_id for _, trace_id, _ in stack.outputs.kept] == [t1.trace_id]
    # Late spans (ending in window 1) of the kept and of the dropped trace.
    await stack.export(single(t1, "api", "db"), single(t2, "api", "db"))
    await stack.seconds(5)  # T0 + 12
    t3, t4 = TraceMaker(start=T0 + 12), TraceMaker(start=T0 + 12)
    await stack.export(
        single(t3, "web", "GET /checkout", root=True),
        single(t4, "api", "charge", root=True, error=True),
    )
    await stack.seconds(20)  # T0 + 32: both windows closed (T0 + 17, T0 + 27)
    return {"t1": t1, "t2": t2, "t3": t3, "t4": t4}


def attrs(point) -> dict[str, object]:
    out = {}
    for kv in point.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def decoded(outputs, kind: str) -> list[tuple[int, int, ExportMetricsServiceRequest]]:
    """(partition, window start from the key, request) of every message of ``kind``."""
    out = []
    for partition, sent_kind, key, value in outputs.metrics:
        if sent_kind == kind:
            key_partition, start = struct.unpack(">IQ", key)
            assert key_partition == partition
            out.append((partition, start, ExportMetricsServiceRequest.FromString(value)))
    return out


def red_calls(outputs) -> Counter:
    """calls per (window start, service, span name, status code), over all partitions."""
    calls: Counter = Counter()
    for _partition, start, request in decoded(outputs, "red"):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != "traces.span.metrics.calls":
                        continue
                    assert metric.sum.aggregation_temporality == 1  # DELTA
                    for point in metric.sum.data_points:
                        a = attrs(point)
                        assert point.start_time_unix_nano == start
                        assert point.time_unix_nano == start + int(WINDOW * NS)
                        # Counted before the sampler tags kept spans with their policy.
                        assert a["sampling.policy"] == "none"
                        key = (start, a["service.name"], a["span.name"], a["status.code"])
                        calls[key] += point.as_int
    return calls


def graph_edges(outputs) -> tuple[Counter, Counter]:
    """requests and failed per (client, server, connection_type), over all windows."""
    requests: Counter = Counter()
    failed: Counter = Counter()
    for _partition, _start, request in decoded(outputs, "service-graph"):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    target = {
                        "traces_service_graph_request_total": requests,
                        "traces_service_graph_request_failed_total": failed,
                    }.get(metric.name)
                    if target is None:
                        continue
                    for point in metric.sum.data_points:
                        a = attrs(point)
                        target[(a["client"], a["server"], a["connection_type"])] += point.as_int
    return requests, failed


def test_every_span_is_counted_once_per_window_and_sent_as_otlp(tmp_path):
    async def run():
        stack = Stack(
            tmp_path,
            span_metrics=True,
            span_metrics_window=WINDOW,
            span_metrics_grace=GRACE,
            span_metrics_dimensions="sampling.policy=none",
        )
        traces = await scenario(stack)
        w1, w2 = int(T0 * NS), int((T0 + WINDOW) * NS)
        assert red_calls(stack.outputs) == {
            (w1, "web", "GET /checkout", "STATUS_CODE_UNSET"): 2,
            (w1, "web", "POST api", "STATUS_CODE_UNSET"): 2,
            (w1, "api", "charge", "STATUS_CODE_ERROR"): 1,
            (w1, "api", "charge", "STATUS_CODE_UNSET"): 1,
            (w1, "api", "db", "STATUS_CODE_UNSET"): 2,  # late spans, kept and dropped
            (w2, "web", "GET /checkout", "STATUS_CODE_UNSET"): 1,
            (w2, "api", "charge", "STATUS_CODE_ERROR"): 1,
        }
        requests, failed = graph_edges(stack.outputs)
        assert requests == {
            ("user", "web", "virtual_node"): 3,
            ("web", "api", ""): 2,
            ("user", "api", "virtual_node"): 1,
        }
        assert failed == {("web", "api", ""): 1, ("user", "api", "virtual_node"): 1}
        # One message per kind, partition and window: a re-sent window has the same key.
        keys = [(kind, key) for _, kind, key, _ in stack.outputs.metrics]
        assert len(keys) == len(set(keys))
        # Kept traces still carry their policy; sampling is unchanged.
        kept = {trace_id for _, trace_id, _ in stack.outputs.kept}
        assert kept == {traces["t1"].trace_id, traces["t4"].trace_id}
        assert {policy_of(s) for s in stack.outputs.kept_spans(traces["t1"].trace_id)} == {"errors"}
        # Nothing more to send once the windows are closed.
        sent = len(stack.outputs.metrics)
        await stack.seconds(20)
        assert len(stack.outputs.metrics) == sent

    asyncio.run(run())


def pair(endpoint: dict | None) -> tuple[str, str] | None:
    return None if endpoint is None else (endpoint["domain"], endpoint["resource"])


def test_service_map_documents_are_published_per_window(tmp_path):
    """Data Prepper's documents from the client -> server pairs, with the root's name."""

    async def run():
        stack = Stack(tmp_path, **METRICS_ON)
        await scenario(stack)
        docs = {}
        for _partition, kind, _key, value in stack.outputs.metrics:
            if kind == "service-map":
                docs.update({doc["hashId"]: doc for doc in orjson.loads(value)})
        relationships = {
            (
                d["serviceName"],
                d["kind"],
                pair(d["destination"]),
                pair(d["target"]),
                d["traceGroupName"],
            )
            for d in docs.values()
        }
        assert relationships == {
            (
                "web",
                "SPAN_KIND_CLIENT",
                ("api", "charge"),
                None,
                "GET /checkout",
            ),
            (
                "api",
                "SPAN_KIND_SERVER",
                None,
                ("api", "charge"),
                "GET /checkout",
            ),
            ("web", None, None, None, "GET /checkout"),  # t3: web alone
            ("api", None, None, None, "charge"),  # t4: api alone, its root is "charge"
        }

    asyncio.run(run())


def test_windows_stay_open_until_decision_wait_and_grace_have_passed(tmp_path):
    async def run():
        stack = Stack(
            tmp_path, span_metrics=True, span_metrics_window=WINDOW, span_metrics_grace=GRACE
        )
        trace = TraceMaker(start=T0)
        await stack.export(single(trace, "web", "GET /", root=True))
        await stack.seconds(16)  # T0 + 16: watermark T0 + 9, window 1 ends at T0 + 10
        assert stack.outputs.metrics == []
        await stack.seconds(1)  # T0 + 17: watermark T0 + 10
        assert sorted(kind for _, kind, _, _ in stack.outputs.metrics) == [
            "red",
            "service-graph",
            "service-map",
        ]

    asyncio.run(run())


def test_forget_drops_the_open_windows_of_a_partition(tmp_path):
    async def run():
        stack = Stack(tmp_path, span_metrics=True, span_metrics_window=WINDOW)
        trace = TraceMaker(start=T0)
        await stack.export(single(trace, "web", "GET /", root=True))
        await stack.seconds(7)
        sampler = stack.worker.sampler
        assert sampler.span_metrics.partitions() != []
        for partition in sampler.span_metrics.partitions():
            sampler.forget(partition)
        assert sampler.span_metrics.partitions() == []

    asyncio.run(run())


def test_span_metrics_off_sends_nothing_and_samples_as_before(tmp_path):
    async def run():
        stack = Stack(tmp_path / "off")
        assert stack.worker.sampler.span_metrics is None
        traces = await scenario(stack)
        assert stack.outputs.metrics == []
        kept = Counter(trace_id for _, trace_id, _ in stack.outputs.kept)
        assert set(kept) == {traces["t1"].trace_id, traces["t4"].trace_id}
        return [(p, len(v)) for p, _, v in stack.outputs.kept]

    async def run_on():
        stack = Stack(tmp_path / "on", span_metrics=True)
        await scenario(stack)
        return [(p, len(v)) for p, _, v in stack.outputs.kept]

    # The kept messages are the same (partition and size) with span metrics on or off.
    assert sorted(s for _, s in asyncio.run(run())) == sorted(s for _, s in asyncio.run(run_on()))


class TakeoverStack(Stack):
    """The same stack, whose worker dies after ``kill_at`` ticks (each) and is replaced.

    The new worker restores the decision cache (checkpoints included) from the dead one's
    changelog, less its last ``lost`` messages (still in flight when it died), and its
    consumer starts ``lag`` records before where the dead one stopped (the last commit).
    """

    def __init__(self, tmp_path, kill_at: tuple[int, ...], lag: int, lost: int, **settings) -> None:
        super().__init__(tmp_path, **settings)
        self.tmp_path = tmp_path
        self.kill_at, self.lag, self.lost = kill_at, lag, lost
        self.ticks = self.replaced = 0

    async def seconds(self, count: int) -> None:
        for _ in range(count):
            await super().seconds(1)
            self.ticks += 1
            if self.ticks in self.kill_at:
                self.replace_worker()

    def replace_worker(self) -> None:
        dead = self.worker
        dead.close()
        changelog = dead.decisions.changelog
        self.replaced += 1
        folder = self.tmp_path / f"survivor-{self.replaced}"
        survivor = Worker(self.settings, self.topic, folder, self.outputs)
        survivor.decisions.restore_from(changelog[: len(changelog) - self.lost])
        survivor.start_at(max(0, position - self.lag) for position in dead.positions)
        self.worker = survivor


def latest_windows(outputs) -> None:
    """Keep only the last message sent per (kind, key): a window sent twice counts once."""
    latest = {
        (kind, key): (partition, kind, key, value)
        for partition, kind, key, value in outputs.metrics
    }
    outputs.metrics = list(latest.values())


METRICS_ON = dict(
    span_metrics=True,
    span_metrics_window=WINDOW,
    span_metrics_grace=GRACE,
    span_metrics_dimensions="sampling.policy=none",
)


@pytest.mark.parametrize("kill_at", [(3,), (7,), (8,), (10,), (14,), (16,), (19,), (7, 9, 17)])
@pytest.mark.parametrize(("lag", "lost"), [(0, 0), (3, 0), (2, 1), (4, 2)])
def test_counts_are_exact_when_a_worker_dies_and_another_takes_over(tmp_path, kill_at, lag, lost):
    async def reference():
        stack = Stack(tmp_path / "reference", **METRICS_ON)
        await scenario(stack)
        return red_calls(stack.outputs), graph_edges(stack.outputs)

    async def takeover():
        stack = TakeoverStack(tmp_path / "takeover", kill_at, lag, lost, **METRICS_ON)
        await scenario(stack)
        assert stack.replaced == len(kill_at)
        latest_windows(stack.outputs)
        return red_calls(stack.outputs), graph_edges(stack.outputs)

    assert asyncio.run(takeover()) == asyncio.run(reference())


def total_calls(outputs) -> int:
    return sum(red_calls(outputs).values())


def test_traces_decided_early_are_counted_once_with_their_later_spans(tmp_path):
    """A trace dropped for its size (its later spans follow the cached drop) and traces
    decided early because the buffer is over num_traces: every span counted once."""
    policies = (
        POLICIES.replace("num_traces: 1000", "num_traces: 3") + "maximum_trace_size_bytes: 1500\n"
    )

    oversized, early = metrics.TRACES_OVERSIZED._value.get(), metrics.EARLY_DECISIONS._value.get()

    async def run():
        stack = Stack(tmp_path, policies=policies, **METRICS_ON)
        huge = TraceMaker(start=T0)
        await stack.export(huge.request(5, root=True))
        await stack.seconds(1)
        await stack.export(huge.request(30))  # over 1500 bytes: dropped at once
        await stack.export(huge.request(4))  # later spans: the cached drop, counted late
        small = [TraceMaker(start=T0) for _ in range(6)]  # over num_traces 3: early
        for trace in small:
            await stack.export(trace.request(2, root=True))
            await stack.worker.consume()
        await stack.seconds(30)
        assert stack.worker.sampler.buffer.counts() == (0, 0)
        return total_calls(stack.outputs)

    assert asyncio.run(run()) == 5 + 30 + 4 + 6 * 2
    assert metrics.TRACES_OVERSIZED._value.get() == oversized + 1
    assert metrics.EARLY_DECISIONS._value.get() > early
