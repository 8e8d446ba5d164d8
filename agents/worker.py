"""Starts a Faust worker for the app, keeping spansieve's own (structlog) logging.

Two operational bounds live here. Kafka reachability: a timer probes the consumer's broker
connections, so that the log's RepeatFilter (pipeline.config.log_dedup) can say when an
outage ended, with its counts. Shutdown: a stop request (SIGTERM/SIGINT) gets
``worker_shutdown_timeout`` seconds to finish cleanly; a watchdog thread then logs what was
still running and ends the process. Nothing is lost by that: offsets are committed only
after their records were processed (the sink acks a batch once OpenSearch took it, the
sampler's buffers are rebuilt from the spans topic), so the next owner of the partitions
re-reads whatever was in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

import faust
import structlog
from faust.worker import Worker

from agents.app import create_app
from pipeline.config import log_dedup
from pipeline.config.settings import Settings
from pipeline.kafka.topics import align_min_insync, ensure_topics
from pipeline.sampler.policy_source import PolicySource, seconds

log = structlog.get_logger(__name__)

PROBE_INTERVAL = 1.0  # seconds between probes of the consumer's Kafka connections
RETENTION_MARGIN = 300.0  # seconds kept beyond the longest time a record can matter
SEGMENT_MS = "60000"  # roll segments each minute so time retention can delete them
MIN_INSYNC_INTERVAL = 60.0  # seconds between min.insync.replicas checks of Faust's topics


def changelog_retention(settings: Settings) -> dict[str, float]:
    """Seconds each table's changelog must keep records (they expire, not compact).

    The one table is the decision cache's: a decision matters until it leaves the cache
    (decision_cache_ttl), and the low-water offsets saved beside the decisions are
    rewritten every second. The trace buffer has no table and no changelog: its pieces
    live in rocksdict databases of their own and the spans topic is their log (see
    pipeline.sampler.buffer and pipeline.sampler.storage).
    """
    config = PolicySource(settings).config
    keep = seconds(config.decision_cache_ttl)
    if settings.span_metrics:
        # The batches also carry span-metrics checkpoints, needed until their windows close.
        window_lifetime = (
            settings.span_metrics_window
            + seconds(config.decision_wait)
            + settings.span_metrics_grace
        )
        keep = max(keep, window_lifetime)
    return {"trace-decisions": keep + RETENTION_MARGIN}


def ensure_changelogs(settings: Settings, app) -> None:
    """Create the tables' changelog topics before Faust does.

    Faust creates them asynchronously, and an event that arrives before their metadata is
    known crashes the agent (PartitionsMismatch). Ours are time-retained, not compacted:
    decisions expire without tombstones.
    """
    retention = changelog_retention(settings)
    for name, table in app.tables.items():
        keep = retention.get(name)
        config = (
            {
                "cleanup.policy": "delete",
                "retention.ms": str(int(keep * 1000)),
                "segment.ms": SEGMENT_MS,
            }
            if keep is not None
            else {"cleanup.policy": "compact"}
        )
        ensure_topics(settings, [table.changelog_topic.get_topic_name()], config=config)


def register_min_insync(settings: Settings, app) -> None:
    """Faust creates its leader (and any repartition) topics without topic configs; give
    them our min.insync.replicas, checked each minute (late topics included).

    With the default of 1 (Kafka's own default) there is nothing to align.
    """
    if settings.kafka_min_insync_replicas == 1:
        return

    @app.timer(interval=MIN_INSYNC_INTERVAL, on_leader=True)
    async def align() -> None:
        await asyncio.to_thread(align_min_insync, settings)


def consumer_connected(app: faust.App) -> bool | None:
    """Whether the worker's Kafka consumer holds a live broker connection (None: no
    consumer client yet). aiokafka keeps only connections that connected in its table and
    closes them on EOF, so a dead broker leaves none that are ``connected()``."""
    try:
        consumer = app.consumer._thread._consumer
        if consumer is None:
            return None
        conns = list(consumer._client._conns.values())  # owned by the consumer thread
    except (AttributeError, RuntimeError):
        return None
    return any(conn.connected() for conn in conns) if conns else False


def register_kafka_probe(app: faust.App, repeats: log_dedup.RepeatFilter | None) -> None:
    """Feed the consumer's connection state to the RepeatFilter and its gauge each second."""

    @app.timer(PROBE_INTERVAL)
    async def probe_kafka() -> None:
        reachable = consumer_connected(app)
        if repeats is not None:
            repeats.mark_reachable(reachable)
        elif reachable is not None:
            log_dedup.KAFKA_REACHABLE.set(1 if reachable else 0)


