"""SDK mode: the generated traces go through the real OpenTelemetry Python SDK and exporter.

Every service instance gets its own TracerProvider (its resource, as a separate process
would have), spans are started and ended with the generator's times, ids and parents,
and the SDK's OTLP exporter (HTTP, or gRPC when installed) sends them: its encoder, its
retry policy (which honours Retry-After), its session. The one thing a real app does
differently is batching: instead of a BatchSpanProcessor, which drops spans silently
when its queue is full, each instance's ended spans are buffered here and exported in
batches of up to 512 at least once a second by a few threads, and every export result is
counted. Slower than protobuf mode (the SDK costs tens of µs per span) but what an
instrumented application really sends.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from pipeline.loadgen.generator import (
    SCOPE_NAME,
    SCOPE_VERSION,
    GeneratedTrace,
    Instance,
    TraceGenerator,
)
from pipeline.loadgen.ledger import Ledger, TraceRecord
from pipeline.loadgen.pacing import RateProfile
from pipeline.loadgen.progress import LoadProgress
from pipeline.loadgen.sender import MAX_LAG_SECONDS, TICK_SECONDS, Endpoint

EXPORT_BATCH = 512
FLUSH_SECONDS = 1.0
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT}
_KINDS |= {4: SpanKind.PRODUCER, 5: SpanKind.CONSUMER}


class _ScriptedIds(IdGenerator):
    """Hands out the ids the generator chose, so SDK spans carry the ground truth's ids."""

    def __init__(self) -> None:
        self.span_id = 1
        self.trace_id = 1

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id

    def is_trace_id_random(self) -> bool:
        return True


class _Collect(SpanProcessor):
    """Puts ended spans into their instance's export buffer."""

    def __init__(self, buffer: list[ReadableSpan]) -> None:
        self.buffer = buffer

    def on_end(self, span: ReadableSpan) -> None:
        self.buffer.append(span)


class SdkEmitter:
    """Replays generated spans through one TracerProvider per service instance."""

    def __init__(self) -> None:
        self._ids = _ScriptedIds()
        self._tracers: dict[Instance, trace.Tracer] = {}
        self.buffers: dict[Instance, list[ReadableSpan]] = {}

    def _tracer(self, instance: Instance) -> trace.Tracer:
        tracer = self._tracers.get(instance)
        if tracer is None:
            provider = TracerProvider(
                resource=Resource(dict(instance.resource)), id_generator=self._ids
            )
            buffer: list[ReadableSpan] = []
            provider.add_span_processor(_Collect(buffer))
            tracer = provider.get_tracer(SCOPE_NAME, SCOPE_VERSION)
            self._tracers[instance] = tracer
            self.buffers[instance] = buffer
        return tracer

    def emit(self, generated: GeneratedTrace) -> None:
        ids = self._ids
        trace_id = int.from_bytes(generated.trace_id, "big")
        ids.trace_id = trace_id
        for record in generated.spans:
            ids.span_id = int.from_bytes(record.span_id, "big")
            if record.parent_span_id:
                parent = SpanContext(
                    trace_id,
                    int.from_bytes(record.parent_span_id, "big"),
                    is_remote=record.remote_parent,
                    trace_flags=_SAMPLED,
                )
                context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
            else:
                context = Context()
            links = [
                Link(
                    SpanContext(
                        int.from_bytes(linked_trace, "big"),
                        int.from_bytes(linked_span, "big"),
                        is_remote=True,
                        trace_flags=_SAMPLED,
                    )
                )
                for linked_trace, linked_span in record.links or ()
            ]
            span = self._tracer(record.instance).start_span(
                record.name,
                context=context,
                kind=_KINDS[record.kind],
                attributes=dict(record.attributes),
                links=links,
                start_time=record.start,
            )
            for name, at, attributes in record.events or ():
                span.add_event(name, dict(attributes), timestamp=at)
            if record.error is not None:
                span.set_status(Status(StatusCode.ERROR, record.error))
            span.end(end_time=record.end)


def make_exporter(endpoint: Endpoint, ledger: Ledger, timeout: float) -> SpanExporter:
    """The SDK's own OTLP exporter; HTTP answers are counted through a session hook."""
    headers = dict(endpoint.headers)
    if endpoint.transport == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as exc:
            raise RuntimeError(
                "sdk mode over gRPC needs opentelemetry-exporter-otlp-proto-grpc "
                "(pip install 'spansieve[dev]')"
            ) from exc
        return GrpcSpanExporter(
            endpoint=endpoint.address, insecure=True, headers=headers, timeout=timeout
        )
    session = requests.Session()

    def count(response: requests.Response, *args: object, **kwargs: object) -> None:
        ledger.response(str(response.status_code))

    session.hooks["response"].append(count)
    return HttpSpanExporter(
        endpoint=endpoint.address, headers=headers, timeout=timeout, session=session
    )


