"""The sampling policies in force, reloaded when their file changes or on SIGHUP.

A reload swaps the engine only; buffered traces stay where they are and are decided by
the new policies. A file that fails validation keeps the previous policies in force, with
an error log line naming the problem and a counter.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

import structlog

from pipeline.config.settings import Settings
from pipeline.policies.config import PolicyConfigError, SamplingConfig, load_policy_file
from pipeline.policies.engine import PolicyEngine
from pipeline.policies.shared import SharedState
from pipeline.sampler import metrics

log = structlog.get_logger(__name__)

CHECK_INTERVAL = 1.0
#: after a tick's timestamp, how long the worker may take to decide its traces
TICK_MARGIN_SECONDS = 0.5


def seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def skeleton_config(settings: Settings) -> SamplingConfig:
    """Without a policy file: keep error traces plus a share of the rest, as configured."""
    return SamplingConfig.model_validate(
        {
            "decision_wait": settings.decision_wait,
            "policies": [
                {
                    "name": "errors",
                    "type": "status_code",
                    "status_code": {"status_codes": ["ERROR"]},
                },
                {
                    "name": "probabilistic",
                    "type": "probabilistic",
                    "probabilistic": {"sampling_percentage": settings.sampling_percentage},
                },
            ],
        }
    )


def note_keys_without_effect(config: SamplingConfig) -> None:
    """Log collector keys that spansieve accepts but that cannot change what it does.

    Buffered traces are durable here: a stopped worker's pending traces are finished by
    the next owner with all their spans, so they are neither decided with partial data
    nor dropped at shutdown. Overflow decides the oldest traces early and loses nothing,
    while Kafka holds any backlog, so there is nothing to block on.
    """
    for key in ("drop_pending_traces_on_shutdown", "block_on_overflow"):
        if getattr(config, key):
            log.warning("policy key has no effect in spansieve; see the README", key=key)


class PolicySource:
    """Holds the current config and engine; ``maybe_reload`` picks up a changed file."""

    def __init__(self, settings: Settings, shared: SharedState | None = None) -> None:
        self.path: Path | None = settings.policies
        self.shared = shared  # state shared by the workers (Redis), for the policies
        self._settings = settings
        self._mtime = self._stat()
        self._next_check = 0.0
        self._reload_requested = False
        self.config = load_policy_file(self.path) if self.path else skeleton_config(settings)
        self.engine = self._engine(self.config)
        note_keys_without_effect(self.config)

    def _engine(self, config: SamplingConfig) -> PolicyEngine:
        """Policies on the wall clock, the axis of Kafka's event times and of the
        fleet's slots; a trace due just after a tick is decided at the next one."""
        lag = self._settings.tick_interval + TICK_MARGIN_SECONDS
        return PolicyEngine(config, clock=time.time, shared=self.shared, decision_lag=lag)

    def install_sighup(self, loop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def request_reload(self) -> None:
        self._reload_requested = True

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def maybe_reload(self) -> bool:
        """Reload if asked or if the file changed; returns True when new policies apply."""
        if self.path is None:
            return False
        now = time.monotonic()
        if not self._reload_requested and now < self._next_check:
            return False
        self._next_check = now + CHECK_INTERVAL
        mtime = self._stat()
        if not self._reload_requested and mtime == self._mtime:
            return False
        self._reload_requested = False
        self._mtime = mtime
        try:
            config = load_policy_file(self.path)
        except (PolicyConfigError, OSError) as exc:
            metrics.POLICY_RELOADS.labels("rejected").inc()
            log.error("policy reload rejected; previous policies stay in force", error=str(exc))
            return False
        self.config = config
        self.engine = self._engine(config)
        note_keys_without_effect(config)
        metrics.POLICY_RELOADS.labels("applied").inc()
        log.info("policies reloaded", path=str(self.path), policies=len(config.policies))
        return True

    @property
    def decision_wait(self) -> float:
        return seconds(self.config.decision_wait)

    @property
    def root_wait(self) -> float | None:
        """The shorter wait once the root span is in; 0 (the default) turns it off."""
        return seconds(self.config.decision_wait_after_root_received) or None

    @property
    def max_age(self) -> float:
        return seconds(self.config.max_trace_age)
