"""Which table partitions a worker discards, and where its tables live (agents.state)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import pytest
from faust.stores import by_url
from faust.types import TP
from structlog.testing import capture_logs
from yarl import URL

from agents import state
from agents.state import (
    STORE_URL,
    HealingStore,
    app_tables_dir,
    bootstrap_of,
    stale_partitions,
)


def test_consistent_partitions_are_kept():
    # Persisted offset = last record applied; end = next offset Kafka writes.
    assert stale_partitions({0: 4, 1: 0}, {0: 5, 1: 9}) == {}


def test_a_partition_at_or_beyond_the_changelog_end_is_stale():
    persisted = {0: 5, 1: 12, 2: 3}
    ends = {0: 5, 1: 0, 2: 10}  # 0: offset 5 is not in Kafka; 1: topic recreated empty
    assert stale_partitions(persisted, ends) == {0: (5, 5), 1: (12, 0)}


def test_persisted_offset_zero_on_an_empty_topic_is_stale():
    # Faust's own check skips offset 0 (falsy), but that record is gone all the same.
    assert stale_partitions({0: 0}, {0: 0}) == {0: (0, 0)}


@pytest.mark.parametrize(
    ("persisted", "ends"),
    [
        ({0: None}, {0: 0}),  # nothing local yet
        ({0: 7}, {0: None}),  # Kafka did not answer: Faust's own check decides
        ({0: 7}, {}),
        ({0: 7}, {0: -1}),  # librdkafka's "unknown" offset
    ],
)
def test_unknown_offsets_decide_nothing(persisted, ends):
    assert stale_partitions(persisted, ends) == {}


def test_bootstrap_from_faust_broker_urls():
    brokers = [URL("kafka://10.0.0.1:9093"), URL("kafka://kafka-2")]
    assert bootstrap_of(brokers) == "10.0.0.1:9093,kafka-2:9092"


def test_the_store_url_names_the_healing_store():
    assert by_url(STORE_URL) is HealingStore


def test_tables_are_namespaced_by_app(tmp_path: Path):
    first = app_tables_dir(tmp_path, "a-worker")
    second = app_tables_dir(tmp_path, "b-worker")
    assert first == tmp_path / "a-worker" / "tables" and first.is_dir()
    assert second == tmp_path / "b-worker" / "tables" and second.is_dir()


def test_an_old_shared_layout_is_left_and_noted_once(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(state, "_legacy_noted", set())
    legacy = tmp_path / "v1" / "tables"
    (legacy / "trace-decisions-0.db").mkdir(parents=True)
    with capture_logs() as logs:
        tables = app_tables_dir(tmp_path, "a-worker")
        app_tables_dir(tmp_path, "a-worker")
    notes = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(notes) == 1
    assert notes[0]["old"] == str(legacy) and notes[0]["now"] == str(tables)
    assert (legacy / "trace-decisions-0.db").is_dir()  # left as it was


def test_an_empty_old_folder_is_not_noted(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(state, "_legacy_noted", set())
    (tmp_path / "v1" / "tables").mkdir(parents=True)  # Faust made it, nothing in it
    with capture_logs() as logs:
        app_tables_dir(tmp_path, "a-worker")
    assert logs == []


def test_the_store_discards_only_partitions_ahead_of_kafka(tmp_path: Path, monkeypatch):
    app = faust.App(
        "unit-worker", store=STORE_URL, datadir=str(tmp_path), tabledir=str(tmp_path / "t")
    )
    table = app.Table("trace-decisions", partitions=2, key_type=bytes, value_type=bytes)
    store = table.data
    assert isinstance(store, HealingStore)
    topic = table.changelog_topic.get_topic_name()
    store.set_persisted_offset(TP(topic, 0), 7)  # Kafka now ends at 3: ahead
    store.set_persisted_offset(TP(topic, 1), 4)  # Kafka ends at 10: consistent
    store._db_for_partition(1).put(b"kept", b"1")
    asked = []

    def fake_end_offsets(bootstrap, name, partitions):
        asked.append((bootstrap, name, list(partitions)))
        return {0: 3, 1: 10}

    monkeypatch.setattr(state, "end_offsets", fake_end_offsets)
    before = state.STATE_DISCARDED.labels(table="trace-decisions")._value.get()
    with capture_logs() as logs:
        asyncio.run(store.discard_stale(topic, [0, 1]))

    assert asked == [("localhost:9092", topic, [0, 1])]
    assert store.persisted_offset(TP(topic, 0)) is None  # reopened empty: rebuilt by Faust
    assert store.persisted_offset(TP(topic, 1)) == 4
    assert store._db_for_partition(1).get(b"kept") == b"1"
    assert state.STATE_DISCARDED.labels(table="trace-decisions")._value.get() == before + 1
    (warning,) = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["table"] == "trace-decisions" and warning["partition"] == 0
    assert (warning["persisted_offset"], warning["kafka_end_offset"]) == (7, 3)
