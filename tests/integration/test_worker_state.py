"""A worker's local state is namespaced by its app and heals when Kafka lost its changelog.

Issue 16: the RocksDB tables lived in ``state_dir/worker`` whatever the topic prefix, so a
second app in the same state directory, or a restart after Kafka's data were wiped, found
persisted offsets beyond the changelog's end and Faust stopped the worker with a
ConsistencyError. These tests run real worker processes against the local Kafka.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.worker import changelog_retention
from pipeline.config.settings import Settings
from pipeline.kafka.topics import delete_topics, ensure_topics
from pipeline.local.run import free_port, start_component, stop_components, wait_until
from tests.integration.cleanup import drop_topics
from tests.integration.sampling_helpers import (
    decided_total,
    make_span,
    post,
    request_of,
    worker_metrics,
)

pytestmark = pytest.mark.integration

PARTITIONS = 2
TABLE = "trace-decisions"
DISCARDED = "spansieve_worker_state_discarded_total"


def changelog(settings: Settings) -> str:
    return f"{settings.topic_prefix}-worker-{TABLE}-changelog"


def end_offsets(settings: Settings, topic: str) -> list[int]:
    """The topic's high watermark per partition (-1 where Kafka did not answer)."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"ws-{uuid.uuid4().hex}"}
    )
    try:
        ends = []
        for partition in range(settings.partitions):
            try:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5.0, cached=False
                )
            except Exception:  # the topic is being created
                high = -1
            ends.append(high)
        return ends
    finally:
        consumer.close()


def wipe_changelog(settings: Settings) -> None:
    """Delete the changelog and create it empty again, as after Kafka's data were wiped."""
    topic = changelog(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    delete_topics(settings, [topic])
    assert wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, "deleted", 60)
    keep = changelog_retention(settings)[TABLE]
    config = {"cleanup.policy": "delete", "retention.ms": str(int(keep * 1000))}
    deadline = time.monotonic() + 60
    while True:  # the broker may still be removing the old topic's log
        try:
            ensure_topics(settings, [topic], config=config)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert end_offsets(settings, topic) == [0] * settings.partitions


def log_of(settings: Settings) -> str:
    path = settings.state_dir / "logs" / "worker.log"
    return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def worker(settings: Settings) -> Iterator[subprocess.Popen]:
    """A worker process; the test checks whether it got ready or died."""
    child = start_component("worker", settings)
    try:
        yield child
    finally:
        stop_components([child])


def ready_or_dead(settings: Settings, child: subprocess.Popen, timeout: float = 120) -> bool:
    """True once the worker answers /metrics and writes to its changelog again (its
    recovery is over and its sampler saves marks); False if the process exited first."""
    topic = changelog(settings)
    start = end_offsets(settings, topic)

    def settled() -> bool:
        if child.poll() is not None:
            return True
        try:
            httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/metrics", timeout=2)
        except httpx.HTTPError:
            return False
        ends = end_offsets(settings, topic)
        # max(.., 0): a topic the worker has just created counts from its empty end.
        return all(end > max(before, 0) for end, before in zip(ends, start, strict=True))

    assert wait_until(settled, "worker ready or exited", timeout), log_of(settings)[-4000:]
    return child.poll() is None


def error_trace(settings: Settings) -> None:
    """A failing trace per partition: decisions and marks written on each one."""
    traces = {}
    for _ in range(8 * settings.partitions):
        trace_id = uuid.uuid4().bytes
        traces[trace_id] = [make_span(trace_id, name="root", error=True)]
    for spans in traces.values():
        post(settings, request_of({"svc": spans}))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def app_settings(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings of a sampler-only app on private topics, over a fresh state directory."""
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "decision_wait: 1s\npolicies:\n  - name: errors\n    type: status_code\n"
        "    status_code: {status_codes: [ERROR]}\n"
    )
    settings = stack.model_copy(
        update={
            "state_dir": tmp_path / "state",
            "topic_prefix": f"ws-{uuid.uuid4().hex[:8]}",
            "partitions": PARTITIONS,
            "worker_roles": "sampler",
            "policies": policies,
            "worker_web_port": free_port(),
            "gateway_http_port": free_port(),
            "gateway_grpc_port": free_port(),
            "gateway_metrics_port": free_port(),
        }
    )
    try:
        yield settings
    finally:
        drop_topics(settings)


def run_until_state_written(settings: Settings) -> None:
    """Run the app's gateway and worker until every changelog partition holds a few
    records (so the persisted offsets are above 0), then stop both."""
    gateway = start_component("gateway", settings)
    try:
        with worker(settings) as child:
            assert ready_or_dead(settings, child), log_of(settings)[-4000:]
            health = f"http://127.0.0.1:{settings.gateway_metrics_port}/readyz"
            assert wait_until(lambda: httpx.get(health).status_code == 200, "gateway", 60)
            error_trace(settings)
            assert wait_until(
                lambda: min(end_offsets(settings, changelog(settings))) >= 3, "changelog", 60
            )
            assert wait_until(lambda: decided_total(settings) > 0, "decisions", 60)
    finally:
        stop_components([gateway])


def test_a_wiped_changelog_is_rebuilt_instead_of_crashing(app_settings: Settings):
    settings = app_settings
    run_until_state_written(settings)
    wipe_changelog(settings)
    with worker(settings) as child:
        assert ready_or_dead(settings, child), (
            "the worker died on its stale local state:\n" + log_of(settings)[-4000:]
        )
        metrics = worker_metrics(settings)
        assert metrics.get(f'{DISCARDED}{{table="{TABLE}"}}') == PARTITIONS, metrics
        text = log_of(settings)
        assert "ConsistencyError" not in text
        assert "local table state is ahead of its changelog" in text

        # And it works: a new failing trace is decided on the healed state.
        gateway = start_component("gateway", settings)
        try:
            health = f"http://127.0.0.1:{settings.gateway_metrics_port}/readyz"
            assert wait_until(lambda: httpx.get(health).status_code == 200, "gateway", 60)
            error_trace(settings)
            assert wait_until(lambda: decided_total(settings) > 0, "decisions", 60)
        finally:
            stop_components([gateway])
        assert child.poll() is None
    tables = settings.state_dir / "worker" / f"{settings.topic_prefix}-worker" / "tables"
    assert any(tables.glob(f"{TABLE}-*.db")), "the tables live under the app's own folder"


def test_a_second_app_in_the_same_state_dir_leaves_the_first_alone(app_settings: Settings):
    first = app_settings
    run_until_state_written(first)
    first_dir = first.state_dir / "worker" / f"{first.topic_prefix}-worker"
    before = snapshot(first_dir)
    assert before

    second = first.model_copy(
        update={"topic_prefix": f"ws-{uuid.uuid4().hex[:8]}", "worker_web_port": free_port()}
    )
    try:
        with worker(second) as child:
            assert ready_or_dead(second, child), (
                "the second app died on the first app's state:\n" + log_of(second)[-4000:]
            )
            assert worker_metrics(second).get(f"{DISCARDED}:sum", 0.0) == 0.0
    finally:
        drop_topics(second)
    second_dir = second.state_dir / "worker" / f"{second.topic_prefix}-worker"
    assert any((second_dir / "tables").glob(f"{TABLE}-*.db"))
    assert snapshot(first_dir) == before
