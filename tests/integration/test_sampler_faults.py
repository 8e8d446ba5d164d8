"""Two workers share the partitions; kill -9 of one under load loses no kept trace."""

from __future__ import annotations

import random
import threading
import time

import pytest

from pipeline.run import wait_until
from pipeline.settings import Settings
from tests.integration.kafka_helpers import read_spans
from tests.integration.sampling_helpers import (
    decided_total,
    make_span,
    post,
    request_of,
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


def test_kill_minus_nine_under_load_keeps_every_error_trace(pipeline_settings: Settings, tmp_path):
    rng = random.Random(9)
    with sampling_pipeline(pipeline_settings, tmp_path, POLICIES, workers=2) as (gateway, workers):
        (_, first_process), (second, _) = workers
        assert wait_until(
            lambda: all(
                worker_metrics(w).get("spansieve_sampler_partitions_adopted_total", 0) > 0
                for w, _ in workers
            ),
            "both workers own partitions",
            60,
        ), "the partitions were not shared between the two workers"

        failing: dict[bytes, set[bytes]] = {}
        stop = threading.Event()

        def load() -> None:
            # Traces whose spans arrive in three requests a second apart, 1 in 5 failing.
            waves: list[list] = [[], [], []]
            while not stop.is_set():
                trace_id = rng.randbytes(16)
                failed = rng.random() < 0.2
                root = make_span(trace_id, name="root")
                spans = [root] + [
                    make_span(trace_id, root.span_id, f"s{n}", error=failed and n == 5)
                    for n in range(6)
                ]
                if failed:
                    failing[trace_id] = {s.span_id for s in spans}
                for wave, part in zip(waves, (spans[:2], spans[2:5], spans[5:]), strict=True):
                    wave.extend(part)
                if len(waves[0]) >= 40:
                    post(gateway, request_of({"svc": waves.pop()}))
                    waves.insert(0, [])
                    time.sleep(0.3)
            for wave in reversed(waves):
                if wave:
                    post(gateway, request_of({"svc": wave}))

        sender = threading.Thread(target=load)
        sender.start()
        time.sleep(6)
        first_process.kill()  # SIGKILL: no shutdown, no commit, buffered traces in flight
        time.sleep(8)
        stop.set()
        sender.join()

        expected = sum(len(spans) for spans in failing.values())
        assert len(failing) >= 10
        found = read_spans(gateway, set(failing), expected, topic="sampled", timeout=120)
        stored: dict[bytes, set[bytes]] = {}
        for span_id, (_, span) in found.items():
            stored.setdefault(span.trace_id, set()).add(span_id)
        missing = {
            t.hex(): len(s - stored.get(t, set()))
            for t, s in failing.items()
            if s - stored.get(t, set())
        }
        assert not missing, f"error traces incomplete after kill -9: {missing}"
        assert decided_total(second) > 0
        # The survivor re-read, from the spans topic, what the killed worker had buffered.
        assert worker_metrics(second).get("spansieve_sampler_spans_replayed_total", 0) > 0
