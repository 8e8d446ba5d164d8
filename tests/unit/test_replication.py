"""Replication is configuration: topic arguments, the broker-count check, 3-node rendering."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from confluent_kafka.admin import NewTopic

from pipeline.config.settings import TOPIC_NAMES, Settings
from pipeline.kafka import topics
from pipeline.kafka.topics import ReplicationError, ensure_topics, replication_problems
from pipeline.local.stack import kafka_nodes, kafka_properties


class FakeAdmin:
    """Stands in for AdminClient: a cluster of ``brokers`` brokers and some topics."""

    instances: ClassVar[list[FakeAdmin]] = []
    brokers = 3
    existing: tuple[str, ...] = ()

    def __init__(self, config: dict[str, object]) -> None:
        self.config = config
        self.created: list[NewTopic] = []
        FakeAdmin.instances.append(self)

    def list_topics(self, timeout: float) -> SimpleNamespace:
        brokers = {n: object() for n in range(1, self.brokers + 1)}
        return SimpleNamespace(brokers=brokers, topics={name: object() for name in self.existing})

    def create_topics(self, wanted: list[NewTopic], operation_timeout: float) -> dict:
        self.created.extend(wanted)
        futures = {}
        for topic in wanted:
            future: Future = Future()
            future.set_result(None)
            futures[topic.topic] = future
        return futures


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> type[FakeAdmin]:
    FakeAdmin.instances = []
    FakeAdmin.brokers = 3
    FakeAdmin.existing = ()
    monkeypatch.setattr(topics, "AdminClient", FakeAdmin)
    monkeypatch.setattr(topics, "_warned", set())
    return FakeAdmin


def _created(admin: type[FakeAdmin]) -> dict[str, NewTopic]:
    return {t.topic: t for instance in admin.instances for t in instance.created}


def test_defaults_keep_one_replica() -> None:
    settings = Settings()
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (1, 1)
    assert settings.kafka_brokers == 1
    assert settings.kafka_bootstrap == "127.0.0.1:9092"


def test_product_topics_take_replication_from_settings(admin: type[FakeAdmin]) -> None:
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2, partitions=4)
    ensure_topics(settings)
    created = _created(admin)
    assert set(created) == {settings.topic(name) for name in TOPIC_NAMES}  # the DLQ too
    for topic in created.values():
        assert topic.replication_factor == 3
        assert topic.num_partitions == 4
        assert topic.config["min.insync.replicas"] == "2"
    assert created[settings.topic("spans")].config["message.timestamp.type"] == "LogAppendTime"


def test_named_topics_and_changelogs_are_replicated_too(admin: type[FakeAdmin]) -> None:
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    ensure_topics(settings, ["x-changelog"], config={"cleanup.policy": "compact"})
    topic = _created(admin)["x-changelog"]
    assert topic.replication_factor == 3
    assert topic.config == {"min.insync.replicas": "2", "cleanup.policy": "compact"}


def test_existing_topics_are_left_alone(admin: type[FakeAdmin]) -> None:
    settings = Settings()
    admin.existing = tuple(settings.topic(name) for name in TOPIC_NAMES)
    ensure_topics(settings)
    assert _created(admin) == {}


def test_min_isr_above_replication_factor_is_refused(admin: type[FakeAdmin]) -> None:
    settings = Settings(kafka_replication_factor=2, kafka_min_insync_replicas=3)
    with pytest.raises(ReplicationError, match=r"MIN_INSYNC_REPLICAS to at most 2"):
        ensure_topics(settings)
    assert _created(admin) == {}


class WarningLog:
    """Stands in for ``topics.log``: structlog loggers cached by earlier tests of the run
    would bypass ``structlog.testing.capture_logs``."""

    def __init__(self) -> None:
        self.warnings: list[dict] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append({"event": event, **fields})

    def info(self, event: str, **fields: object) -> None:
        pass


@pytest.fixture
def warning_log(monkeypatch: pytest.MonkeyPatch) -> WarningLog:
    found = WarningLog()
    monkeypatch.setattr(topics, "log", found)
    monkeypatch.setattr(topics, "_warned", set())  # once per process: not across tests
    return found


def test_fewer_brokers_than_replicas_warns_with_the_numbers(
    admin: type[FakeAdmin], warning_log: WarningLog
) -> None:
    admin.brokers = 1
    admin.existing = ("t",)
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    ensure_topics(settings, ["t"])
    ensure_topics(settings, ["t"])  # warned once, not at every call
    [warning] = warning_log.warnings
    assert warning["brokers"] == 1
    assert warning["replication_factor"] == 3
    assert "--kafka-brokers 3" in warning["advice"]


def test_enough_brokers_do_not_warn(admin: type[FakeAdmin], warning_log: WarningLog) -> None:
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    ensure_topics(settings)
    assert warning_log.warnings == []


@pytest.mark.parametrize(
    ("brokers", "rf", "min_isr", "error", "warning"),
    [
        (1, 1, 1, False, False),
        (3, 3, 2, False, False),
        (3, 3, 3, False, False),
        (2, 3, 2, False, True),
        (3, 2, 3, True, False),
        (1, 2, 3, True, True),
    ],
)
def test_replication_problems(
    brokers: int, rf: int, min_isr: int, error: bool, warning: bool
) -> None:
    found_error, found_warning = replication_problems(brokers, rf, min_isr)
    assert (found_error is not None, found_warning is not None) == (error, warning)
    if found_warning:
        assert f"{brokers} broker(s)" in found_warning


def test_three_brokers_expand_the_bootstrap() -> None:
    settings = Settings(kafka_brokers=3)
    assert settings.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert settings.kafka_port == 9092
    moved = Settings(kafka_brokers=3, kafka_bootstrap="127.0.0.1:19092")
    assert moved.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    given = Settings(kafka_brokers=3, kafka_bootstrap="a:1,b:2")
    assert given.kafka_bootstrap == "a:1,b:2"  # an explicit list is left as it is


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return dict(pairs)


def test_three_node_properties(tmp_path: Path) -> None:
    settings = Settings(kafka_brokers=3, kafka_bootstrap="127.0.0.1:19092", partitions=3)
    assert kafka_nodes(settings) == [(1, 19092, 19093), (2, 19094, 19095), (3, 19096, 19097)]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    rendered = [_props(kafka_properties(settings, tmp_path / f"n{n}", n)) for n in (1, 2, 3)]
    for node, props in enumerate(rendered, start=1):
        port = 19092 + 2 * (node - 1)
        assert props["node.id"] == str(node)
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}"
        )
        assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{port}"
        assert props["log.dirs"] == str(tmp_path / f"n{node}")
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert "$" not in "".join(props.values())


def test_one_node_properties_are_unchanged(tmp_path: Path) -> None:
    props = _props(kafka_properties(Settings(), tmp_path))
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["share.coordinator.state.topic.replication.factor"] == "1"
