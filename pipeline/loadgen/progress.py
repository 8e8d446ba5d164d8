"""The load run's progress bar: time, spans sent, current rate, throttling and failures."""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.loadgen.ledger import RETRYABLE, Ledger

_COLUMNS = (
    TextColumn("[bold]{task.description}"),
    BarColumn(bar_width=16),
    TimeElapsedColumn(),
    TextColumn(
        "{task.fields[spans]:,} spans {task.fields[rate]:,.0f}/{task.fields[target]:,.0f} per s"
        "  throttled {task.fields[throttled]:,}  failed {task.fields[failed]:,}"
    ),
)


class LoadProgress:
    """Updated by the pacing loop; a no-op when disabled (API calls, tests)."""

    def __init__(self, ledger: Ledger, duration: float, description: str, enabled: bool) -> None:
        self._ledger = ledger
        self._duration = duration
        self._description = description
        self._progress: Progress | None = None
        self._task = None
        self._enabled = enabled
        self._samples: deque[tuple[float, int]] = deque()
        self._last_update = 0.0

    def __enter__(self) -> LoadProgress:
        if self._enabled:
            self._progress = Progress(*_COLUMNS, console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task(
                self._description,
                total=self._duration,
                spans=0,
                rate=0.0,
                target=0.0,
                throttled=0,
                failed=0,
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self.update(self._duration, 0.0, force=True)
            self._progress.stop()

    def update(self, elapsed: float, target_rate: float, force: bool = False) -> None:
        """Refresh at most four times a second; the rate is over the last two seconds."""
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_update < 0.25:
            return
        self._last_update = now
        ledger = self._ledger
        self._samples.append((now, ledger.spans_sent))
        while len(self._samples) > 2 and now - self._samples[0][0] > 2.0:
            self._samples.popleft()
        first_time, first_spans = self._samples[0]
        rate = (ledger.spans_sent - first_spans) / (now - first_time) if now > first_time else 0
        fields = {
            "completed": min(elapsed, self._duration),
            "spans": ledger.spans_sent,
            "rate": rate,
            "throttled": sum(n for s, n in ledger.responses.items() if s in RETRYABLE)
            + ledger.connection_errors,
            "failed": ledger.failed_spans + ledger.rejected_spans,
        }
        if target_rate:
            fields["target"] = target_rate
        self._progress.update(self._task, **fields)
