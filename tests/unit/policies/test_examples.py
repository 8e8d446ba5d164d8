"""The shipped example policy files load, agree with each other, and behave as documented."""

from pathlib import Path

import pytest

from pipeline.policies.check import check_policy_file
from pipeline.policies.config import load_policy_file
from pipeline.policies.decision import DROPPED
from pipeline.policies.engine import PolicyEngine

from .helpers import FakeClock, span, view

ROOT = Path(__file__).resolve().parents[3]
DEFAULT = ROOT / "topologies" / "policies-default.yaml"
COLLECTOR = ROOT / "topologies" / "policies-collector.yaml"


@pytest.mark.parametrize("path", [DEFAULT, COLLECTOR])
def test_loads(path):
    config = load_policy_file(path)
    assert [p.name for p in config.policies] == [
        "drop-healthz-route",
        "drop-healthz-path",
        "errors",
        "slow",
        "baseline",
    ]
    assert config.decision_wait == 30


def test_both_shapes_are_the_same_configuration():
    assert load_policy_file(DEFAULT) == load_policy_file(COLLECTOR)


def test_default_policies_behave():
    engine = PolicyEngine(load_policy_file(DEFAULT), FakeClock())
    healthz = engine.evaluate(view(span(attrs={"http.route": "/healthz"}, status=2)))
    assert (healthz.sampled, healthz.policy, healthz.final) == (
        False,
        "drop-healthz-route",
        DROPPED,
    )
    by_path = engine.evaluate(view(span(attrs={"url.path": "/healthz"}, end_ms=5000)))
    assert (by_path.sampled, by_path.policy) == (False, "drop-healthz-path")
    error = engine.evaluate(view(span(attrs={"http.route": "/api"}, status=2)))
    assert (error.sampled, error.policy) == (True, "errors")
    slow = engine.evaluate(view(span(start_ms=0, end_ms=1200), span(start_ms=5, end_ms=10)))
    assert (slow.sampled, slow.policy) == (True, "slow")
    fast = engine.evaluate(view(span(end_ms=20), trace_id=bytes(16)))  # hash > 1 % threshold
    assert not fast.sampled and fast.policy is None


def test_one_percent_baseline():
    import random

    rng = random.Random(11)
    engine = PolicyEngine(load_policy_file(DEFAULT), FakeClock())
    kept = sum(
        engine.evaluate(view(span(), trace_id=rng.randbytes(16))).sampled for _ in range(20000)
    )
    assert 140 < kept < 260


def test_check_summary():
    text = check_policy_file(DEFAULT)
    assert "5 policies, decision_wait 30s" in text
    assert "- drop-healthz-route (drop)" in text and "- healthz-path (string_attribute)" in text
    assert "- baseline (probabilistic)" in text


def test_bench_runs():
    from pipeline.policies.bench import measure

    result = measure(DEFAULT, traces=20, rounds=1)
    assert result["parse + evaluate (us/trace)"] > 0
    assert 3000 < result["bytes/trace"] < 4000


def test_bench_default_file_is_package_data():
    from importlib.resources import files

    from pipeline.policies.bench import DEFAULT_FILE, measure

    assert files("pipeline.topologies").joinpath("policies-default.yaml") == DEFAULT_FILE
    result = measure(traces=20, rounds=1)  # the packaged default file
    assert result["parse + evaluate as the sampler (us/trace)"] > 0
    assert result["kept"] == measure(DEFAULT, traces=20, rounds=1)["kept"]
