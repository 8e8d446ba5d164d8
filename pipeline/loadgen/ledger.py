"""Ground truth of a load run: what was sent, when, and what the gateway answered.

A benchmark checks the pipeline against this record (every error trace kept and
complete, visibility latency from send time), so nothing may go missing here: every
response status is counted, and a request that failed for good is listed by its traces.
Replayed pool requests are stored by reference (batch, replay number, time), not per
trace, so a long run at 100 000 spans/s costs a few bytes per request; trace records
are expanded on demand. Which traces of a replay have an error is recomputed from the
batch and the replay number (``Batch.trace_errors``): replays vary it, so a pool trace's
generated flag is not the truth of what was sent.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.loadgen.pool import Batch, replay_trace_id

# Answers that mean "try again later": OTLP's retryable HTTP statuses and gRPC codes.
RETRYABLE = frozenset({"429", "502", "503", "504", "RESOURCE_EXHAUSTED", "UNAVAILABLE"})


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One sent trace: hex id, span count, whether a span has status ERROR, send time."""

    trace_id: str
    spans: int
    error: bool
    sent_at: float  # unix time the request carrying its (last) spans was sent


class Ledger:
    """Thread-safe counters and per-trace records of one load run."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self._lock = threading.Lock()
        self._batches: list[tuple[Batch, int, float]] = []
        self._failed_batches: list[tuple[Batch, int]] = []
        self._traces: list[TraceRecord] = []
        self._failed_traces: list[TraceRecord] = []
        self._timeline: Counter[int] = Counter()
        self.responses: Counter[str] = Counter()
        self.connection_errors = 0
        self.retries = 0
        self.requests_sent = 0
        self.failed_requests = 0
        self.failed_spans = 0
        self.rejected_spans = 0
        self.spans_sent = 0
        self.traces_sent = 0
        self.error_traces_sent = 0
        self.last_error = ""

    # ------------------------------------------------------------------ recording

    def response(self, status: str) -> None:
        with self._lock:
            self.responses[status] += 1

    def connection_error(self, message: str) -> None:
        with self._lock:
            self.connection_errors += 1
            self.last_error = message

    def retry(self) -> None:
        with self._lock:
            self.retries += 1

    def request_failed(self, spans: int, message: str) -> None:
        with self._lock:
            self.failed_requests += 1
            self.failed_spans += spans
            self.last_error = message

    def rejected(self, spans: int, message: str) -> None:
        """Spans the gateway refused inside an accepted request (OTLP partial success)."""
        with self._lock:
            self.rejected_spans += spans
            self.last_error = message

    def _delivered(self, spans: int, sent_at: float) -> None:
        self.requests_sent += 1
        self.spans_sent += spans
        self._timeline[max(0, int(sent_at - self.started_at))] += spans

    def batch_delivered(self, batch: Batch, cycle: int, sent_at: float) -> None:
        errors = sum(batch.trace_errors(cycle))  # outside the lock: one draw per unit
        with self._lock:
            self._batches.append((batch, cycle, sent_at))
            self._delivered(batch.spans, sent_at)
            self.traces_sent += len(batch.traces)
            self.error_traces_sent += errors

    def batch_failed(self, batch: Batch, cycle: int, message: str) -> None:
        with self._lock:
            self._failed_batches.append((batch, cycle))
        self.request_failed(batch.spans, message)

    def spans_delivered(self, spans: int, sent_at: float) -> None:
        """An SDK export of ``spans`` spans succeeded (trace records come separately)."""
        with self._lock:
            self._delivered(spans, sent_at)

    def trace_done(self, record: TraceRecord, ok: bool) -> None:
        """All spans of an SDK-made trace were exported (ok) or some failed for good."""
        with self._lock:
            if ok:
                self._traces.append(record)
                self.traces_sent += 1
                self.error_traces_sent += record.error
            else:
                self._failed_traces.append(record)

    # ------------------------------------------------------------------ reading

    def traces(self) -> Iterator[TraceRecord]:
        """Every delivered trace, in send order per sender."""
        with self._lock:
            batches = list(self._batches)
            singles = list(self._traces)
        for batch, cycle, sent_at in batches:
            yield from _records(batch, cycle, sent_at)
        yield from singles

    def delivered_since(self, position: int) -> tuple[int, list[TraceRecord]]:
        """Traces of the requests delivered after the first ``position`` ones, and the new
        position: lets an observer follow a run while it lasts (protobuf mode)."""
        with self._lock:
            batches = self._batches[position:]
        records = [record for batch, cycle, at in batches for record in _records(batch, cycle, at)]
        return position + len(batches), records

    def failed_traces(self) -> Iterator[TraceRecord]:
        """Traces of requests that failed for good (never delivered)."""
        with self._lock:
            batches = list(self._failed_batches)
            singles = list(self._failed_traces)
        for batch, cycle in batches:
            yield from _records(batch, cycle, 0.0)
        yield from singles

    def timeline(self, seconds: float) -> list[int]:
        """Spans delivered in each second of the run."""
        with self._lock:
            last = max([int(seconds), *self._timeline]) if self._timeline else int(seconds)
            return [self._timeline.get(second, 0) for second in range(last + 1)]


def _records(batch: Batch, cycle: int, sent_at: float) -> Iterator[TraceRecord]:
    """The traces of replay ``cycle`` of a pool request, with that replay's ids and errors."""
    for info, error in zip(batch.traces, batch.trace_errors(cycle), strict=True):
        yield TraceRecord(replay_trace_id(info.trace_id, cycle).hex(), info.spans, error, sent_at)


