"""The RepeatFilter: a broker outage becomes a few lines, repeats are counted, not written."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys

import pytest

from pipeline.config import log_dedup
from pipeline.config.log_dedup import KAFKA_REACHABLE, SUPPRESSED, RepeatFilter
from pipeline.config.logs import configure_logging

CONNECT = "Unable connect to node with id %s: %s"
METADATA = "Unable to update metadata from %s"
FETCH = "Failed fetch messages from %s: %s"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def suppressed(logger: str) -> float:
    return SUPPRESSED.labels(logger)._value.get()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def notes(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="spansieve.kafka")
    return caplog


def kafka_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "spansieve.kafka"]


def test_repeats_of_a_template_pass_once_per_interval_with_their_count(clock: FakeClock):
    dedup = RepeatFilter(repeat_interval=30, clock=clock)
    before = suppressed("faust.transport.consumer")
    # Same template, different text (addresses, counters): one key.
    first = record("faust.transport.consumer", "wait_empty: Waiting for %r", 1, level=30)
    assert dedup.filter(first)
    for n in range(5):
        clock.now += 1
        assert not dedup.filter(record("faust.transport.consumer", "wait_empty: Waiting for %r", n))
    assert suppressed("faust.transport.consumer") - before == 5
    clock.now += 30
    again = record("faust.transport.consumer", "wait_empty: Waiting for %r", 9)
    assert dedup.filter(again)
    assert again.repeated == 5
    assert not hasattr(first, "repeated")


def test_templates_and_loggers_are_limited_separately(clock: FakeClock):
    dedup = RepeatFilter(repeat_interval=30, clock=clock)
    assert dedup.filter(record("mode.timers", "Timer %s is overlapping", "a", level=30))
    assert dedup.filter(record("mode.timers", "Timer %s drifted", "a", level=30))
    assert dedup.filter(record("faust.worker", "Timer %s is overlapping", "a", level=30))
    assert not dedup.filter(record("mode.timers", "Timer %s is overlapping", "b", level=30))


def test_our_own_lines_and_info_records_always_pass(clock: FakeClock):
    dedup = RepeatFilter(repeat_interval=30, clock=clock)
    for _ in range(3):
        assert dedup.filter(record("agents.sink", "sink failed"))
        assert dedup.filter(record("aiokafka", "Joined group", level=logging.INFO))
        assert dedup.filter(record("aiokafkaish", "x %s", 1))  # a prefix, not the package


def test_an_outage_reads_as_first_error_lost_contact_reminders_and_recovery(
    clock: FakeClock, notes: pytest.LogCaptureFixture
):
    dedup = RepeatFilter(repeat_interval=30, clock=clock)
    dedup.mark_reachable(True)
    assert KAFKA_REACHABLE._value.get() == 1
    before = suppressed("aiokafka") + suppressed("aiokafka.consumer.fetcher")

    assert dedup.filter(record("aiokafka", CONNECT, 1, "[Errno 111] Connect call failed"))
    assert kafka_lines(notes) == ["lost contact with Kafka; retrying, repeats counted not logged"]
    assert KAFKA_REACHABLE._value.get() == 0

    written = 0
    for step in range(1000):  # 50 s of attempts every 50 ms, as aiokafka makes them
        clock.now += 0.05
        written += dedup.filter(record("aiokafka", CONNECT, step, "refused"))
        written += dedup.filter(record("aiokafka", METADATA, [1]))
        written += dedup.filter(record("aiokafka.consumer.fetcher", FETCH, 1, "NodeNotReady"))
    assert written == 0
    lines = kafka_lines(notes)
    assert len(lines) == 1 + 1  # one reminder in 50 s with a 30 s interval
    assert lines[1].startswith("Kafka still unreachable after 30s; ")
    assert "; last: Unable connect to node with id " in lines[1]
    after = suppressed("aiokafka") + suppressed("aiokafka.consumer.fetcher")
    assert after - before == 3000

    dedup.mark_reachable(None)  # the probe could not tell: nothing changes
    assert len(kafka_lines(notes)) == 2
    dedup.mark_reachable(True)
    recovered = kafka_lines(notes)[-1]
    assert recovered == (
        "reconnected to Kafka after 50.0s down; 3001 failed attempts, 3000 log lines suppressed"
    )
    assert KAFKA_REACHABLE._value.get() == 1
    dedup.mark_reachable(True)
    assert len(kafka_lines(notes)) == 3  # said once

    # The next outage is reported from its first error again.
    clock.now += 5
    assert dedup.filter(record("aiokafka", METADATA, [1]))
    assert kafka_lines(notes)[-1].startswith("lost contact")


class KafkaConnectionError(Exception):
    """Named like aiokafka's: the filter knows it by name."""


