"""The sampler core in one process: an in-memory spans topic, the real gateway in front of
it, rocksdict databases in a temporary folder, a fake clock and list-collecting outputs.

* ``SpansTopic``: the spans topic's partitions as lists of records (offset = position),
  stamped with the fake clock as the broker's LogAppendTime would; it is also the
  gateway's producer and the sampler's replay source;
* ``Gateway``: the real ``SpanIngestor`` (checks, per-trace pieces, one message per
  partition) writing into that topic;
* ``Worker``: a ``TraceSampler`` over ``RdictPartitions`` with its consumer position per
  partition; ``consume`` hands it every record it has not seen yet, ticks included.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from pipeline.config.settings import Settings
from pipeline.gateway.auth import Principal
from pipeline.gateway.http import PROTOBUF, parse_body
from pipeline.gateway.ingest import SpanIngestor
from pipeline.sampler.buffer import TraceBuffer
from pipeline.sampler.core import POLICY_ATTRIBUTE, TICK_KEY, TraceSampler, cache_entries
from pipeline.sampler.decisions import DecisionCache
from pipeline.sampler.policy_source import PolicySource, seconds
from pipeline.sampler.storage import RdictPartitions
from pipeline.wire.partitioner import partition_for_trace
from pipeline.wire.pieces import header_of

T0 = 1_700_000_000.0  # seconds: the fake clock's start (event time of the first record)
NS = 1_000_000_000

POLICIES = """\
decision_wait: 5s
max_trace_age: 60s
num_traces: 1000
decision_cache_ttl: 120s
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
"""


class FakeClock:
    """Seconds since the epoch, moved only by ``advance``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # seconds, the broker's append time
    header: bytes | None


class SpansTopic:
    """The spans topic in memory. Also the gateway's producer and the replay source."""

    reachable = True  # what the gateway asks of its producer

    def __init__(self, partitions: int, clock: FakeClock) -> None:
        self.partitions = partitions
        self.clock = clock
        self.records: list[list[Record]] = [[] for _ in range(partitions)]
        self.replays: list[tuple[int, int, int]] = []  # (partition, start, end) re-read

    def append(
        self, partition: int, value: bytes | None, key: bytes | None = None, header=None
    ) -> int:
        log = self.records[partition]
        log.append(Record(len(log), key, value, self.clock(), header))
        return len(log) - 1

    def tick(self) -> None:
        """What the group leader's timer sends: a tick to every partition."""
        for partition in range(self.partitions):
            self.append(partition, b"", key=TICK_KEY)

    def send(self, _topic: str, value: bytes, partition: int, headers=None):
        """The gateway's ``AsyncProducer.send``: appended at once, acknowledged at once."""
        self.append(partition, value, header=header_of(headers))
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked

    async def read_range(
        self, partition: int, start: int, end: int
    ) -> AsyncIterator[list[tuple[int, bytes | None, bytes | None, float, bytes | None]]]:
        """The sampler's ``ReplaySource``: records [start, end) in batches of two."""
        self.replays.append((partition, start, end))
        batch = []
        for record in self.records[partition][start:end]:
            batch.append((record.offset, record.key, record.value, record.timestamp, record.header))
            if len(batch) == 2:
                yield batch
                batch = []
        if batch:
            yield batch


class Gateway:
    """The real ingestion path (``SpanIngestor``) in front of the in-memory topic."""

    def __init__(self, settings: Settings, topic: SpansTopic) -> None:
        self.ingestor = SpanIngestor(settings, topic)

    async def export(self, request: ExportTraceServiceRequest | TracesData) -> int:
        """Send an export request as OTLP/HTTP bytes; returns the accepted span count."""
        body = request.SerializeToString()
        parsed = parse_body(PROTOBUF, body)
        outcome = await self.ingestor.ingest(parsed, len(body), Principal(0, None))
        return outcome.accepted


@dataclass
class Outputs:
    """Where the sampler's kept traces, dead letters and span-metric windows go."""

    kept: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    dead: list[tuple[bytes, str]] = field(default_factory=list)
    metrics: list[tuple[int, str, bytes, bytes]] = field(default_factory=list)

    async def send_kept(self, partition: int, trace_id: bytes, value: bytes):
        self.kept.append((partition, trace_id, value))
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked

    async def send_dead_letter(self, value: bytes, reason: str) -> None:
        self.dead.append((value, reason))

    async def send_metrics(self, partition: int, kind: str, key: bytes, value: bytes):
        self.metrics.append((partition, kind, key, value))
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked

    def kept_spans(self, trace_id: bytes) -> list[Span]:
        """Every kept span of a trace, over all messages sent for it."""
        spans = []
        for _partition, kept_id, value in self.kept:
            if kept_id == trace_id:
                spans.extend(all_spans(TracesData.FromString(value)))
        return spans

    def kept_ids(self) -> list[bytes]:
        return [trace_id for _, trace_id, _ in self.kept]


class RecordingStore(RdictPartitions):
    """rocksdict databases plus the changelog a Faust table would write, as a list."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.changelog: list[tuple[int, bytes, bytes]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> None:
        self.changelog.append((partition, key, value))

    def restore_from(self, changelog: Iterable[tuple[int, bytes, bytes]]) -> None:
        """What Faust's recovery does for a new owner: apply the changelog in order."""
        for partition, key, value in changelog:
            self.db(partition).put(key, value)
            self.changelog.append((partition, key, value))


