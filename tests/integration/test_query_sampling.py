"""`/api/sampling` against the real Redis, read by the real OpenTelemetry JS Jaeger remote
sampler (tests/sdk/, `npm ci --prefix tests/sdk`, done by `deploy/bootstrap.sh --browser`).

Rates tables are written the way the adaptive policy's workers write them, under a
private ``samptest-<random>`` key prefix (the query server's ``topic_prefix``). A real
`spansieve query` process serves them to a Node process that polls it with
``JaegerRemoteSampler``; the shares of root spans that sampler keeps must match the table,
and follow it when it is rewritten or removed. The cache, the choice between policies
and the fallbacks are checked on ``RatesSource`` and the app in this process.
"""

from __future__ import annotations

import asyncio
import json
import math
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import structlog
from opensearchpy import AsyncOpenSearch

from pipeline.bench.metrics_scrape import scrape
from pipeline.config.settings import Settings
from pipeline.local.run import free_port, wait_until
from pipeline.query.app import query_app
from pipeline.query.sampling import (
    BAD_TABLE,
    CACHE_SECONDS,
    NO_TABLE,
    REDIS_UNREACHABLE,
    RatesSource,
    fallback_strategy,
)
from tests.integration.conftest import running_query

pytestmark = pytest.mark.integration

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
SAMPLER_SCRIPT = SDK_DIR / "remote_sampler.mjs"
POLLING_MS = 300
SAMPLES = 20_000  # root-span decisions per operation and measurement
OPERATIONS = ("POST /orders", "GET /orders/{id}", "GET /health")


