"""Synthetic traces from a topology: pure logic, reproducible from a seed.

``TraceGenerator(topology, seed).generate(start_ns, elapsed)`` plays one user request
through the estate and returns its trace (plus a new trace for every message consumer
that continues with a span link instead of as a child). Every random draw comes from
one ``random.Random(seed)``, so a seed and a sequence of calls give the same spans, ids
and timestamps every time. ``encode_request(traces)`` turns traces into one OTLP
``ExportTraceServiceRequest`` with one ResourceSpans per service instance.

Timing model: each operation spends its own (heavy-tailed) time partly before and
partly after its steps; sequential steps follow each other, parallel ones overlap; a
call adds a network hop each way around the callee's server span, so children lie
inside their parents. Spans of an instance with a clock skew are shifted by it (as a
host with a wrong clock would report them), and message consumers run after the
producer's span has ended, as asynchronous messaging does.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from bisect import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.loadgen.topology import Consumer, Latency, Operation, Step, Topology
from pipeline.wire.otlp import ExportTraceServiceRequest, set_any_value

INTERNAL = Span.SPAN_KIND_INTERNAL
SERVER = Span.SPAN_KIND_SERVER
CLIENT = Span.SPAN_KIND_CLIENT
PRODUCER = Span.SPAN_KIND_PRODUCER
CONSUMER = Span.SPAN_KIND_CONSUMER
STATUS_ERROR = 2
# OTLP span/link flags as the Python SDK sets them: "is_remote is known", and is_remote
FLAGS_LOCAL = 0x100
FLAGS_REMOTE = 0x300

SCOPE_NAME = "spansieve.loadgen"
SCOPE_VERSION = "1.0.0"
SDK_VERSION = "1.27.0"

Attributes = list[tuple[str, Any]]

_EXCEPTIONS = {
    "java": ("java.net.SocketTimeoutException", "Read timed out"),
    "go": ("*net.OpError", "dial tcp: connection refused"),
    "python": ("ConnectionResetError", "[Errno 104] Connection reset by peer"),
    "nodejs": ("Error", "ECONNRESET"),
    "dotnet": ("System.InvalidOperationException", "Sequence contains no elements"),
    "ruby": ("Timeout::Error", "execution expired"),
    "rust": ("std::io::Error", "connection reset"),
    "cpp": ("std::runtime_error", "upstream unavailable"),
    "php": ("RuntimeException", "upstream returned an invalid response"),
}
_GRPC_ERRORS = (2, 4, 13, 14)  # UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE
_HTTP_ERRORS = (500, 500, 500, 502, 503, 504)
# Status messages of spans that fail in a replay but did not when generated.
HTTP_FAILURE = "HTTP 500"
GRPC_FAILURE = "gRPC status 14"  # UNAVAILABLE
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "okhttp/4.12.0",
)


@dataclass(frozen=True, slots=True, eq=False)
class Instance:
    """One running copy of a service: its host, clock offset and resource attributes."""

    service: str
    index: int
    host: str
    version: str
    skew_ns: int
    resource: tuple[tuple[str, Any], ...]


@dataclass(slots=True)
class SpanRecord:
    """A finished span, independent of how it will be sent (protobuf or SDK)."""

    span_id: bytes
    parent_span_id: bytes
    name: str
    kind: int
    start: int
    end: int
    instance: Instance
    attributes: Attributes
    error: str | None = None  # status message when the span failed
    remote_parent: bool = False
    events: list[tuple[str, int, Attributes]] | None = None
    links: list[tuple[bytes, bytes]] | None = None
    # How replays of a pre-built request vary errors (pipeline.loadgen.pool): the chance
    # the span fails on its own (its topology error rate), the status message it then
    # gets, and for a client span the server span whose outcome it reports instead.
    error_rate: float = 0.0
    failure: str = ""
    reports: bytes = b""


@dataclass(slots=True)
class GeneratedTrace:
    trace_id: bytes
    spans: list[SpanRecord] = field(default_factory=list)

    @property
    def error(self) -> bool:
        return any(span.error is not None for span in self.spans)

    @property
    def end(self) -> int:
        return max(span.end for span in self.spans)


LatencyDraw = Callable[[random.Random], int]


def latency_draw(latency: Latency, factor: float = 1.0) -> LatencyDraw:
    """A function rng -> nanoseconds following the configured distribution."""
    cap = latency.cap * factor * 1e9
    median = latency.median * factor * 1e9
    if latency.distribution == "pareto":
        alpha = latency.alpha
        scale = median / 2 ** (1 / alpha)
        return lambda rng: int(min(scale * rng.paretovariate(alpha), cap))
    mu, sigma = math.log(median), latency.sigma
    return lambda rng: int(min(rng.lognormvariate(mu, sigma), cap))


# --------------------------------------------------------------------------- compiled model


@dataclass(slots=True, eq=False)
class _Op:
    """An operation or message handler with everything resolved that does not vary."""

    service: _Service
    name: str
    kind: int
    latency: LatencyDraw
    error_rate: float
    steps: list[_Step]
    server_attributes: Attributes
    client_name: str = ""
    client_attributes: Attributes = field(default_factory=list)
    path_parts: list[str] = field(default_factory=list)  # an HTTP route split at its {ids}
    url_prefix: str = ""
    continuation: str = "child"  # consumers: "child" or "link"


@dataclass(slots=True, eq=False)
class _Step:
    what: str
    probability: float
    repeat: int
    repeat_max: int
    target: tuple[str, str] = ("", "")
    name: str = ""
    attributes: Attributes = field(default_factory=list)
    latency: LatencyDraw | None = None
    error_rate: float = 0.0
    topic: str = ""
    delay: LatencyDraw | None = None
    parallel: list[_Step] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Service:
    name: str
    protocol: str
    language: str
    instances: list[Instance]
    ops: dict[str, _Op] = field(default_factory=dict)
    consumers: dict[str, _Op] = field(default_factory=dict)


def _instance_host(service: str, index: int) -> tuple[str, str]:
    """Stable host name and instance id for a service's n-th instance."""
    digest = zlib.crc32(f"{service}/{index}".encode())
    host = f"ip-10-{(digest >> 16) & 0xFF}-{(digest >> 8) & 0xFF}-{digest & 0xFF}"
    return host, f"{service}-{digest:08x}"