class Worker:
    """A ``TraceSampler`` with its databases and consumer positions."""

    def __init__(
        self,
        settings: Settings,
        topic: SpansTopic,
        folder: Path,
        outputs: Outputs | None = None,
        clock: FakeClock | None = None,
        decisions: RecordingStore | None = None,
    ) -> None:
        self.topic = topic
        self.outputs = outputs or Outputs()
        self.pieces = RdictPartitions(folder / "trace-pieces")
        self.decisions = decisions or RecordingStore(folder / "trace-decisions")
        policies = PolicySource(settings)
        self.sampler = TraceSampler(
            settings,
            policies,
            TraceBuffer(self.pieces),
            DecisionCache(
                self.decisions,
                ttl=seconds(policies.config.decision_cache_ttl),
                max_entries=cache_entries(policies.config),
            ),
            self.outputs.send_kept,
            self.outputs.send_dead_letter,
            topic.read_range,
            clock=clock or topic.clock,
            send_metrics=self.outputs.send_metrics,
        )
        self.positions = [0] * topic.partitions
        # (partition, offset) the consumer drops without handing it over, once each.
        self.dropped: set[tuple[int, int]] = set()

    def start_at(self, positions: Iterable[int]) -> None:
        """Where the consumer starts (its group's committed offsets)."""
        self.positions = list(positions)

    async def consume(self) -> int:
        """Hand the sampler every record after its positions; returns how many."""
        handled = 0
        for partition in range(self.topic.partitions):
            log = self.topic.records[partition]
            while self.positions[partition] < len(log):
                record = log[self.positions[partition]]
                if (partition, record.offset) in self.dropped:  # as Faust may drop one
                    self.dropped.discard((partition, record.offset))
                    self.positions[partition] += 1
                    continue
                if record.key == TICK_KEY:
                    await self.sampler.on_tick(partition, record.timestamp, record.offset)
                else:
                    await self.sampler.on_spans(
                        partition, record.value, record.header, record.timestamp, record.offset
                    )
                self.positions[partition] += 1
                handled += 1
        return handled

    def close(self) -> None:
        """The worker stops: its databases are closed (a restart reopens them)."""
        self.pieces.close_all()
        self.decisions.close_all()


def settings_for(folder: Path, policies: str = POLICIES, partitions: int = 2, **extra) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policies.yaml"
    path.write_text(policies)
    return Settings(
        partitions=partitions,
        policies=path,
        topic_prefix="unit",
        state_dir=folder,
        **extra,
    )


# --- traces --------------------------------------------------------------------------


def new_trace_id() -> bytes:
    return os.urandom(16)


def trace_on(partition: int, partitions: int) -> bytes:
    """A random trace id that the partitioner puts on ``partition``."""
    while True:
        trace_id = new_trace_id()
        if partition_for_trace(trace_id, partitions) == partition:
            return trace_id


class TraceMaker:
    """Spans of one trace, added to export requests service by service."""

    def __init__(self, trace_id: bytes | None = None, start: float = T0) -> None:
        self.trace_id = trace_id or new_trace_id()
        self.start_ns = int(start * NS)
        self.root_id = os.urandom(8)
        self.span_ids: list[bytes] = []

    def add(
        self,
        request: ExportTraceServiceRequest,
        service: str,
        name: str,
        *,
        root: bool = False,
        error: bool = False,
        attributes: dict[str, str] | None = None,
    ) -> Span:
        scope = None
        for resource_spans in request.resource_spans:
            if _service(resource_spans) == service:
                scope = resource_spans.scope_spans[0]
        if scope is None:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.add(key="service.name").value.string_value = service
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "unit-tests"
        span_id = self.root_id if root else os.urandom(8)
        span = scope.spans.add(
            trace_id=self.trace_id,
            span_id=span_id,
            parent_span_id=b"" if root else self.root_id,
            name=name,
            kind=Span.SPAN_KIND_SERVER if root else Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=self.start_ns + len(self.span_ids) * 1_000_000,
            end_time_unix_nano=self.start_ns + len(self.span_ids) * 1_000_000 + 500_000,
        )
        for key, value in (attributes or {}).items():
            span.attributes.add(key=key).value.string_value = value
        if error:
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = "card declined"
        self.span_ids.append(span_id)
        return span

    def request(self, spans: int, *, root: bool = False, error: bool = False, service="api"):
        """An export request with ``spans`` spans of this trace (the first one the root if
        ``root``, the last one failing if ``error``)."""
        request = ExportTraceServiceRequest()
        for number in range(spans):
            self.add(
                request,
                service,
                f"op-{len(self.span_ids)}",
                root=root and number == 0,
                error=error and number == spans - 1,
            )
        return request


def _service(resource_spans) -> str:
    for attribute in resource_spans.resource.attributes:
        if attribute.key == "service.name":
            return attribute.value.string_value
    return ""


def merged(*requests: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """One export request carrying the spans of several (several traces per request)."""
    out = ExportTraceServiceRequest()
    for request in requests:
        out.resource_spans.extend(request.resource_spans)
    return out


def all_spans(data) -> list[Span]:
    return [
        span
        for resource_spans in data.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def policy_of(span: Span) -> str | None:
    for attribute in span.attributes:
        if attribute.key == POLICY_ATTRIBUTE:
            return attribute.value.string_value
    return None
