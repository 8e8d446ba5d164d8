"""The local stack against the real Kafka, OpenSearch and Redis (no mocks).

The stack is shared by the whole test session, so nothing here calls stack_down.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config.settings import Settings
from pipeline.local.stack import StackError, stack_status, stack_up

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Settings:
    """Bring the stack up once (a no-op when it already answers)."""
    settings = Settings()
    stack_up(settings, progress=False)
    return settings


@pytest.fixture
def squatter() -> Iterator[int]:
    """A plain TCP listener that accepts connections but never speaks any protocol."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_second_up_starts_nothing_and_is_quick(settings: Settings) -> None:
    before = {row.name: row.pid for row in stack_status(settings)}
    started = time.monotonic()
    stack_up(settings, progress=False)
    elapsed = time.monotonic() - started
    after = {row.name: row.pid for row in stack_status(settings)}
    assert after == before
    assert elapsed < 10, f"second up took {elapsed:.1f} s"


def test_status_reports_all_three_answering(settings: Settings) -> None:
    rows = {row.name: row for row in stack_status(settings)}
    assert set(rows) == {"kafka", "opensearch", "redis"}
    for row in rows.values():
        assert row.state in ("running", "external"), row
        assert (row.pid is not None) == (row.state == "running"), row
    assert rows["kafka"].address == f"127.0.0.1:{settings.kafka_port}"


def test_port_held_by_something_else_is_an_error(
    settings: Settings, squatter: int, tmp_path: Path
) -> None:
    wrong = Settings(
        state_dir=tmp_path,
        kafka_bootstrap=settings.kafka_bootstrap,
        opensearch_url=f"http://127.0.0.1:{squatter}",
        redis_url=settings.redis_url,
    )
    with pytest.raises(StackError, match=rf"port {squatter} is held by .*OpenSearch"):
        stack_up(wrong, progress=False)
    row = next(r for r in stack_status(wrong) if r.name == "opensearch")
    assert row.state == "stopped"
    assert str(squatter) in row.detail
    assert not (tmp_path / "run" / "opensearch.pid").exists()


def test_secondary_port_held_is_an_error(settings: Settings, squatter: int, tmp_path: Path) -> None:
    """Kafka's controller listens on port+1: a holder there blocks the start up front."""
    kafka_port = squatter - 1
    if kafka_port < 1024 or _listening(kafka_port):
        pytest.skip(f"port {kafka_port} is not free")
    wrong = Settings(
        state_dir=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        opensearch_url=settings.opensearch_url,
        redis_url=settings.redis_url,
    )
    with pytest.raises(StackError, match=rf"port {squatter} \(KRaft controller\)"):
        stack_up(wrong, progress=False)
    assert not (tmp_path / "run" / "kafka.pid").exists()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
