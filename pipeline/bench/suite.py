"""Runs the benchmark stages in order and gathers their results into one dict."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from pipeline.bench.endtoend import bench_endtoend
from pipeline.bench.freshness import bench_freshness
from pipeline.bench.gateway import bench_gateway
from pipeline.bench.peer import bench_peer
from pipeline.bench.query import bench_query
from pipeline.bench.report import machine
from pipeline.bench.sampler import bench_sampler
from pipeline.bench.scale import scale_model
from pipeline.bench.sink import bench_sink
from pipeline.config.settings import Settings

# "peer" builds the Collector from the Go module proxy (minutes, once): `spansieve bench`
# runs it only when asked for by name (its --stages default leaves it out).
STAGES = ("gateway", "sampler", "sink", "query", "e2e", "metrics", "peer")


@dataclass(frozen=True)
class BenchPlan:
    """How long and how big each stage runs; ``quick`` fits the suite in ~3 minutes."""

    gateway_seconds: float
    sampler_traces: int
    rss_traces: int
    sink_traces: int
    query_traces: int
    query_requests: int
    e2e_rate: float
    e2e_seconds: float
    burst_seconds: float
    freshness_seconds: float
    peer_rates: tuple[float, ...]
    peer_seconds: float
    peer_ladder: tuple[float, ...]

    @classmethod
    def of(cls, quick: bool, seconds: float, traces: int) -> BenchPlan:
        if quick:
            return cls(
                4.0, min(traces, 10_000), 40_000, 3_000, 3_000, 50, 5_000.0, 20.0, 8.0, 20.0,
                (5_000.0, 20_000.0), 10.0, (40_000.0, 80_000.0),
            )  # fmt: skip
        return cls(
            seconds, traces, max(traces, 60_000), 10_000, 92_000, 200, 10_000.0, 60.0, 60.0, 45.0,
            (5_000.0, 10_000.0, 20_000.0, 40_000.0), 30.0,
            (40_000.0, 60_000.0, 80_000.0, 100_000.0, 120_000.0, 160_000.0),
        )  # fmt: skip


def run_bench(settings: Settings, stages: set[str], plan: BenchPlan) -> dict:
    """Each wanted stage on the local stack (already up), then the scale model."""
    console = Console(stderr=True)
    results: dict = {"machine": machine(), "plan": plan.__dict__}
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.state_dir, prefix="bench-") as scratch:
        folder = Path(scratch)
        for stage in STAGES:
            if stage not in stages:
                continue
            started = time.monotonic()
            with console.status(f"bench: {stage} stage"):
                results[stage] = _run_stage(stage, settings, folder / stage, plan)
            console.print(f"bench: {stage} stage done in {time.monotonic() - started:.0f} s")
    results["scale_model"] = scale_model(results)
    return results


def _run_stage(stage: str, settings: Settings, folder: Path, plan: BenchPlan) -> dict:
    if stage == "gateway":
        return bench_gateway(settings, plan.gateway_seconds)
    if stage == "sampler":
        return bench_sampler(settings, folder, plan.sampler_traces, plan.rss_traces)
    if stage == "sink":
        return bench_sink(settings, plan.sink_traces)
    if stage == "query":
        return bench_query(settings, folder, plan.query_traces, plan.query_requests)
    if stage == "metrics":
        return bench_freshness(settings, folder, plan.freshness_seconds)
    if stage == "peer":
        return bench_peer(
            settings, folder, list(plan.peer_rates), plan.peer_seconds, list(plan.peer_ladder)
        )
    return bench_endtoend(settings, folder, plan.e2e_rate, plan.e2e_seconds, plan.burst_seconds)
