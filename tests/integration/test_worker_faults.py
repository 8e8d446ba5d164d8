"""The worker's own faults: a broker outage logs a few lines, SIGTERM exits within a bound.

The outage test runs a sink worker against a private Kafka broker (its own port and state
directory) so the shared stack keeps serving the other tests; the broker is stopped for
about 20 s and started again on the same data.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from pipeline.config.settings import Settings
from pipeline.kafka.topics import ensure_topics
from pipeline.local.run import start_component, stop_components, wait_until
from pipeline.local.stack import stack_down, stack_up
from pipeline.store.indices import store_names
from tests.integration.conftest import free_port
from tests.integration.test_gateway_faults import free_port_pair
from tests.integration.test_store import drop_store, kept_trace, send_kept, span_count
from tests.integration.test_store import worker_metrics as scrape_worker

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 20.0
MAX_OUTAGE_LINES = 20  # warning/error lines the worker may write while the broker is down
SHUTDOWN_TIMEOUT = 4.0
SHUTDOWN_SLACK = 3.0  # interpreter exit, the watchdog's own logging, a loaded test machine


def loud_lines(log: Path, start: int, end: int | None = None) -> list[dict]:
    """The worker's JSON log records at warning level or above, between two byte offsets."""
    with log.open("rb") as file:
        file.seek(start)
        data = file.read() if end is None else file.read(end - start)
    records = []
    for line in data.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = {"level": "error", "event": line}  # a raw traceback line counts too
        if isinstance(record, dict) and record.get("level") in ("warning", "error", "critical"):
            records.append(record)
    return records


def indexed(settings: Settings) -> float:
    return scrape_worker(settings).get("spansieve_sink_documents_indexed_total", 0.0)


def stored_spans(client: OpenSearch, settings: Settings) -> int:
    alias = store_names(settings).span_alias
    try:
        client.indices.refresh(index=alias)
        return int(client.count(index=alias)["count"])
    except Exception:
        return -1


@pytest.fixture
def private_kafka(stack: Settings, tmp_path_factory) -> Iterator[Settings]:
    """Settings of a private broker (started here, stopped at the end), sink-only worker."""
    state = tmp_path_factory.mktemp("private-kafka")
    shared_jars = Path(stack.state_dir).resolve() / "jars"
    if shared_jars.is_dir():
        (state / "jars").symlink_to(shared_jars)  # no Maven run for the same jars
    # A fresh Settings, not model_copy: the port properties are cached on the instance.
    settings = Settings(
        **{
            **stack.model_dump(),
            "state_dir": state,
            "kafka_bootstrap": f"127.0.0.1:{free_port_pair()}",
            "topic_prefix": f"wf-{uuid.uuid4().hex[:8]}",
            "store_index_prefix": f"wf-{uuid.uuid4().hex[:8]}-",
            "partitions": 2,
            "worker_roles": "sink",
            "worker_web_port": free_port(),
        }
    )
    stack_up(settings, progress=False, only=["kafka"])
    try:
        ensure_topics(settings)
        yield settings
    finally:
        stack_down(settings, only=["kafka"])
        drop_store(OpenSearch(hosts=[settings.opensearch_url]), settings)