class _World:
    """The estate compiled for one phase of a run (before or after a bad deploy)."""

    def __init__(self, topology: Topology, deployed: bool) -> None:
        self.topology = topology
        deploy = topology.bad_deploy if deployed else None
        self.services: dict[str, _Service] = {}
        for name, cfg in topology.services.items():
            bad = deploy is not None and deploy.service == name
            version = deploy.version if bad and deploy else cfg.version
            instances = []
            for index in range(cfg.instances):
                host, instance_id = _instance_host(name, index)
                resource = (
                    ("service.name", name),
                    ("service.namespace", topology.namespace),
                    ("service.version", version),
                    ("service.instance.id", instance_id),
                    ("host.name", host),
                    ("deployment.environment", topology.environment),
                    ("telemetry.sdk.name", "opentelemetry"),
                    ("telemetry.sdk.language", cfg.language),
                    ("telemetry.sdk.version", SDK_VERSION),
                )
                skew = int(cfg.clock_skew.get(index, 0.0) * 1e9)
                instances.append(Instance(name, index, host, version, skew, resource))
            self.services[name] = _Service(name, cfg.protocol, cfg.language, instances)
        for name, cfg in topology.services.items():
            service = self.services[name]
            bad = deploy is not None and deploy.service == name
            factor = deploy.latency_factor if bad and deploy else 1.0
            service_rate = deploy.error_rate if bad and deploy else cfg.error_rate
            for op_name, op in cfg.operations.items():
                rate = service_rate if bad or op.error_rate is None else op.error_rate
                service.ops[op_name] = self._operation(service, op_name, op, rate, factor)
            for topic, handler in cfg.consumes.items():
                rate = service_rate if bad or handler.error_rate is None else handler.error_rate
                service.consumers[topic] = self._consumer(service, topic, handler, rate, factor)

    def _operation(
        self, service: _Service, name: str, op: Operation, rate: float, factor: float
    ) -> _Op:
        cfg = self.topology.services[service.name]
        user = list(op.attributes.items())
        if cfg.protocol == "grpc":
            rpc_service = cfg.rpc_service or f"{self.topology.namespace}.{service.name}"
            full = f"{rpc_service}/{name}"
            common = [
                ("rpc.system", "grpc"),
                ("rpc.service", rpc_service),
                ("rpc.method", name),
                ("server.address", service.name),
                ("server.port", cfg.port),
            ]
            return _Op(
                service=service,
                name=full,
                kind=SERVER,
                latency=latency_draw(op.latency, factor),
                error_rate=rate,
                steps=self._steps(op.calls, factor),
                server_attributes=[*common, *user],
                client_name=full,
                client_attributes=common,
            )
        method, route = name.split(" ", 1)
        server = [
            ("http.request.method", method),
            ("http.route", route),
            ("url.scheme", "http"),
            ("server.address", service.name),
            ("server.port", cfg.port),
            ("network.protocol.version", "1.1"),
            *user,
        ]
        client = [
            ("http.request.method", method),
            ("server.address", service.name),
            ("server.port", cfg.port),
            ("network.protocol.version", "1.1"),
        ]
        return _Op(
            service=service,
            name=name,
            kind=SERVER,
            latency=latency_draw(op.latency, factor),
            error_rate=rate,
            steps=self._steps(op.calls, factor),
            server_attributes=server,
            client_name=name,
            client_attributes=client,
            path_parts=re.split(r"\{[^}]*\}", route),
            url_prefix=f"http://{service.name}:{cfg.port}",
        )

    def _consumer(
        self, service: _Service, topic: str, handler: Consumer, rate: float, factor: float
    ) -> _Op:
        cfg = self.topology.topics[topic]
        attributes = [
            ("messaging.system", cfg.system),
            ("messaging.destination.name", topic),
            ("messaging.operation.type", "process"),
            ("messaging.operation.name", "process"),
            ("messaging.consumer.group.name", handler.group or service.name),
            ("server.address", cfg.broker),
            ("server.port", cfg.port),
            *handler.attributes.items(),
        ]
        return _Op(
            service=service,
            name=f"process {topic}",
            kind=CONSUMER,
            latency=latency_draw(handler.latency, factor),
            error_rate=rate,
            steps=self._steps(handler.calls, factor),
            server_attributes=attributes,
            continuation=handler.continuation,
        )

    def _steps(self, steps: list[Step], factor: float) -> list[_Step]:
        compiled = []
        for step in steps:
            out = _Step(step.what, step.probability, step.repeat, step.repeat_max or step.repeat)
            if step.call is not None:
                out.target = (step.call, step.operation or "")
            elif step.db is not None:
                store = self.topology.datastores[step.db]
                statement = step.statement or ""
                verb = statement.split(None, 1)[0].upper() if statement.strip() else "QUERY"
                out.name = f"{verb} {step.table}" if step.table else verb
                out.attributes = [("db.system", store.system)]
                if store.namespace:
                    out.attributes.append(("db.namespace", store.namespace))
                out.attributes.append(("db.operation.name", verb))
                if step.table:
                    out.attributes.append(("db.collection.name", step.table))
                out.attributes += [
                    ("db.statement", statement),
                    ("server.address", store.host),
                    ("server.port", store.port),
                ]
                out.latency = latency_draw(store.latency)  # a bad deploy leaves the db alone
                out.error_rate = store.error_rate
            elif step.publish is not None:
                topic = self.topology.topics[step.publish]
                out.topic = step.publish
                out.name = f"send {step.publish}"
                out.attributes = [
                    ("messaging.system", topic.system),
                    ("messaging.destination.name", step.publish),
                    ("messaging.operation.type", "send"),
                    ("messaging.operation.name", "send"),
                    ("server.address", topic.broker),
                    ("server.port", topic.port),
                ]
                out.latency = latency_draw(topic.publish_latency)
                out.delay = latency_draw(topic.delay)
                out.error_rate = topic.error_rate
            elif step.internal is not None:
                out.name = step.internal
                out.latency = latency_draw(step.latency, factor) if step.latency else None
            elif step.parallel is not None:
                out.parallel = self._steps(step.parallel, factor)
            compiled.append(out)
        return compiled