def test_a_record_carrying_a_connection_error_starts_the_outage(
    clock: FakeClock, notes: pytest.LogCaptureFixture
):
    dedup = RepeatFilter(repeat_interval=30, clock=clock)
    closed = KafkaConnectionError("Connection at 127.0.0.1:9092 closed")
    assert dedup.filter(record("aiokafka.consumer.fetcher", FETCH, 1, closed))
    assert kafka_lines(notes)[-1].startswith("lost contact")
    clock.now += 1
    assert not dedup.filter(record("aiokafka", "Unable to request metadata from %s", 1))
    # Other fetch failures are only rate-limited, and start no outage.
    other = RepeatFilter(repeat_interval=30, clock=clock)
    assert other.filter(record("aiokafka.consumer.fetcher", FETCH, 1, ValueError("odd")))
    assert other.down_since is None


def test_probe_saying_unreachable_only_moves_the_gauge(
    clock: FakeClock, notes: pytest.LogCaptureFixture
):
    dedup = RepeatFilter(repeat_interval=30, clock=clock)
    dedup.mark_reachable(False)
    assert KAFKA_REACHABLE._value.get() == 0
    assert kafka_lines(notes) == []


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_logging_installs_the_filter_and_renders_the_count(
    monkeypatch: pytest.MonkeyPatch, restore_root_logging
):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure_logging("json", "info", repeat_interval=3600)
    configure_logging("json", "info", repeat_interval=3600)  # again: still one filter
    handler = logging.getLogger().handlers[0]
    assert sum(isinstance(f, RepeatFilter) for f in handler.filters) == 1
    repeats = log_dedup.installed()
    assert repeats is not None and repeats.repeat_interval == 3600
    faust_log = logging.getLogger("faust.transport.consumer")
    for n in range(4):
        faust_log.warning("wait_empty: Waiting for tasks %r", n)
    repeats.repeat_interval = 0.0
    faust_log.warning("wait_empty: Waiting for tasks %r", 99)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "wait_empty: Waiting for tasks 0",
        "wait_empty: Waiting for tasks 99",
    ]
    assert lines[1]["repeated"] == 3 and "repeated" not in lines[0]


def test_the_watchdog_exits_when_the_stop_overruns_and_says_what_ran(
    monkeypatch: pytest.MonkeyPatch,
):
    from agents import worker as worker_module

    exits: list[int] = []
    warnings: list[dict] = []
    monkeypatch.setattr(worker_module.os, "_exit", exits.append)
    monkeypatch.setattr(
        worker_module.log, "warning", lambda event, **kw: warnings.append({"event": event, **kw})
    )
    monkeypatch.setattr(worker_module.log, "info", lambda *a, **kw: None)
    loop = asyncio.new_event_loop()
    try:

        async def stuck_commit() -> None:
            await asyncio.sleep(3600)

        async def stop() -> None:
            await task

        class Service:  # named like mode's, whose stop() tasks the watchdog reports
            async def stop(self) -> None:
                await asyncio.sleep(3600)

        task = loop.create_task(stuck_commit())
        stopping = loop.create_task(stop())
        service_stop = loop.create_task(Service().stop())
        loop.run_until_complete(asyncio.sleep(0))
        watchdog = worker_module.ShutdownWatchdog(0.05, loop, lambda: stopping)
        watchdog.start("SIGTERM")
        watchdog.start("SIGTERM")  # a second signal: one watchdog
        watchdog._thread.join(5)
        assert exits == [0]
        assert any("stuck_commit" in entry for entry in warnings[0]["pending"])
        assert warnings[0]["bound_seconds"] == 0.05
        waits_in = [entry.split(" at ")[0] for entry in warnings[0]["stop_waits_in"]]
        assert [name.rsplit(".", 1)[-1] for name in waits_in] == ["stop", "stuck_commit", "sleep"]
        [stuck] = warnings[0]["services_stopping"]  # a mode service whose own stop() waits
        assert stuck.startswith("Service: ") and " > sleep at " in stuck
        task.cancel()
        stopping.cancel()
        service_stop.cancel()
    finally:
        loop.close()


def test_the_watchdog_stands_down_when_the_stop_finishes(monkeypatch: pytest.MonkeyPatch):
    from agents import worker as worker_module

    exits: list[int] = []
    monkeypatch.setattr(worker_module.os, "_exit", exits.append)
    monkeypatch.setattr(worker_module.log, "info", lambda *a, **kw: None)
    loop = asyncio.new_event_loop()
    try:
        watchdog = worker_module.ShutdownWatchdog(0.2, loop)
        watchdog.start("SIGTERM")
        watchdog.finished.set()
        watchdog._thread.join(5)
        assert exits == []
    finally:
        loop.close()