class ShutdownWatchdog:
    """Ends the process if a graceful stop has not finished within ``timeout`` seconds.

    A thread, not a task: the stop may be stuck in the event loop itself (a blocking close,
    a request waiting out aiokafka's request timeout). Before exiting it logs the asyncio
    tasks still pending and where the main thread is, which is what held the stop up.
    """

    def __init__(
        self,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
        stopping: Callable[[], asyncio.Future | None] = lambda: None,
    ) -> None:
        self.timeout = timeout
        self.loop = loop
        self.stopping = stopping  # the task running the graceful stop, once there is one
        self.started_at: float | None = None
        self.exit_code = 0
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="shutdown-watchdog", daemon=True)

    def start(self, reason: str, exit_code: int = 0) -> None:
        """Start counting (once; later calls, a second signal say, change nothing). A
        forced exit uses ``exit_code``: 0 after a stop request, non-zero after a crash."""
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        self.exit_code = exit_code
        log.info("worker stopping", reason=reason, bound_seconds=self.timeout)
        self._thread.start()

    def _watch(self) -> None:
        if self.finished.wait(self.timeout):
            return
        log.warning(
            "worker did not stop within the shutdown bound; exiting now "
            "(uncommitted records are re-read by the next owner of their partitions)",
            bound_seconds=self.timeout,
            stop_waits_in=awaiting(self.stopping()),
            services_stopping=self.services_stopping(),
            pending=self.pending(),
            main_thread=self.main_thread_at(),
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(self.exit_code)

    def _tasks(self) -> list[asyncio.Task]:
        for _ in range(3):  # the set can change under us (the loop runs in another thread)
            try:
                return [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            except RuntimeError:
                continue
        return []

    def services_stopping(self) -> list[str]:
        """Faust/mode services whose stop() is itself waiting (not just for a child): mode
        stops each child in a shielded task of its own, which the stop chain cannot follow."""
        stuck = []
        for task in self._tasks():
            coro = task.get_coro()
            if not getattr(coro, "__qualname__", "").endswith("Service.stop"):
                continue
            chain = awaiting(task, depth=3)
            if chain and "_stop_children" in chain[-1]:
                continue  # waiting for a child, which is listed itself
            service = coro.cr_frame.f_locals.get("self") if coro.cr_frame else None
            stuck.append(f"{type(service).__name__}: {' > '.join(chain)}")
        return stuck

    def pending(self, limit: int = 12) -> list[str]:
        """The event loop's unfinished tasks: coroutine and the line it waits at."""
        tasks = self._tasks()
        described = []
        for task in tasks[:limit]:
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", repr(coro))
            frame = getattr(coro, "cr_frame", None)
            where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame else ""
            described.append(f"{name}{where}")
        if len(tasks) > limit:
            described.append(f"... and {len(tasks) - limit} more")
        return described

    def main_thread_at(self, depth: int = 4) -> list[str]:
        """The innermost frames of the main thread (where the stop is blocked)."""
        frame = sys._current_frames().get(threading.main_thread().ident or -1)
        if frame is None:
            return []
        return [line.strip() for line in traceback.format_stack(frame)[-depth:]]


def awaiting(task: asyncio.Future | None, depth: int = 5) -> list[str]:
    """The innermost coroutines a task is suspended in: its ``await`` chain, continued into
    the task it waits for (``_fut_waiter``). For the stop task, which step of the stop hangs."""
    chain: list[str] = []
    for _ in range(20):
        if not isinstance(task, asyncio.Task):
            break
        current: object = task.get_coro()
        while (frame := getattr(current, "cr_frame", None)) is not None:
            chain.append(f"{current.__qualname__} at {frame.f_code.co_filename}:{frame.f_lineno}")
            current = getattr(current, "cr_await", None)
        task = getattr(task, "_fut_waiter", None)
    return chain[-depth:]


class BoundedWorker(Worker):
    """Faust's worker with a shutdown bound: a stop request starts the watchdog."""

    def __init__(self, *args, shutdown_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.watchdog = ShutdownWatchdog(
            shutdown_timeout, self.loop, lambda: self._signal_stop_future
        )

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self.watchdog.start(signal.name)
        super()._schedule_shutdown(signal)

    def on_worker_shutdown(self) -> None:
        self.watchdog.start("worker finished", exit_code=70)  # crashed, or stopped by itself
        super().on_worker_shutdown()


def run_worker(settings: Settings) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it, within worker_shutdown_timeout)."""
    repeats = log_dedup.installed()
    if repeats is not None:
        repeats.repeat_interval = settings.worker_log_repeat_interval
    ensure_topics(settings)
    app = create_app(settings)
    ensure_changelogs(settings, app)
    register_min_insync(settings, app)
    register_kafka_probe(app, repeats)
    worker = BoundedWorker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
        shutdown_timeout=settings.worker_shutdown_timeout,
    )
    try:
        worker.execute_from_commandline()
    finally:
        worker.watchdog.finished.set()
