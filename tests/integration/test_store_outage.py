"""No loss when OpenSearch goes away: stopped for 60 s under load, every kept trace arrives.

Uses a private OpenSearch node (own state directory and ports) so the shared one keeps
serving other tests. During the outage the sink holds its batch and stops consuming; the
first worker is then stopped (SIGTERM: Faust waits for the unacknowledged batch, so the
worker exits at its shutdown bound, uncommitted) and a second worker starts while OpenSearch is
still down. Had any offset been committed before OpenSearch acknowledged its documents,
or had any fetched record been dropped, traces would be missing at the end.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opensearchpy import OpenSearch

from pipeline.config.settings import SPAN_ALIAS, Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.run import port_is_free, start_component, stop_components, wait_until
from pipeline.local.stack import RUNNER_MAX_HTTP_PORT, stack_down, stack_up
from tests.integration.conftest import free_port
from tests.integration.test_store import (
    kept_trace,
    send_kept,
    span_count,
    trace_hex,
    worker_metrics,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = 60.0
TRACES_PER_SECOND = 25


def free_opensearch_port() -> int:
    """An HTTP port the runner accepts (<= 9299) whose transport port (+100) is free too."""
    for port in range(RUNNER_MAX_HTTP_PORT, 9210, -1):
        if port_is_free(port) and port_is_free(port + 100):
            return port
    raise RuntimeError("no free OpenSearch port pair below 9300")


@pytest.fixture(scope="module")
def private_opensearch(stack: Settings, tmp_path_factory) -> Iterator[Settings]:
    """Settings of a private OpenSearch node (started by the test, stopped at the end)."""
    state = tmp_path_factory.mktemp("private-opensearch")
    shared_jars = Path(stack.state_dir).resolve() / "jars"
    if shared_jars.is_dir():
        (state / "jars").symlink_to(shared_jars)  # no Maven run for the same jars
    # A fresh Settings, not model_copy: the port properties are cached on the instance.
    url = f"http://127.0.0.1:{free_opensearch_port()}"
    settings = Settings(**{**stack.model_dump(), "state_dir": state, "opensearch_url": url})
    try:
        yield settings
    finally:
        stack_down(settings, only=["opensearch"])


class Load:
    """Writes kept traces to the sampled topic at a steady rate until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            traces = [kept_trace(case="outage", db_spans=3) for _ in range(TRACES_PER_SECOND)]
            send_kept(self.settings, traces)
            self.sent.update({trace_hex(t): span_count(t) for t in traces})
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


def spans_per_trace(client: OpenSearch, traces: int) -> dict[str, int]:
    client.indices.refresh(index=SPAN_ALIAS)
    result = client.search(
        index=SPAN_ALIAS,
        body={"size": 0, "aggs": {"t": {"terms": {"field": "traceId", "size": traces + 100}}}},
    )
    return {bucket["key"]: bucket["doc_count"] for bucket in result["aggregations"]["t"]["buckets"]}


def stored_spans(client: OpenSearch) -> int:
    try:
        return int(client.count(index=SPAN_ALIAS)["count"])
    except Exception:
        return -1


def paused(settings: Settings) -> bool:
    return worker_metrics(settings).get("spansieve_sink_paused") == 1.0


def test_opensearch_down_for_a_minute_under_load_loses_nothing(
    private_opensearch: Settings, tmp_path: Path
):
    base = private_opensearch.model_copy(
        update={
            "topic_prefix": f"outage-{uuid.uuid4().hex[:8]}",
            "partitions": 2,
            "worker_roles": "sink",
            "store_max_backoff": 2.0,
        }
    )
    ensure_topics(base)
    first = base.model_copy(update={"state_dir": tmp_path / "w1", "worker_web_port": free_port()})
    second = base.model_copy(update={"state_dir": tmp_path / "w2", "worker_web_port": free_port()})
    client = OpenSearch(hosts=[base.opensearch_url], max_retries=0)
    workers = [start_component("worker", first)]  # it waits for OpenSearch by itself
    try:
        stack_up(private_opensearch, progress=False, only=["opensearch"])
        metrics_url = f"http://127.0.0.1:{first.worker_web_port}/metrics"
        assert wait_until(lambda: httpx.get(metrics_url).status_code == 200, "worker", 120)

        with Load(base) as load:
            assert wait_until(lambda: stored_spans(client) > 0, "first spans stored", 60)
            stack_down(private_opensearch, only=["opensearch"])
            down_at = time.monotonic()
            assert wait_until(lambda: paused(first), "sink pauses", 30), "sink never paused"

            # Stop the worker while it holds a batch OpenSearch never took; a new one
            # starts while OpenSearch is still down.
            stop_components(workers)
            workers = [start_component("worker", second)]
            second_url = f"http://127.0.0.1:{second.worker_web_port}/metrics"
            assert wait_until(lambda: httpx.get(second_url).status_code == 200, "worker 2", 120)
            assert wait_until(lambda: paused(second), "second sink waits", 30)

            # Bring OpenSearch back so that it answers no sooner than OUTAGE_SECONDS
            # (a node takes several seconds to start).
            time.sleep(max(0.0, OUTAGE_SECONDS - 3 - (time.monotonic() - down_at)))
            stack_up(private_opensearch, progress=False, only=["opensearch"])
            outage = time.monotonic() - down_at
            time.sleep(3)  # load keeps coming after the recovery too
        sent = load.sent
        expected = sum(sent.values())

        assert outage >= OUTAGE_SECONDS, f"outage lasted only {outage:.0f}s"
        assert wait_until(lambda: stored_spans(client) >= expected, "backlog indexed", 120), (
            f"{stored_spans(client)} of {expected} spans stored"
        )
        assert not paused(second)
        stored = spans_per_trace(client, len(sent))
        assert stored == sent, f"{len(set(sent) - set(stored))} traces missing or incomplete"
        assert worker_metrics(second).get("spansieve_sink_dead_letters_total:sum", 0) == 0
    finally:
        stop_components(workers)
