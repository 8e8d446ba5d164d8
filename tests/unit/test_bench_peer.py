"""The peer stage's pure parts: one policy set for both sides, its report, no Go."""

from __future__ import annotations

import yaml

from pipeline.bench import peer
from pipeline.bench.report import summary_rows
from pipeline.policies.config import load_policy_text


def test_both_sides_sample_with_the_same_policies():
    theirs = load_policy_text(peer.peer_config(4318), "peer.yaml")
    ours = load_policy_text(peer.OUR_POLICIES, "ours.yaml")
    assert theirs.policies == ours.policies
    assert theirs.decision_wait == ours.decision_wait
    assert [p.type for p in ours.policies] == ["status_code", "latency", "probabilistic"]
    _, back = peer.kafka_peer_configs(4318, "127.0.0.1:9092", "t", "g")
    over_kafka = load_policy_text(back, "back.yaml")
    assert over_kafka.policies == ours.policies
    assert over_kafka.decision_wait == ours.decision_wait


def test_the_peer_over_kafka_has_our_durability_and_partitioning():
    front, back = peer.kafka_peer_configs(4318, "127.0.0.1:9092,127.0.0.1:9093", "t", "g")
    exporter = yaml.safe_load(front)["exporters"]["kafka"]
    assert exporter["brokers"] == ["127.0.0.1:9092", "127.0.0.1:9093"]
    assert exporter["partition_traces_by_id"] is True
    assert exporter["producer"]["required_acks"] == -1  # acks=all, as our gateway
    assert exporter["sending_queue"]["enabled"] is False  # answers after Kafka's ack
    assert exporter["traces"] == {"topic": "t", "encoding": "otlp_proto"}
    receiver = yaml.safe_load(back)["receivers"]["kafka"]
    assert receiver["traces"] == {"topic": "t", "encoding": "otlp_proto"}
    assert receiver["group_id"] == "g"
    assert yaml.safe_load(back)["service"]["pipelines"]["traces"]["receivers"] == ["kafka"]


def test_a_rate_is_sustained_only_if_nothing_was_refused_missed_or_left_unread():
    def load(spans=97_000, refused=0, drained=True):
        return peer.Load(10_000.0, 10.0, spans, refused, {"a": 1.0}, {"a": 1}, drained)

    assert load().sustained
    assert not load(spans=96_000).sustained  # the receiver did not keep the pace
    assert not load(refused=1).sustained
    assert not load(drained=False).sustained
    assert load().per_spans("a") == 1.0 * 10_000 / 97_000


def test_without_go_the_stage_says_so_and_builds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("SPANSIEVE_PEER_CACHE", str(tmp_path))
    monkeypatch.setattr(peer.shutil, "which", lambda name: None)
    said: list[str] = []
    assert peer.build_peer(said.append) is None
    assert "no Go toolchain" in said[0]
    assert not any(tmp_path.iterdir())


def test_the_report_shows_each_rate_the_ratio_and_the_idle_cost():
    row = {
        "rate": 5000.0,
        "peer_spans": 150_000,
        "peer_refused_spans": 0,
        "peer_cpu_per_10k": 0.1,
        "peer_rss": 200 * 2**20,
        "peer_kafka_spans": 150_000,
        "peer_kafka_refused_spans": 0,
        "peer_kafka_cpu_per_10k": 0.25,
        "peer_kafka_broker_cpu_per_10k": 0.05,
        "peer_kafka_rss": 250 * 2**20,
        "ours_spans": 150_000,
        "ours_refused_spans": 0,
        "gateway_cpu_per_10k": 0.05,
        "worker_cpu_per_10k": 0.15,
        "kafka_cpu_per_10k": 0.04,
        "ours_cpu_per_10k": 0.2,
        "ours_rss": 300 * 2**20,
        "ratio_ours_to_peer": 2.0,
        "ratio_ours_to_peer_kafka": 0.8,
    }
    sustained = {
        "peer": {"highest_sustained": 80_000.0, "tried": [{}, {}, {}]},
        "ours": {"highest_sustained": None, "tried": [{}]},
    }
    results = {
        "peer": {
            "rates": [row],
            "idle_cpu_s_per_minute": {"peer": 0.1, "worker": 1.2},
            "sustained": sustained,
        }
    }
    (rate, idle, highest) = summary_rows(results)
    assert rate[1] == "CPU-s per 10 000 spans at 5,000 spans/s"
    assert rate[2] == "ours 0.200 / peer 0.100 / peer over Kafka 0.250"
    assert rate[3].startswith("2.00 x the peer, 0.80 x the peer over Kafka")
    assert "Kafka broker 0.040 apart" in rate[3]
    assert idle[2] == "peer 0.10, worker 1.20"
    assert highest[2] == "peer 80,000, ours none of the ladder"
    skipped = summary_rows({"peer": {"skipped": "no peer binary"}})
    assert skipped == [("peer", "Collector tail sampler", "skipped", "no peer binary")]
