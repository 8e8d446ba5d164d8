"""The decision cache over real RocksDB databases (``RdictPartitions``): batches, lookups,
TTL and size bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.sampler.decisions import (
    LOW_WATER_KEY,
    CachedDecision,
    DecisionBatch,
    DecisionCache,
    ReplayMark,
)
from tests.unit.sampler.harness import RecordingStore


@pytest.fixture
def store(tmp_path):
    """One rocksdict database per partition (``RdictPartitions``); changelog messages are
    recorded, as Kafka would keep them."""
    with RecordingStore(tmp_path / "decisions") as store:
        yield store


def trace(number: int) -> bytes:
    return number.to_bytes(16, "big")


def test_one_changelog_message_per_flush_not_per_trace(store):
    cache = DecisionCache(store, ttl=60, max_entries=1000)
    for number in range(100):
        cache.remember(0, trace(number), CachedDecision(10.0, number % 10 == 0, "errors"))
    assert store.changelog == []
    assert cache.lookup(0, trace(10)) == CachedDecision(10.0, True, "errors")  # before flush
    cache.flush(0)
    assert len(store.changelog) == 1
    assert cache.lookup(0, trace(10)) == CachedDecision(10.0, True, "errors")
    assert cache.lookup(0, trace(11)) == CachedDecision(10.0, False, "")
    assert cache.lookup(0, trace(500)) is None
    assert cache.size() == 100


def test_a_new_owner_restores_the_decisions_from_the_changelog(store, tmp_path):
    cache = DecisionCache(store, ttl=60, max_entries=1000)
    cache.remember(3, trace(1), CachedDecision(10.0, True, "slow"))
    cache.remember(3, trace(2), CachedDecision(10.0, False, ""))
    cache.flush(3)
    cache.save_replay_mark(3, ReplayMark(1234, 1300))
    successor_store = RecordingStore(tmp_path / "successor")
    for partition, key, value in store.changelog:  # what Faust's recovery would apply
        successor_store.db(partition).put(key, value)
    successor = DecisionCache(successor_store, ttl=60, max_entries=1000)
    assert set(successor.adopt(3, now=20.0)) == {trace(1), trace(2)}
    assert successor.lookup(3, trace(1)) == CachedDecision(10.0, True, "slow")
    assert successor.replay_mark(3) == ReplayMark(1234, 1300)
    successor_store.close_all()


def test_a_mark_saved_before_the_handled_offset_existed_re_sends_from_its_low_water(store):
    store.db(2).put(LOW_WATER_KEY, (77).to_bytes(8, "big"))
    assert DecisionCache(store, ttl=60, max_entries=10).replay_mark(2) == ReplayMark(77, 77)


def test_batches_expire_after_the_ttl(store):
    cache = DecisionCache(store, ttl=30, max_entries=1000)
    cache.remember(0, trace(1), CachedDecision(10.0, True, "errors"))
    cache.flush(0)
    cache.remember(0, trace(2), CachedDecision(25.0, False, ""))
    cache.flush(0)
    assert cache.expire(0, now=39.0) == 0
    assert cache.expire(0, now=41.0) == 1
    assert cache.lookup(0, trace(1)) is None
    assert cache.lookup(0, trace(2)) is not None
    assert cache.size() == 1
    stored = list(store.db(0).keys())
    assert stored == [key for _, key, _ in store.changelog[1:]]


def test_oldest_batches_go_while_over_the_bound(store):
    cache = DecisionCache(store, ttl=3600, max_entries=5)
    for tick in range(4):
        for number in range(3):
            cache.remember(0, trace(tick * 10 + number), CachedDecision(tick, False, ""))
        cache.flush(0)
    assert cache.size() == 12
    assert cache.expire(0, now=4.0) == 9  # whole batches, oldest first, until <= 5
    assert cache.size() == 3
    assert set(cache.decided_ids(0)) == {trace(30), trace(31), trace(32)}


def test_a_trace_decided_again_keeps_its_newer_decision_when_the_old_batch_expires(store):
    cache = DecisionCache(store, ttl=30, max_entries=1000)
    cache.remember(0, trace(1), CachedDecision(10.0, False, ""))
    cache.flush(0)
    cache.remember(0, trace(1), CachedDecision(20.0, True, "late-errors"))
    cache.flush(0)
    assert cache.size() == 1
    assert cache.expire(0, now=45.0) == 0
    assert cache.lookup(0, trace(1)) == CachedDecision(20.0, True, "late-errors")


def test_expired_batches_are_dropped_on_adoption(store):
    cache = DecisionCache(store, ttl=30, max_entries=1000)
    cache.remember(0, trace(1), CachedDecision(10.0, True, "errors"))
    cache.flush(0)
    fresh = DecisionCache(store, ttl=30, max_entries=1000)
    assert fresh.adopt(0, now=100.0) == {}
    assert list(store.db(0).keys()) == []


@given(
    st.dictionaries(
        st.binary(min_size=16, max_size=16),
        st.one_of(st.none(), st.sampled_from(["errors", "slow", "a b", "ünïcode"])),
        max_size=50,
    )
)
def test_batch_encoding_round_trips(decisions):
    batch = DecisionBatch(12.5)
    for trace_id, policy in decisions.items():
        batch.add(trace_id, policy is not None, policy or "")
    decoded = DecisionBatch.decode(12.5, batch.encode())
    for trace_id, policy in decisions.items():
        assert decoded.decision(trace_id) == CachedDecision(12.5, policy is not None, policy or "")


def test_a_restart_finds_the_decisions_in_the_same_databases(tmp_path):
    with RecordingStore(tmp_path / "decisions") as store:
        cache = DecisionCache(store, ttl=60, max_entries=1000)
        cache.remember(1, trace(7), CachedDecision(10.0, True, "errors"))
        cache.flush(1)
        cache.save_replay_mark(1, ReplayMark(42, 50))
    with RecordingStore(tmp_path / "decisions") as reopened:
        restarted = DecisionCache(reopened, ttl=60, max_entries=1000)
        assert set(restarted.adopt(1, now=20.0)) == {trace(7)}
        assert restarted.lookup(1, trace(7)) == CachedDecision(10.0, True, "errors")
        assert restarted.replay_mark(1) == ReplayMark(42, 50)
        assert reopened.changelog == []  # nothing had to be restored from Kafka
