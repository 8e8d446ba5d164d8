"""CPU seconds (user + system) of a process: what "per core" divides by in every stage."""

from __future__ import annotations

import psutil


def cpu_seconds(process: psutil.Process | None = None) -> float:
    """User + system CPU seconds of ``process`` (this process, its threads included)."""
    times = (process or psutil.Process()).cpu_times()
    return times.user + times.system
