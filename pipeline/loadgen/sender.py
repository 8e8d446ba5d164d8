"""Protobuf mode: send pre-built OTLP requests at a paced rate over HTTP or gRPC.

One asyncio loop paces (spans due = integral of the rate profile, checked every 5 ms),
renders the next pool request with fresh ids and times, and hands it to a few
concurrent senders. A retryable answer (HTTP 429/502/503/504, gRPC RESOURCE_EXHAUSTED or
UNAVAILABLE, a refused connection) is counted and retried after the server's
Retry-After / RetryInfo, else after an exponential backoff, until ``max_retry_seconds``;
then the request is counted as failed and its traces are listed. Nothing is dropped
silently. If the gateway cannot keep up, at most one second of backlog is kept and
the rest is reported as shortfall, so a slow gateway does not turn into a later flood.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import grpc
import httpx
from google.rpc import error_details_pb2, status_pb2

from pipeline.loadgen.ledger import RETRYABLE, Ledger
from pipeline.loadgen.pacing import RateProfile
from pipeline.loadgen.pool import Replay
from pipeline.loadgen.progress import LoadProgress
from pipeline.wire.otlp import DecodeError, ExportTraceServiceResponse

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TICK_SECONDS = 0.005
MAX_LAG_SECONDS = 1.0
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to send: an OTLP/HTTP URL (…/v1/traces) or a gRPC host:port, plus headers."""

    transport: str  # "http" or "grpc"
    address: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Answer:
    status: str  # "200", "429", "OK", "UNAVAILABLE", ...
    retry_after: float | None = None
    rejected_spans: int = 0
    message: str = ""


Post = Callable[[bytes], Awaitable[Answer]]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _partial_success(raw: bytes) -> tuple[int, str]:
    if not raw:
        return 0, ""
    try:
        reply = ExportTraceServiceResponse.FromString(raw)
    except DecodeError:
        return 0, ""
    return reply.partial_success.rejected_spans, reply.partial_success.error_message


def _grpc_retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    """RetryInfo from google.rpc.Status in the trailers (what the gateway sends)."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


@asynccontextmanager
async def open_transport(endpoint: Endpoint, concurrency: int) -> AsyncIterator[Post]:
    """A function body -> Answer over the endpoint's transport, with pooled connections."""
    if endpoint.transport == "grpc":
        async with grpc.aio.insecure_channel(endpoint.address) as channel:
            export = channel.unary_unary(EXPORT_METHOD)
            metadata = tuple((k.lower(), v) for k, v in endpoint.headers)

            async def post_grpc(body: bytes) -> Answer:
                try:
                    raw = await export(body, timeout=REQUEST_TIMEOUT, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    return Answer(exc.code().name, _grpc_retry_delay(exc), 0, exc.details() or "")
                rejected, message = _partial_success(raw)
                return Answer("OK", None, rejected, message)

            yield post_grpc
        return
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/x-protobuf", **dict(endpoint.headers)}
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT) as client:

        async def post_http(body: bytes) -> Answer:
            reply = await client.post(endpoint.address, content=body, headers=headers)
            if reply.status_code == 200:
                rejected, message = _partial_success(reply.content)
                return Answer("200", None, rejected, message)
            retry_after = parse_retry_after(reply.headers.get("retry-after"))
            return Answer(str(reply.status_code), retry_after, 0, reply.text[:300])

        yield post_http


async def deliver(
    post: Post, body: bytes, spans: int, ledger: Ledger, max_retry_seconds: float
) -> tuple[float | None, str]:
    """Send until accepted; returns (send time of the accepted attempt or None, last error)."""
    first = time.monotonic()
    attempt = 0
    while True:
        sent_at = time.time()
        try:
            answer = await post(body)
        except (httpx.HTTPError, OSError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            ledger.connection_error(message)
            delay = None
        else:
            ledger.response(answer.status)
            if answer.status in ("200", "OK"):
                if answer.rejected_spans:
                    ledger.rejected(answer.rejected_spans, answer.message)
                return sent_at, ""
            message = f"{answer.status}: {answer.message}"
            if answer.status not in RETRYABLE:
                return None, message
            delay = answer.retry_after
        if delay is None:
            delay = min(5.0, 0.05 * 2**attempt)
        if time.monotonic() - first + delay > max_retry_seconds:
            return None, f"gave up after {attempt + 1} attempts; last: {message}"
        ledger.retry()
        attempt += 1
        await asyncio.sleep(delay)


async def replay_paced(
    endpoint: Endpoint,
    replay: Replay,
    profile: RateProfile,
    duration: float,
    ledger: Ledger,
    progress: LoadProgress,
    *,
    concurrency: int = 10,
    max_retry_seconds: float = 30.0,
    stop: threading.Event | None = None,
) -> tuple[float, int]:
    """Send pool requests at the profile's rate for ``duration`` s.

    Returns (seconds the pacing ran, spans due but not sent: the shortfall).
    """
    queue: asyncio.Queue = asyncio.Queue(maxsize=concurrency)

    async def sender(post: Post) -> None:
        while (item := await queue.get()) is not None:
            batch, cycle, body = item
            try:
                sent_at, error = await deliver(post, body, batch.spans, ledger, max_retry_seconds)
            except Exception as exc:  # a transport bug must not stop the run's accounting
                sent_at, error = None, f"{type(exc).__name__}: {exc}"
            if sent_at is None:
                ledger.batch_failed(batch, cycle, error)
            else:
                ledger.batch_delivered(batch, cycle, sent_at)

    async with open_transport(endpoint, concurrency) as post:
        workers = [asyncio.create_task(sender(post)) for _ in range(concurrency)]
        started = time.monotonic()
        queued = skipped = 0.0
        elapsed = 0.0
        try:
            while True:
                elapsed = time.monotonic() - started
                if elapsed >= duration or (stop is not None and stop.is_set()):
                    break
                due = profile.due(elapsed)
                backlog_cap = profile.rate_at(elapsed) * MAX_LAG_SECONDS
                if due - queued - skipped > backlog_cap:
                    skipped = due - queued - backlog_cap
                while queued + skipped < due:
                    batch, cycle = replay.next(elapsed)
                    body = batch.render(cycle, time.time_ns())
                    remaining = duration - (time.monotonic() - started)
                    try:
                        await asyncio.wait_for(queue.put((batch, cycle, body)), max(remaining, 0))
                    except TimeoutError:
                        break
                    queued += batch.spans
                progress.update(elapsed, profile.rate_at(elapsed))
                await asyncio.sleep(TICK_SECONDS)
        finally:
            elapsed = min(time.monotonic() - started, duration)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
    return elapsed, max(0, int(profile.due(elapsed) - queued))
