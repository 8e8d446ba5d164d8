"""The peer stage's pure parts: one policy set for both sides, its report, no Go."""

from __future__ import annotations

from pipeline.bench import peer
from pipeline.bench.report import summary_rows
from pipeline.policies.config import load_policy_text


def test_both_sides_sample_with_the_same_policies():
    theirs = load_policy_text(peer.peer_config(4318), "peer.yaml")
    ours = load_policy_text(peer.OUR_POLICIES, "ours.yaml")
    assert theirs.policies == ours.policies
    assert theirs.decision_wait == ours.decision_wait
    assert [p.type for p in ours.policies] == ["status_code", "latency", "probabilistic"]


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
        "ours_spans": 150_000,
        "ours_refused_spans": 0,
        "gateway_cpu_per_10k": 0.05,
        "worker_cpu_per_10k": 0.15,
        "kafka_cpu_per_10k": 0.04,
        "ours_cpu_per_10k": 0.2,
        "ours_rss": 300 * 2**20,
        "ratio_ours_to_peer": 2.0,
    }
    results = {"peer": {"rates": [row], "idle_cpu_s_per_minute": {"peer": 0.1, "worker": 1.2}}}
    (rate, idle) = summary_rows(results)
    assert rate[1] == "CPU-s per 10 000 spans at 5,000 spans/s"
    assert rate[2] == "ours 0.200 / peer 0.100"
    assert rate[3].startswith("2.00 x the peer") and "Kafka broker 0.040 apart" in rate[3]
    assert idle[2] == "peer 0.10, worker 1.20"
    skipped = summary_rows({"peer": {"skipped": "no peer binary"}})
    assert skipped == [("peer", "Collector tail sampler", "skipped", "no peer binary")]
