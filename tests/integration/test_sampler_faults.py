"""Workers share the partitions; kill -9 of one, or a new one joining, loses no kept trace."""

from __future__ import annotations

import random
import threading
import time
from contextlib import ExitStack

import pytest

from pipeline.config.settings import Settings
from pipeline.local.run import wait_until
from tests.integration.kafka_helpers import read_spans
from tests.integration.sampling_helpers import (
    decided_total,
    make_span,
    post,
    request_of,
    running_worker,
    sampling_pipeline,
    worker_metrics,
)

pytestmark = pytest.mark.integration

POLICIES = """\
decision_wait: 3s
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"""


class TraceLoad:
    """Traces whose spans arrive in three requests a second apart, 1 in 5 failing."""

    def __init__(self, gateway: Settings, seed: int) -> None:
        self.gateway = gateway
        self.rng = random.Random(seed)
        self.failing: dict[bytes, set[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> TraceLoad:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        waves: list[list] = [[], [], []]
        while not self._stop.is_set():
            trace_id = self.rng.randbytes(16)
            failed = self.rng.random() < 0.2
            root = make_span(trace_id, name="root")
            spans = [root] + [
                make_span(trace_id, root.span_id, f"s{n}", error=failed and n == 5)
                for n in range(6)
            ]
            if failed:
                self.failing[trace_id] = {s.span_id for s in spans}
            for wave, part in zip(waves, (spans[:2], spans[2:5], spans[5:]), strict=True):
                wave.extend(part)
            if len(waves[0]) >= 40:
                post(self.gateway, request_of({"svc": waves.pop()}))
                waves.insert(0, [])
                time.sleep(0.3)
        for wave in reversed(waves):
            if wave:
                post(self.gateway, request_of({"svc": wave}))


def assert_every_error_trace_complete(gateway: Settings, failing: dict[bytes, set[bytes]]):
    assert len(failing) >= 10
    expected = sum(len(spans) for spans in failing.values())
    found = read_spans(gateway, set(failing), expected, topic="sampled", timeout=120)
    stored: dict[bytes, set[bytes]] = {}
    for span_id, (_, span) in found.items():
        stored.setdefault(span.trace_id, set()).add(span_id)
    missing = {
        trace_id.hex(): len(spans - stored.get(trace_id, set()))
        for trace_id, spans in failing.items()
        if spans - stored.get(trace_id, set())
    }
    assert not missing, f"error traces incomplete: {missing}"


def adopted(worker: Settings) -> float:
    return worker_metrics(worker).get("spansieve_sampler_partitions_adopted_total", 0)


def test_kill_minus_nine_under_load_keeps_every_error_trace(pipeline_settings: Settings, tmp_path):
    with sampling_pipeline(pipeline_settings, tmp_path, POLICIES, workers=2) as (gateway, workers):
        (_, first_process), (second, _) = workers
        assert wait_until(
            lambda: all(adopted(w) > 0 for w, _ in workers), "both workers own partitions", 60
        ), "the partitions were not shared between the two workers"
        with TraceLoad(gateway, seed=9) as load:
            time.sleep(6)
            first_process.kill()  # SIGKILL: no shutdown, no commit, buffered traces in flight
            time.sleep(8)
        assert_every_error_trace_complete(gateway, load.failing)
        assert decided_total(second) > 0
        # The survivor re-read, from the spans topic, what the killed worker had buffered.
        assert worker_metrics(second).get("spansieve_sampler_spans_replayed_total", 0) > 0


def test_a_worker_joining_under_load_takes_partitions_without_loss(
    pipeline_settings: Settings, tmp_path
):
    with (
        sampling_pipeline(pipeline_settings, tmp_path, POLICIES, workers=1) as (gateway, _),
        ExitStack() as later,
    ):
        with TraceLoad(gateway, seed=10) as load:
            time.sleep(5)
            joining, _ = later.enter_context(running_worker(gateway, "worker-joining"))
            assert wait_until(lambda: adopted(joining) > 0, "rebalance", 60)
            time.sleep(6)
        assert_every_error_trace_complete(gateway, load.failing)
        assert decided_total(joining) > 0