# --------------------------------------------------------------------------- generator


class _Trace:
    __slots__ = ("continuations", "trace")

    def __init__(self, trace_id: bytes) -> None:
        self.trace = GeneratedTrace(trace_id)
        self.continuations: list[GeneratedTrace] = []


class TraceGenerator:
    """Plays user requests through a topology; deterministic for a given seed."""

    def __init__(self, topology: Topology, seed: int = 1) -> None:
        self.topology = topology
        self.rng = random.Random(seed)
        self._normal = _World(topology, deployed=False)
        self._deployed = _World(topology, deployed=True) if topology.bad_deploy else None
        self._entries = [(e.service, e.operation) for e in topology.entry_points]
        total = 0.0
        self._cumulative = []
        for entry in topology.entry_points:
            total += entry.weight
            self._cumulative.append(total)
        self._network = latency_draw(topology.network)
        self._propagation = topology.error_propagation

    def world(self, elapsed: float) -> _World:
        deploy = self.topology.bad_deploy
        if self._deployed is not None and deploy is not None and elapsed >= deploy.at:
            return self._deployed
        return self._normal

    def instances(self, service: str, elapsed: float = 0.0) -> list[Instance]:
        return self.world(elapsed).services[service].instances

    def generate(self, start_ns: int, elapsed: float = 0.0) -> list[GeneratedTrace]:
        """One user request arriving at ``start_ns`` (true time), ``elapsed`` s into a run.

        Returns the request's trace first, then any traces its messages started.
        """
        world = self.world(elapsed)
        rng = self.rng
        index = bisect(self._cumulative, rng.random() * self._cumulative[-1])
        service, operation = self._entries[min(index, len(self._entries) - 1)]
        op = world.services[service].ops[operation]
        builder = _Trace(self._trace_id())
        path = self._path(op)
        extra: Attributes = []
        if op.path_parts:
            extra = [
                ("client.address", f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"),
                ("user_agent.original", rng.choice(_USER_AGENTS)),
            ]
        self._serve(world, builder, op, b"", start_ns, path, extra, None)
        return [builder.trace, *builder.continuations]

    # ------------------------------------------------------------------ internals

    def _trace_id(self) -> bytes:
        return (self.rng.getrandbits(128) | 1).to_bytes(16, "big")

    def _span_id(self) -> bytes:
        return (self.rng.getrandbits(64) | 1).to_bytes(8, "big")

    def _path(self, op: _Op) -> str:
        parts = op.path_parts
        if len(parts) <= 1:
            return parts[0] if parts else ""
        rng = self.rng
        out = parts[0]
        for part in parts[1:]:
            out += str(rng.randrange(1, 100_000)) + part
        return out

    def _serve(
        self,
        world: _World,
        builder: _Trace,
        op: _Op,
        parent: bytes,
        start: int,
        path: str,
        extra: Attributes,
        link: tuple[bytes, bytes] | None,
    ) -> tuple[int, bool, int, bytes]:
        """Run an operation (server or consumer span).

        Returns (true end time, failed, HTTP or gRPC status code (0 for consumers), its
        span id).
        """
        rng = self.rng
        service = op.service
        instance = service.instances[rng.randrange(len(service.instances))]
        span_id = self._span_id()
        own = op.latency(rng)
        before = int(own * rng.random() * 0.6)
        t = start + before
        child_failed = False
        for step in op.steps:
            t, failed = self._step(world, builder, instance, step, span_id, t)
            child_failed |= failed
        end = t + own - before
        own_error = rng.random() < op.error_rate
        failed = own_error or (child_failed and rng.random() < self._propagation)
        attributes = [*op.server_attributes, *extra]
        events = None
        message = None
        code = 0
        if op.path_parts:
            attributes.append(("url.path", path))
            code = rng.choice(_HTTP_ERRORS) if failed else 200
            attributes.append(("http.response.status_code", code))
            if failed:
                attributes.append(("error.type", str(code)))
                message = f"HTTP {code}"
        elif op.kind == SERVER:
            code = rng.choice(_GRPC_ERRORS) if failed else 0
            attributes.append(("rpc.grpc.status_code", code))
            if failed:
                message = f"gRPC status {code}"
        elif failed:
            message = "message processing failed"
        if own_error:
            exc_type, exc_message = _EXCEPTIONS.get(service.language, _EXCEPTIONS["python"])
            at = start + before + int((t - start - before) * rng.random())
            events = [
                (
                    "exception",
                    at + instance.skew_ns,
                    [("exception.type", exc_type), ("exception.message", exc_message)],
                )
            ]
        elif failed and message is not None:
            message += " (downstream failure)"
        skew = instance.skew_ns
        builder.trace.spans.append(
            SpanRecord(
                span_id=span_id,
                parent_span_id=parent,
                name=op.name,
                kind=op.kind,
                start=start + skew,
                end=end + skew,
                instance=instance,
                attributes=attributes,
                error=message if failed else None,
                remote_parent=bool(parent),
                events=events,
                links=[link] if link else None,
                error_rate=op.error_rate,
                failure=_failure(op),
            )
        )
        return end, failed, code, span_id

    def _step(
        self,
        world: _World,
        builder: _Trace,
        instance: Instance,
        step: _Step,
        parent: bytes,
        t: int,
    ) -> tuple[int, bool]:
        """Run a step of an operation starting at ``t``; returns (true end, failed)."""
        rng = self.rng
        if step.probability < 1.0 and rng.random() >= step.probability:
            return t, False
        count = (
            step.repeat
            if step.repeat == step.repeat_max
            else rng.randint(step.repeat, step.repeat_max)
        )
        failed = False
        for _ in range(count):
            what = step.what
            if what == "call":
                t, f = self._call(world, builder, instance, step, parent, t)
            elif what == "db":
                t, f = self._leaf(builder, instance, step, parent, t, CLIENT)
            elif what == "publish":
                t, f = self._publish(world, builder, instance, step, parent, t)
            elif what == "internal":
                t, f = self._leaf(builder, instance, step, parent, t, INTERNAL)
            else:
                end, f = t, False
                for sub in step.parallel:
                    sub_end, sub_failed = self._step(world, builder, instance, sub, parent, t)
                    end = max(end, sub_end)
                    f |= sub_failed
                t = end
            failed |= f
            t += rng.randrange(5_000, 60_000)  # a few microseconds of glue between steps
        return t, failed

    def _call(
        self,
        world: _World,
        builder: _Trace,
        instance: Instance,
        step: _Step,
        parent: bytes,
        t: int,
    ) -> tuple[int, bool]:
        rng = self.rng
        callee = world.services[step.target[0]].ops[step.target[1]]
        client_id = self._span_id()
        path = self._path(callee)
        server_end, failed, code, server_id = self._serve(
            world, builder, callee, client_id, t + self._network(rng), path, [], None
        )
        end = server_end + self._network(rng)
        attributes = list(callee.client_attributes)
        message = None
        if callee.path_parts:
            attributes.append(("url.full", callee.url_prefix + path))
            attributes.append(("http.response.status_code", code))
            if failed:
                attributes.append(("error.type", str(code)))
                message = f"HTTP {code}"
        else:
            attributes.append(("rpc.grpc.status_code", code))
            if failed:
                message = f"gRPC status {code}"
        skew = instance.skew_ns
        builder.trace.spans.append(
            SpanRecord(
                span_id=client_id,
                parent_span_id=parent,
                name=callee.client_name,
                kind=CLIENT,
                start=t + skew,
                end=end + skew,
                instance=instance,
                attributes=attributes,
                error=message,
                failure=_failure(callee),
                reports=server_id,
            )
        )
        return end, failed

    def _leaf(
        self,
        builder: _Trace,
        instance: Instance,
        step: _Step,
        parent: bytes,
        t: int,
        kind: int,
    ) -> tuple[int, bool]:
        """A database/cache query or an internal span: no children."""
        rng = self.rng
        duration = step.latency(rng) if step.latency else rng.randrange(20_000, 400_000)
        failed = step.error_rate > 0 and rng.random() < step.error_rate
        events = None
        if failed:
            events = [
                (
                    "exception",
                    t + duration + instance.skew_ns,
                    [("exception.type", "DatabaseError"), ("exception.message", "query failed")],
                )
            ]
        skew = instance.skew_ns
        builder.trace.spans.append(
            SpanRecord(
                span_id=self._span_id(),
                parent_span_id=parent,
                name=step.name,
                kind=kind,
                start=t + skew,
                end=t + duration + skew,
                instance=instance,
                attributes=list(step.attributes),
                error="query failed" if failed else None,
                events=events,
                error_rate=step.error_rate,
                failure="query failed",
            )
        )
        return t + duration, failed

    def _publish(
        self,
        world: _World,
        builder: _Trace,
        instance: Instance,
        step: _Step,
        parent: bytes,
        t: int,
    ) -> tuple[int, bool]:
        """A producer span, then every consumer of the topic after its queue delay."""
        rng = self.rng
        producer_id = self._span_id()
        end = t + (step.latency(rng) if step.latency else 0)
        failed = step.error_rate > 0 and rng.random() < step.error_rate
        message_id = f"{rng.getrandbits(64):016x}"
        skew = instance.skew_ns
        builder.trace.spans.append(
            SpanRecord(
                span_id=producer_id,
                parent_span_id=parent,
                name=step.name,
                kind=PRODUCER,
                start=t + skew,
                end=end + skew,
                instance=instance,
                attributes=[*step.attributes, ("messaging.message.id", message_id)],
                error="send failed" if failed else None,
                error_rate=step.error_rate,
                failure="send failed",
            )
        )
        if failed:
            return end, True
        for service in world.services.values():
            handler = service.consumers.get(step.topic)
            if handler is None:
                continue
            delivered = end + (step.delay(rng) if step.delay else 0)
            extra = [("messaging.message.id", message_id)]
            if handler.continuation == "link":
                follow = _Trace(self._trace_id())
                link = (builder.trace.trace_id, producer_id)
                self._serve(world, follow, handler, b"", delivered, "", extra, link)
                builder.continuations.append(follow.trace)
                builder.continuations.extend(follow.continuations)
            else:
                self._serve(world, builder, handler, producer_id, delivered, "", extra, None)
        return end, False


def _failure(op: _Op) -> str:
    """The status message of an operation's server (or client) span that fails in a
    replay without having failed when generated."""
    if op.path_parts:
        return HTTP_FAILURE
    if op.kind == SERVER:
        return GRPC_FAILURE
    return "message processing failed"


# --------------------------------------------------------------------------- OTLP encoding


def encode_request(traces: Iterable[GeneratedTrace]) -> ExportTraceServiceRequest:
    """One OTLP export request holding the traces, one ResourceSpans per instance."""
    request = ExportTraceServiceRequest()
    scopes: dict[Instance, Any] = {}
    for trace in traces:
        trace_id = trace.trace_id
        for record in trace.spans:
            scope = scopes.get(record.instance)
            if scope is None:
                resource_spans = request.resource_spans.add()
                for key, value in record.instance.resource:
                    set_any_value(resource_spans.resource.attributes.add(key=key).value, value)
                scope = resource_spans.scope_spans.add()
                scope.scope.name = SCOPE_NAME
                scope.scope.version = SCOPE_VERSION
                scopes[record.instance] = scope
            span = scope.spans.add(
                trace_id=trace_id,
                span_id=record.span_id,
                parent_span_id=record.parent_span_id,
                flags=FLAGS_REMOTE if record.remote_parent else FLAGS_LOCAL,
                name=record.name,
                kind=record.kind,
                start_time_unix_nano=record.start,
                end_time_unix_nano=record.end,
            )
            attributes = span.attributes
            for key, value in record.attributes:
                set_any_value(attributes.add(key=key).value, value)
            if record.events:
                for name, at, event_attributes in record.events:
                    event = span.events.add(time_unix_nano=at, name=name)
                    for key, value in event_attributes:
                        set_any_value(event.attributes.add(key=key).value, value)
            if record.links:
                for linked_trace, linked_span in record.links:
                    span.links.add(trace_id=linked_trace, span_id=linked_span, flags=FLAGS_REMOTE)
            if record.error is not None:
                span.status.code = STATUS_ERROR
                span.status.message = record.error
    return request