def test_broker_outage_logs_a_few_lines_and_the_worker_resumes(private_kafka: Settings):
    settings = private_kafka
    log = settings.state_dir / "logs" / "worker.log"
    worker = start_component("worker", settings)
    try:
        assert wait_until(lambda: indexed(settings) >= 0, "worker", 120)
        send_kept(settings, [kept_trace(case="before") for _ in range(20)])
        assert wait_until(lambda: indexed(settings) > 0, "first spans indexed", 60)

        killed_at = log.stat().st_size
        stack_down(settings, only=["kafka"])
        time.sleep(OUTAGE_SECONDS)
        restarted_at = log.stat().st_size
        stack_up(settings, progress=False, only=["kafka"])

        before = indexed(settings)
        traces = [kept_trace(case="after") for _ in range(20)]
        send_kept(settings, traces)
        expected = before + sum(span_count(t) for t in traces)
        assert wait_until(lambda: indexed(settings) >= expected, "worker resumes", 90), (
            "the worker did not consume again after the broker came back"
        )
        assert worker.poll() is None, "the worker exited during the outage"

        during = loud_lines(log, killed_at, restarted_at)
        after = loud_lines(log, restarted_at)
        print(f"\nwarning/error lines: {len(during)} during the outage, {len(after)} after")
        for record in during + after:
            print(" ", record.get("logger"), record.get("event", "")[:160])
        assert len(during) < MAX_OUTAGE_LINES, [r.get("event") for r in during]
        assert len(after) < MAX_OUTAGE_LINES, [r.get("event") for r in after]
        metrics = scrape_worker(settings)
        suppressed = sum(v for k, v in metrics.items() if k.startswith("spansieve_log_suppressed"))
        assert suppressed > 0, "the repeated records were not counted"
        assert metrics.get("spansieve_kafka_reachable") == 1.0
    finally:
        stop_components([worker])


def stop_within_bound(worker: subprocess.Popen) -> float:
    """SIGTERM the worker; seconds until it exited."""
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=SHUTDOWN_TIMEOUT + SHUTDOWN_SLACK + 30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not exit at all after SIGTERM")
    return time.monotonic() - asked


def test_sigterm_exits_within_the_bound_and_loses_nothing(private_kafka: Settings):
    """The slow case measured: a stop while the broker is gone waits, in Faust's
    wait_empty, for acks and commits that cannot happen (it has no timeout of its own)."""
    settings = private_kafka.model_copy(update={"worker_shutdown_timeout": SHUTDOWN_TIMEOUT})
    client = OpenSearch(hosts=[settings.opensearch_url])
    log = settings.state_dir / "logs" / "worker.log"
    traces = [kept_trace(case="shutdown", db_spans=3) for _ in range(600)]
    expected = sum(span_count(t) for t in traces)
    workers: list[subprocess.Popen] = []
    try:
        workers.append(start_component("worker", settings))
        assert wait_until(lambda: indexed(settings) >= 0, "worker", 120)
        send_kept(settings, traces[:100])
        assert wait_until(lambda: indexed(settings) > 0, "first spans indexed", 60)

        # A healthy stop is quick: Faust stops its services, mode's loop shutdown ~2 s.
        took = stop_within_bound(workers[0])
        print(f"\nSIGTERM to exit, broker up: {took:.1f}s (bound {SHUTDOWN_TIMEOUT}s)")
        assert took < SHUTDOWN_TIMEOUT + SHUTDOWN_SLACK

        workers.append(start_component("worker", settings))
        assert wait_until(lambda: indexed(settings) >= 0, "worker again", 120)
        send_kept(settings, traces[100:200])
        assert wait_until(lambda: indexed(settings) > 0, "consuming again", 60)
        send_kept(settings, traces[200:])  # in flight when the broker goes
        stack_down(settings, only=["kafka"])
        offset = log.stat().st_size
        took = stop_within_bound(workers[1])
        print(f"SIGTERM to exit, broker down: {took:.1f}s (bound {SHUTDOWN_TIMEOUT}s)")
        assert took < SHUTDOWN_TIMEOUT + SHUTDOWN_SLACK
        forced = [r for r in loud_lines(log, offset) if "shutdown bound" in r.get("event", "")]
        assert forced and forced[0].get("stop_waits_in"), "the watchdog did not say what ran"
        print("  the stop waited in:", forced[0]["stop_waits_in"])
        print("  services stopping:", forced[0]["services_stopping"])
        assert forced[0]["services_stopping"], "no service named as holding the stop up"

        stack_up(settings, progress=False, only=["kafka"])
        workers.append(start_component("worker", settings))
        assert wait_until(lambda: stored_spans(client, settings) >= expected, "all stored", 120), (
            f"{stored_spans(client, settings)} of {expected} spans stored after the restart"
        )
    finally:
        stop_components(workers)