def _shift_to(traces: list[GeneratedTrace], end_ns: int) -> None:
    """Move a request's traces in time so that its last span ends at ``end_ns``."""
    delta = end_ns - max(t.end for t in traces)
    for generated in traces:
        for span in generated.spans:
            span.start += delta
            span.end += delta
            if span.events:
                span.events = [(n, at + delta, a) for n, at, a in span.events]


@dataclass
class _Pending:
    """Spans of one trace still being exported."""

    record: TraceRecord
    remaining: int
    ok: bool = True
    sent_at: float = 0.0


def run_sdk(
    endpoint: Endpoint,
    generator: TraceGenerator,
    profile: RateProfile,
    duration: float,
    ledger: Ledger,
    progress: LoadProgress,
    *,
    concurrency: int = 10,
    max_retry_seconds: float = 30.0,
    stop: threading.Event | None = None,
) -> tuple[float, int]:
    """Generate, record and export traces at the profile's rate for ``duration`` s.

    Returns (seconds the pacing ran, spans due but not sent: the shortfall).
    """
    make_exporter(endpoint, ledger, max_retry_seconds).shutdown()  # fail early, not in a thread
    emitter = SdkEmitter()
    local = threading.local()
    exporters: list[SpanExporter] = []
    pending: dict[int, _Pending] = {}
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(concurrency * 2)

    def export(spans: list[ReadableSpan]) -> None:
        try:
            exporter = getattr(local, "exporter", None)
            if exporter is None:
                exporter = local.exporter = make_exporter(endpoint, ledger, max_retry_seconds)
                with lock:
                    exporters.append(exporter)
            sent_at = time.time()
            try:
                ok = exporter.export(spans) is SpanExportResult.SUCCESS
            except Exception as exc:  # an exporter bug must not lose the accounting
                ok = False
                ledger.connection_error(f"{type(exc).__name__}: {exc}")
            if ok:
                ledger.spans_delivered(len(spans), sent_at)
            else:
                ledger.request_failed(len(spans), "the SDK exporter gave up (see its log)")
            finished = []
            with lock:
                for span in spans:
                    trace_id = span.context.trace_id
                    entry = pending[trace_id]
                    entry.remaining -= 1
                    entry.ok &= ok
                    entry.sent_at = max(entry.sent_at, sent_at)
                    if entry.remaining == 0:
                        finished.append(pending.pop(trace_id))
            for entry in finished:
                record = entry.record
                done = TraceRecord(record.trace_id, record.spans, record.error, entry.sent_at)
                ledger.trace_done(done, entry.ok)
        finally:
            slots.release()

    def flush(executor: ThreadPoolExecutor, everything: bool) -> None:
        for buffer in emitter.buffers.values():
            while buffer and (everything or len(buffer) >= EXPORT_BATCH):
                batch = buffer[:EXPORT_BATCH]
                del buffer[:EXPORT_BATCH]
                slots.acquire()
                executor.submit(export, batch)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="loadgen-export") as executor:
        started = time.monotonic()
        last_flush = started
        generated = skipped = 0.0
        elapsed = 0.0
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= duration or (stop is not None and stop.is_set()):
                break
            due = profile.due(elapsed)
            backlog_cap = profile.rate_at(elapsed) * MAX_LAG_SECONDS
            if due - generated - skipped > backlog_cap:
                skipped = due - generated - backlog_cap
            while generated + skipped < due and time.monotonic() - started < duration:
                now_ns = time.time_ns()
                traces = generator.generate(now_ns, elapsed)
                _shift_to(traces, now_ns)
                with lock:
                    for generated_trace in traces:
                        record = TraceRecord(
                            generated_trace.trace_id.hex(),
                            len(generated_trace.spans),
                            generated_trace.error,
                            0.0,
                        )
                        key = int.from_bytes(generated_trace.trace_id, "big")
                        pending[key] = _Pending(record, len(generated_trace.spans))
                for generated_trace in traces:
                    emitter.emit(generated_trace)
                    generated += len(generated_trace.spans)
                if sum(map(len, emitter.buffers.values())) >= EXPORT_BATCH:
                    flush(executor, everything=False)
            now = time.monotonic()
            if now - last_flush >= FLUSH_SECONDS:
                flush(executor, everything=True)
                last_flush = now
            progress.update(elapsed, profile.rate_at(elapsed))
            time.sleep(TICK_SECONDS)
        elapsed = min(time.monotonic() - started, duration)
        flush(executor, everything=True)
    for exporter in exporters:
        exporter.shutdown()
    return elapsed, max(0, int(profile.due(elapsed) - generated))