@dataclass
class LoadgenResult:
    """What a load run did; ``traces()`` and ``summary()`` give the ground truth."""

    topology: str
    mode: str
    transport: str
    endpoint: str
    seed: int
    target_rate: float
    duration: float
    burst: dict[str, float] | None
    bad_deploy: dict[str, Any] | None
    started_at: float
    elapsed: float
    build_seconds: float
    cpu_seconds: float
    shortfall_spans: int
    ledger: Ledger = field(repr=False)

    # counters, read from the ledger
    @property
    def spans_sent(self) -> int:
        return self.ledger.spans_sent

    @property
    def traces_sent(self) -> int:
        return self.ledger.traces_sent

    @property
    def error_traces_sent(self) -> int:
        return self.ledger.error_traces_sent

    @property
    def requests_sent(self) -> int:
        return self.ledger.requests_sent

    @property
    def responses(self) -> dict[str, int]:
        return dict(self.ledger.responses)

    @property
    def throttled(self) -> int:
        """Answers that asked us to retry later (429, 503, RESOURCE_EXHAUSTED, ...)."""
        return sum(n for status, n in self.ledger.responses.items() if status in RETRYABLE)

    @property
    def retries(self) -> int:
        return self.ledger.retries

    @property
    def failed_requests(self) -> int:
        return self.ledger.failed_requests

    @property
    def failed_spans(self) -> int:
        return self.ledger.failed_spans

    @property
    def rejected_spans(self) -> int:
        return self.ledger.rejected_spans

    @property
    def connection_errors(self) -> int:
        return self.ledger.connection_errors

    @property
    def spans_per_second(self) -> float:
        return self.spans_sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def spans_per_cpu_second(self) -> float:
        """Spans sent per CPU second of this process: the generator's rate per core."""
        return self.spans_sent / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    def traces(self) -> Iterator[TraceRecord]:
        return self.ledger.traces()

    def error_trace_ids(self) -> list[str]:
        return [t.trace_id for t in self.traces() if t.error]

    def failed_trace_ids(self) -> list[str]:
        return [t.trace_id for t in self.ledger.failed_traces()]

    def timeline(self) -> list[int]:
        return self.ledger.timeline(self.elapsed)

    def counters(self) -> dict[str, Any]:
        """The figures of the run without per-trace detail."""
        return {
            "topology": self.topology,
            "mode": self.mode,
            "transport": self.transport,
            "endpoint": self.endpoint,
            "seed": self.seed,
            "target_rate": self.target_rate,
            "duration": self.duration,
            "burst": self.burst,
            "bad_deploy": self.bad_deploy,
            "started_at": self.started_at,
            "elapsed": round(self.elapsed, 3),
            "build_seconds": round(self.build_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "traces_sent": self.traces_sent,
            "spans_sent": self.spans_sent,
            "error_traces_sent": self.error_traces_sent,
            "requests_sent": self.requests_sent,
            "spans_per_second": round(self.spans_per_second, 1),
            "spans_per_cpu_second": round(self.spans_per_cpu_second, 1),
            "responses": self.responses,
            "throttled": self.throttled,
            "retries": self.retries,
            "connection_errors": self.connection_errors,
            "failed_requests": self.failed_requests,
            "failed_spans": self.failed_spans,
            "rejected_spans": self.rejected_spans,
            "shortfall_spans": self.shortfall_spans,
            "last_error": self.ledger.last_error,
        }

    def summary(self) -> dict[str, Any]:
        """Counters plus ground truth: error traces, failed traces, every trace sent.

        ``traces`` is a list of ``[trace id hex, spans, error 0/1, sent_at]``.
        """
        traces = list(self.traces())
        return {
            **self.counters(),
            "timeline": self.timeline(),
            "error_trace_ids": [t.trace_id for t in traces if t.error],
            "failed_trace_ids": self.failed_trace_ids(),
            "traces": [[t.trace_id, t.spans, int(t.error), round(t.sent_at, 6)] for t in traces],
        }

    def write_summary(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(self.summary()))