def rates(default: float, operations: list[list[Any]], floor: float = 0.0167) -> dict[str, Any]:
    """A table in the shape the adaptive policy's workers publish."""
    return {
        "policy": "adaptive",
        "slot": int(time.time() // 10),
        "interval": 10.0,
        "updated": time.time(),
        "default": default,
        "floor_traces_per_second": floor,
        "operations": operations,
    }


class RatesKeys:
    """Writes and deletes the rates tables of one private key prefix in the real Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, policy: str) -> str:
        return f"{self.prefix}:adaptive:{policy}:rates"

    def write(self, policy: str, table: dict[str, Any] | bytes, ttl: int = 120) -> None:
        value = table if isinstance(table, bytes) else orjson.dumps(table)
        self.client.set(self.key(policy), value, ex=ttl)

    def delete(self, policy: str) -> None:
        self.client.delete(self.key(policy))

    def clear(self) -> None:
        assert self.prefix.startswith("samptest-"), "never clear the shared prefix"
        for key in self.client.scan_iter(match=f"{self.prefix}:*"):
            self.client.delete(key)


@pytest.fixture
def keys(stack: Settings) -> Iterator[RatesKeys]:
    client = redis.Redis.from_url(stack.redis_url)
    written = RatesKeys(client, f"samptest-{uuid.uuid4().hex[:8]}")
    try:
        yield written
    finally:
        written.clear()
        client.close()


# --- the real SDK sampler against a real `spansieve query` --------------------------------


class RemoteSampler:
    """``tests/sdk/remote_sampler.mjs`` in a Node process: one measurement per call."""

    def __init__(self, endpoint: str, service: str, stderr: Path) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("Node.js (node) is needed for the SDK sampler test: apt-get install nodejs")
        if not (SDK_DIR / "node_modules" / "@opentelemetry" / "sampler-jaeger-remote").is_dir():
            pytest.fail(
                f"the SDK's packages are not installed: npm ci --prefix {SDK_DIR} "
                "(deploy/bootstrap.sh --browser does it)"
            )
        self.stderr = stderr
        command = [node, str(SAMPLER_SCRIPT), endpoint, service, str(POLLING_MS), *OPERATIONS]
        self.process = subprocess.Popen(
            [*command, "--samples", str(SAMPLES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr.open("wb"),
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def next(self) -> dict[str, Any]:
        """The next measurement: {"sampler": str, "fractions": {operation: share}}."""
        try:
            line = self.lines.get(timeout=60)
        except queue.Empty:
            pytest.fail(f"no measurement from the SDK sampler; stderr: {self.stderr.read_text()}")
        return json.loads(line)

    def measure(self) -> dict[str, Any]:
        """Measured two polling intervals from now: after at least one poll started now."""
        assert self.process.stdin is not None
        self.process.stdin.write("measure\n")
        self.process.stdin.flush()
        return self.next()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def query(stack: Settings, keys: RatesKeys, tmp_path) -> Iterator[httpx.Client]:
    """A `spansieve query` process whose adaptive rates live under the private prefix."""
    settings = stack.model_copy(
        update={
            "topic_prefix": keys.prefix,
            "store_index_prefix": f"{keys.prefix}-",
            "state_dir": tmp_path,
            "query_port": free_port(),
        }
    )
    with running_query(settings, timeout=10) as client:
        yield client


def served(api: httpx.Client, service: str, expected: dict[str, Any]) -> None:
    """Wait until the server's cache has taken the table in (within CACHE_SECONDS)."""

    def now_served() -> bool:
        return api.get("/api/sampling", params={"service": service}).json() == expected

    assert wait_until(now_served, "new strategy served", CACHE_SECONDS + 5), (
        api.get("/api/sampling", params={"service": service}).json(),
        expected,
    )


def assert_shares(measured: dict[str, Any], expected: dict[str, float]) -> None:
    """Each operation's share within five standard deviations of its probability."""
    for operation, probability in expected.items():
        share = measured["fractions"][operation]
        bound = 5 * math.sqrt(probability * (1 - probability) / SAMPLES) + 1e-9
        assert abs(share - probability) <= bound, (operation, share, probability, measured)


def strategy_of(service: str, table: dict[str, Any]) -> dict[str, Any]:
    """The strategy ``table`` should give ``service``, in Jaeger's JSON."""
    return {
        "strategyType": "PROBABILISTIC",
        "probabilisticSampling": {"samplingRate": table["default"]},
        "operationSampling": {
            "defaultSamplingProbability": table["default"],
            "defaultLowerBoundTracesPerSecond": table["floor_traces_per_second"],
            "perOperationStrategies": [
                {"operation": operation, "probabilisticSampling": {"samplingRate": probability}}
                for owner, operation, probability in table["operations"]
                if owner == service
            ],
        },
    }


def test_sdk_sampler_follows_the_rates(keys: RatesKeys, query: httpx.Client, tmp_path):
    first = rates(
        0.1,
        [
            ["checkout", "POST /orders", 0.02],
            ["checkout", "GET /orders/{id}", 0.5],
            ["search", "POST /orders", 0.9],  # same operation name, another service
            ["search", "GET /health", 1.0],
        ],
    )
    keys.write("keep-300", first)
    served(
        query,
        "checkout",
        {
            "strategyType": "PROBABILISTIC",
            "probabilisticSampling": {"samplingRate": 0.1},
            "operationSampling": {
                "defaultSamplingProbability": 0.1,
                "defaultLowerBoundTracesPerSecond": 0.0167,
                "perOperationStrategies": [
                    {"operation": "POST /orders", "probabilisticSampling": {"samplingRate": 0.02}},
                    {
                        "operation": "GET /orders/{id}",
                        "probabilisticSampling": {"samplingRate": 0.5},
                    },
                ],
            },
        },
    )
    endpoint = str(query.base_url.join("/api"))  # the SDK appends /sampling?service=
    sdk = RemoteSampler(endpoint, "checkout", tmp_path / "node.stderr")
    try:
        before = sdk.next()  # taken before the first poll: the initial AlwaysOff sampler
        assert before["fractions"] == dict.fromkeys(OPERATIONS, 0), before
        measured = sdk.measure()
        assert "PerOperationSampler" in measured["sampler"], measured
        # GET /health is search's, not checkout's: checkout's default applies.
        assert_shares(measured, {"POST /orders": 0.02, "GET /orders/{id}": 0.5, "GET /health": 0.1})

        # Traffic changed: the workers publish new probabilities (one operation dropped).
        second = rates(0.01, [["checkout", "POST /orders", 0.3], ["checkout", "GET /health", 0.7]])
        keys.write("keep-300", second)
        served(query, "checkout", strategy_of("checkout", second))
        measured = sdk.measure()
        assert_shares(measured, {"POST /orders": 0.3, "GET /orders/{id}": 0.01, "GET /health": 0.7})

        # No worker runs the policy any more (its key expired): everything is sent.
        keys.delete("keep-300")
        served(query, "checkout", fallback_strategy())
        measured = sdk.measure()
        assert "TraceIdRatioBased{1}" in measured["sampler"], measured
        assert measured["fractions"] == dict.fromkeys(OPERATIONS, 1), measured
    finally:
        sdk.close()
    assert "Could not update sampler" not in (tmp_path / "node.stderr").read_text()

    metrics = scrape(str(query.base_url.join("/metrics")))
    assert metrics['spansieve_query_sampling_strategies_total{source="adaptive"}'] >= 3
    assert metrics['spansieve_query_sampling_strategies_total{source="fallback"}'] >= 1
    assert metrics['spansieve_query_sampling_fallback_total{reason="no_table"}'] >= 1
    assert metrics['spansieve_query_requests_total{endpoint="/api/sampling",status="200"}'] >= 4


def test_service_parameter_is_required(query: httpx.Client):
    for params in ({}, {"service": ""}):
        reply = query.get("/api/sampling", params=params)
        assert reply.status_code == 400, reply.text
        assert reply.json()["errors"] == [
            {"code": 400, "msg": "service: is required: the SDK's service name, ?service=NAME"}
        ]
    reply = query.get("/api/sampling", params=[("service", "a"), ("service", "b")])
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["msg"] == "service: given 2 times; expected once"


# --- the source: SCAN, the first policy, the cache, the fallbacks --------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def source(settings: Settings, prefix: str, clock: Clock) -> RatesSource:
    return RatesSource.from_url(settings.redis_url, prefix, clock=clock)


def test_first_policy_by_name_and_the_cache(stack: Settings, keys: RatesKeys):
    clock = Clock()

    async def go() -> None:
        rates_source = source(stack, keys.prefix, clock)
        try:
            assert (await rates_source.current()).fallback == NO_TABLE
            keys.write("zeta", rates(0.3, []))
            keys.write("alpha", rates(0.2, [["a", "x", 0.5]]))
            keys.write("alpha:eu", rates(0.4, []))  # "alpha" < "alpha:eu"
            keys.client.set(f"{keys.prefix}:adaptive:beta:other", b"not a table")
            assert (await rates_source.current()).fallback == NO_TABLE  # cached
            clock.now += CACHE_SECONDS
            with structlog.testing.capture_logs() as logs:
                found = await rates_source.current()
            assert found.table is not None and found.table.policy == "alpha"
            assert found.table.default == 0.2 and found.ignored == ("alpha:eu", "zeta")
            [line] = logs
            assert line["event"] == "sampling strategies from adaptive rates"
            assert line["ignored"] == ["alpha:eu", "zeta"]

            keys.delete("alpha")  # its worker stopped: the next name's table
            clock.now += CACHE_SECONDS - 0.1
            assert (await rates_source.current()).table.policy == "alpha"
            clock.now += 0.1
            assert (await rates_source.current()).table.policy == "alpha:eu"
        finally:
            await rates_source.close()

    asyncio.run(go())


def test_bad_table_falls_back(stack: Settings, keys: RatesKeys):
    keys.write("broken", b'{"default": 2}')

    async def go() -> None:
        rates_source = source(stack, keys.prefix, Clock())
        try:
            with structlog.testing.capture_logs() as logs:
                found = await rates_source.current()
            assert (found.table, found.fallback) == (None, BAD_TABLE)
            [line] = logs
            assert line["log_level"] == "warning"
            assert line["error"] == (
                f"{keys.key('broken')}: default: expected a probability in [0, 1], got 2"
            )
        finally:
            await rates_source.close()

    asyncio.run(go())


def test_redis_unreachable_falls_back_warning_once(stack: Settings, keys: RatesKeys):
    dead = stack.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    clock = Clock()

    async def go() -> None:
        rates_source = source(dead, keys.prefix, clock)
        try:
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    started = time.monotonic()
                    found = await rates_source.current()
                    assert time.monotonic() - started < 2
                    assert (found.table, found.fallback) == (None, REDIS_UNREACHABLE)
                    clock.now += CACHE_SECONDS  # a new read each time
            [line] = logs
            assert line["log_level"] == "warning"
            assert line["event"] == "redis unreachable; sampling strategies sample everything"
        finally:
            await rates_source.close()

    asyncio.run(go())


def test_app_without_redis_serves_the_fallback(stack: Settings, keys: RatesKeys):
    dead = stack.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "topic_prefix": keys.prefix}
    )

    async def go() -> list[httpx.Response]:
        client = AsyncOpenSearch(hosts=[dead.opensearch_url], timeout=5, max_retries=0)
        app = query_app(dead, client)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://query") as http:
                paths = ["/api/sampling?service=checkout", "/api/sampling?service=x", "/metrics"]
                return [await http.get(path) for path in paths]
        finally:
            await client.close()
            await app.state.rates.close()

    first, second, metrics = asyncio.run(go())
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == fallback_strategy()
    assert 'spansieve_query_sampling_fallback_total{reason="redis_unreachable"}' in metrics.text
