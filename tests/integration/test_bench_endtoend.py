"""The end-to-end path under the load generator: every trace the policies keep is stored
whole, nothing else is, and a burst is absorbed (a short run of the e2e benchmark)."""

from __future__ import annotations

import pytest

from pipeline.bench.endtoend import bench_endtoend
from pipeline.config.settings import Settings

pytestmark = pytest.mark.integration


def test_kept_traces_are_exactly_the_predicted_ones_through_a_burst(stack: Settings, tmp_path):
    result = bench_endtoend(stack, tmp_path, rate=2_000, seconds=6, burst_seconds=3)
    steady, burst = result["steady"], result["burst"]
    assert result["kept_as_predicted"], result
    for run in (steady, burst):
        assert run["spans_sent"] > 0 and run["spans_failed"] == 0
        assert run["error_traces_kept_complete"] == run["error_traces_sent"]
        assert run["must_keep_missing"] == 0
        assert run["visibility_p99_s"] > 0
    assert burst["burst_catch_up_s"] is not None
