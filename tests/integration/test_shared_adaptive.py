"""The adaptive policy on two workers that pool their traffic in real Redis: the fleet
keeps one target through traffic steps, never drops an error trace, and rides out a
Redis outage on fair shares."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict

import httpx
import orjson
import pytest
import redis
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from pipeline.config.settings import Settings
from pipeline.local.run import free_port, wait_until
from pipeline.policies.adaptive import Adaptive
from pipeline.policies.config import load_policy_text
from pipeline.policies.engine import PolicyEngine
from pipeline.policies.trace import TraceView
from pipeline.shared.health import REDIS_FALLBACK
from pipeline.shared.state import RedisSharedState
from pipeline.shared.traffic import FEATURE, rates_key
from tests.integration.conftest import running_query
from tests.integration.sampling_helpers import (
    make_span,
    post,
    request_of,
    sampling_pipeline,
    worker_metrics,
)
from tests.integration.test_query_sampling import RemoteSampler
from tests.integration.test_shared_percentiles import private_redis
from tests.unit.policies.helpers import span, traces

INTERVAL = 2.0
TARGET = 2_000  # spans a second, for the fleet


def policies(target: float, interval: float, head_interval: float) -> str:
    """Errors first, then the adaptive policy (named "adaptive")."""
    return (
        "decision_wait: 1s\n"
        "policies:\n"
        "  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n"
        "  - name: adaptive\n"
        "    type: adaptive\n"
        f"    adaptive: {{target_spans_per_second: {target}, interval: {interval}s,"
        f" head_interval: {head_interval}s}}\n"
    )


POLICIES = policies(TARGET, INTERVAL, INTERVAL)
ERROR_SHARE = 0.01


def trace_data(service: str, name: str, spans: int, error: bool) -> TracesData:
    root = span(name, 0, 5, status=2 if error else 0)
    children = [span(f"{name}/db", 1, 2) for _ in range(spans - 1)]
    for child in children:
        child.parent_span_id = b"\x01" * 8
    return traces(({"service.name": service}, [root, *children]))


# Two operations of different sizes, with and without an error: 2 spans/trace on average
SHAPES = [
    (trace_data("checkout", "POST /orders", 3, error), 3, error) for error in (False, True)
] + [(trace_data("search", "GET /search", 1, error), 1, error) for error in (False, True)]
OPERATIONS = [("checkout", "POST /orders"), ("search", "GET /search")]


class Fleet:
    """Two workers in one process, each with its own Redis client and engine; a trace
    goes to the worker that owns its id (as partitions split the traces)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=1.0)
        self.prefix = prefix
        self.head: dict[tuple[str, str], float] | None = None  # None: SDKs sample all
        self.states = [RedisSharedState(url, prefix, member=f"worker-{n}") for n in range(2)]
        config = load_policy_text(POLICIES)
        self.engines = [PolicyEngine(config, shared=state) for state in self.states]
        self.rng = random.Random(7)

    def adaptive(self, n: int) -> Adaptive:
        return next(p for p in self.engines[n].policies if isinstance(p, Adaptive))

    def table(self) -> dict | None:
        raw = self.client.get(rates_key(self.prefix, "adaptive"))
        return None if raw is None else orjson.loads(raw)

    def poll_head_rates(self) -> None:
        """What an SDK polling the remote-sampling endpoint would apply."""
        table = self.table()
        if table is not None:
            self.head = {(s, o): p for s, o, p in table["operations"]}

    def run(
        self, seconds: float, traces_per_second: float, head_sampled: bool = False
    ) -> dict[int, list[int]]:
        """Offer traffic in real time (head-sampled at the served rates, polled twice a
        second, when asked); per slot: [kept spans, error traces, errors kept, kept
        spans of worker 0]."""
        by_slot: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        step = 0.05
        deadline = time.time() + seconds
        polled = 0.0
        while (now := time.time()) < deadline:
            if head_sampled and now - polled >= 0.5:
                self.poll_head_rates()
                polled = now
            row = by_slot[int(now // INTERVAL)]
            for _ in range(round(traces_per_second * step)):
                error = self.rng.random() < ERROR_SHARE
                shape = self.rng.randrange(2)
                if head_sampled and self.head is not None:
                    rate = self.head.get(OPERATIONS[shape], 1.0)
                    if self.rng.random() >= rate:
                        continue
                data, spans, _ = SHAPES[shape * 2 + error]
                trace_id = self.rng.randbytes(16)
                worker = trace_id[0] & 1
                decision = self.engines[worker].evaluate(TraceView(data, trace_id))
                if decision.sampled:
                    row[0] += spans
                    row[3] += spans if worker == 0 else 0
                row[1] += error
                row[2] += error and decision.sampled
            time.sleep(max(0.0, now + step - time.time()))
        return dict(by_slot)

    def close(self) -> None:
        for state in self.states:
            state.close()
        self.client.close()


def whole_slots(by_slot: dict[int, list[int]]) -> list[list[int]]:
    """The slots the run covered entirely, in order."""
    slots = sorted(by_slot)
    return [by_slot[s] for s in slots[1:-1]]


def kept_per_second(row: list[int]) -> float:
    return row[0] / INTERVAL


def settle(fleet: Fleet) -> None:
    """Both workers counted in the fleet and pooling."""
    assert wait_until(lambda: [s.live_workers() for s in fleet.states] == [2, 2], "2 workers", 15)
    fleet.run(3 * INTERVAL, 1_000)
    assert all(fleet.adaptive(n).rates.pooled for n in range(2))


def test_two_workers_hold_one_target_through_traffic_steps(stack: Settings):
    """1 500 traces/s (3 000 spans/s), then x2, then x0.5, for a target of 2 000 spans/s
    across both workers. From the third interval after each step, every interval's
    kept volume of the fleet is within 10 % of the target (the first keeps the old
    probabilities for the new traffic, the second switches a quarter in), both workers
    hold the same probabilities, and no error trace is dropped."""
    fleet = Fleet(stack.redis_url, f"it-{uuid.uuid4().hex[:8]}")
    try:
        settle(fleet)
        for rate in (1_500, 3_000, 1_500):
            slots = whole_slots(fleet.run(5 * INTERVAL + 0.5, rate))
            kept = [kept_per_second(row) for row in slots]
            for value in kept[2:]:
                assert 0.9 * TARGET <= value <= 1.1 * TARGET, (rate, kept)
            assert all(row[1] == row[2] for row in slots), "an error trace was dropped"
            # each worker keeps about half: one target, not one each
            for row in slots[2:]:
                assert 0.35 <= row[3] / row[0] <= 0.65, slots
            probabilities = [fleet.adaptive(n).rates.probabilities for n in range(2)]
            assert probabilities[0] == probabilities[1]
            assert all(fleet.adaptive(n).rates.pooled for n in range(2))
    finally:
        fleet.close()


def test_head_sampling_rates_settle_and_follow_the_traffic(stack: Settings):
    """The loop an SDK closes: traffic head-sampled at the served rates. 750 traces/s of
    checkout (3 spans) and of search (1 span), 1 % errors, against 2 000 spans/s: search
    fits its share and stays at 1, checkout settles near (2 000 - 750 - errors) / 2 250
    = 0.54. Raw traffic doubles: both get about an equal share of 990 spans/s, search
    0.66 and checkout 0.22. Meanwhile the tail keeps the target."""
    fleet = Fleet(stack.redis_url, f"it-{uuid.uuid4().hex[:8]}")
    checkout, search = OPERATIONS
    try:
        settle(fleet)
        served = []
        for rate in (1_500, 3_000):
            slots = whole_slots(fleet.run(10 * INTERVAL, rate, head_sampled=True))
            assert fleet.head is not None
            served.append(dict(fleet.head))
            for value in [kept_per_second(row) for row in slots][-3:]:
                assert 0.9 * TARGET <= value <= 1.1 * TARGET, slots
        assert served[0][search] == 1.0
        assert served[0][checkout] == pytest.approx(0.54, rel=0.15)
        assert served[1][search] == pytest.approx(0.66, rel=0.15)
        assert served[1][checkout] == pytest.approx(0.22, rel=0.15)
        assert fleet.table()["floor_traces_per_second"] == pytest.approx(1 / 60)
    finally:
        fleet.close()


def test_a_redis_outage_keeps_sampling_near_the_target_on_fair_shares():
    """Redis stopped for 30 s: each worker samples on its own counts for half the
    target (the fleet stays within 2x of it; in fact near it), the fallback is on
    /metrics; with Redis back, both pool again."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with private_redis(port) as server:
        fleet = Fleet(url, f"it-{uuid.uuid4().hex[:8]}")
        try:
            settle(fleet)
            server.kill()
            server.wait()
            outage = whole_slots(fleet.run(30.0, 1_500))
            assert all(not fleet.adaptive(n).rates.pooled for n in range(2))
            assert REDIS_FALLBACK.labels(FEATURE)._value.get() == 1
            kept = [kept_per_second(row) for row in outage]
            for value in kept[2:]:
                assert 0.5 * TARGET <= value <= 2 * TARGET, kept
            assert all(row[1] == row[2] for row in outage), "an error trace was dropped"
        except BaseException:
            fleet.close()
            raise
    with private_redis(port):
        try:
            assert wait_until(
                lambda: (
                    (fleet.run(INTERVAL, 1_500) is not None)
                    and all(fleet.adaptive(n).rates.pooled for n in range(2))
                ),
                "pooling again",
                30,
            )
            assert REDIS_FALLBACK.labels(FEATURE)._value.get() == 0
        finally:
            fleet.close()


# --- the whole path: gateway, Kafka, two worker processes, the query server, an SDK ---

E2E_TARGET = 200
E2E_POLICIES = policies(E2E_TARGET, 2, 8)
SERVICE = "checkout"


class Traffic:
    """Traces of one span of ``operation`` through the gateway, 1 % with an error; once
    ``follow`` is set, head-sampled at the rate the query server serves the operation
    (polled every second), as an application with a remote sampler would send them."""

    def __init__(self, gateway: Settings, api: httpx.Client) -> None:
        self.gateway = gateway
        self.api = api
        self.operation = "POST /orders"
        self.raw_per_second = 0
        self.follow = False
        self.served = 1.0  # until the table lists the operation
        self.errors_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        strategy = self.api.get("/api/sampling", params={"service": SERVICE}).json()
        operations = strategy.get("operationSampling", {}).get("perOperationStrategies", [])
        for operation in operations:
            if operation["operation"] == self.operation:
                self.served = operation["probabilisticSampling"]["samplingRate"]

    def _run(self) -> None:
        rng = random.Random(3)
        polled = last = time.monotonic()
        due = 0.0  # traces owed by the clock
        while not self._stop.wait(0.1):
            now = time.monotonic()
            if now - polled >= 1.0:
                self._poll()
                polled = now
            due += self.raw_per_second * (now - last)
            last = now
            spans = []
            for _ in range(int(due)):
                if self.follow and rng.random() >= self.served:
                    continue
                error = rng.random() < ERROR_SHARE
                self.errors_sent += error
                spans.append(make_span(rng.randbytes(16), name=self.operation, error=error))
            due -= int(due)
            if spans:
                post(self.gateway, request_of({SERVICE: spans}))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def kept(workers: list, policy: str) -> float:
    label = f'spansieve_sampler_traces_decided_total{{decision="sampled",policy="{policy}"}}'
    return sum(worker_metrics(settings).get(label, 0.0) for settings, _ in workers)


def test_two_worker_processes_keep_one_target_and_feed_an_sdk_sampler(pipeline_settings, tmp_path):
    """Real gateway, Kafka, two workers and query server. 500 traces/s offered, then
    1 000, then 500 again, for a target of 200 spans/s: from three intervals after each
    step the two workers together keep 200 within 10 %; they pool their traffic and keep
    every error trace. (Workers decide in once-a-second ticks; each trace counts in the
    slot its decision fell due in, so a 2 s slot measures its own traffic whichever ticks
    decided it.) Then the traffic follows the rate served for
    POST /orders, as an SDK's remote sampler would: the rate settles, the real JS
    remote sampler applies it, and it falls when the raw traffic doubles."""
    with (
        sampling_pipeline(pipeline_settings, tmp_path, E2E_POLICIES, workers=2) as (
            gateway,
            workers,
        ),
        running_query(gateway.model_copy(update={"query_port": free_port()}), 10) as api,
    ):
        traffic = Traffic(gateway, api)

        def total() -> float:
            return kept(workers, "adaptive") + kept(workers, "errors")

        def after_a_tick() -> tuple[float, float]:
            """(time, kept) just after a tick's decisions: workers decide once a second,
            so a window between two such moments holds a whole number of ticks."""
            start = total()
            assert wait_until(lambda: total() > start, "a tick's decisions", 10)
            time.sleep(0.3)  # the rest of that tick, on every partition
            return time.monotonic(), total()

        def kept_per_second(after_step: float, window: float = 10.0) -> float:
            """Spans kept a second by both workers over about ``window`` seconds (whole
            ticks), from ``after_step`` seconds after a step."""
            time.sleep(after_step)
            began, before = after_a_tick()
            time.sleep(window - 1)
            ended, after = after_a_tick()
            return (after - before) / round(ended - began)

        try:
            # Three intervals (6 s) after a step reaches the decisions (the decision wait
            # and a tick later), and up to an interval more for the slots' alignment.
            rates = []
            for raw, after_step in ((500, 12.0), (1_000, 10.0), (500, 10.0)):
                traffic.raw_per_second = raw
                rates.append(kept_per_second(after_step))
            for rate in rates:
                assert 0.9 * E2E_TARGET <= rate <= 1.1 * E2E_TARGET, rates
            for settings, _ in workers:
                metrics = worker_metrics(settings)
                assert metrics['spansieve_adaptive_pooled{policy="adaptive"}'] == 1

            # An operation the table has not served yet (served at 1 until it has)
            # that follows its served rate. POST /orders, offered without following,
            # had its rate cut interval after interval and now stops.
            traffic.operation, traffic.served, traffic.follow = "GET /orders/{id}", 1.0, True
            readings = [traffic.served]

            def settled() -> bool:
                time.sleep(8)  # a head interval
                readings.append(traffic.served)
                last, before_last = readings[-1], readings[-2]
                return last < 0.9 and abs(last - before_last) <= 0.1 * before_last

            assert wait_until(settled, "the served rate settles", 150), readings
            first = traffic.served
            sdk = RemoteSampler(str(api.base_url.join("/api")), SERVICE, tmp_path / "node.err")
            try:
                sdk.next()  # taken before its first poll
                measured = sdk.measure()["fractions"][traffic.operation]
            finally:
                sdk.close()
            assert measured == pytest.approx(traffic.served, rel=0.25), (measured, traffic.served)
            traffic.raw_per_second = 1_000
            falls = wait_until(lambda: traffic.served < 0.75 * first, "the rate falls", 90)
            assert falls, (first, traffic.served, readings)
        finally:
            traffic.close()
        errors = traffic.errors_sent
        assert wait_until(lambda: kept(workers, "errors") == errors, "every error kept", 30)
