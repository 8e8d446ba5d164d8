"""The synthetic microservice estate the load generator plays, as validated YAML.

A topology names services (with their operations and the calls each operation makes),
datastores (databases and caches), message topics, weighted entry points, an optional
"bad deploy" and an optional burst. ``load_topology(path)`` returns a frozen ``Topology``
or raises ``TopologyError`` naming file, line, column and field, e.g.::

    estate.yaml:41:17: services.checkout.operations.PlaceOrder.calls[2].call: unknown
    service 'paymnet'; known: ad, cart, ...

``TopologyError`` is ``pipeline.config.yaml_file.ConfigError``: topologies are read, and
their errors reported, exactly as policy and redaction files are (several problems are
listed one a line). Durations take Go's syntax ("30s", "2.5ms") or a number of seconds;
clock skews may be negative ("-120ms").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from pipeline.config.models import (
    Duration,
    NonEmptyStr,
    StrictModel,
    custom_error,
    parse_duration,
)
from pipeline.config.yaml_file import ConfigError, compose_mapping, read_config_file, validate_node

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
_HTTP_OPERATION = re.compile(r"^(?:" + "|".join(HTTP_METHODS) + r") /\S*$")


# The topology loader's errors are the generic config errors (same text, same fields).
TopologyError = ConfigError


def _signed_duration(value: Any) -> float:
    """Seconds, possibly negative (clock skew runs either way): "-120ms", "1.5s", -0.2."""
    return parse_duration(value, signed=True)


SignedDuration = Annotated[float, BeforeValidator(_signed_duration)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
AttributeValue = str | bool | int | float


class Latency(StrictModel):
    """A heavy-tailed duration: log-normal around ``median`` (``sigma``) or Pareto (``alpha``).

    Real service latencies have long tails; a normal distribution would never produce the
    slow traces a latency policy is meant to catch.
    """

    distribution: Literal["lognormal", "pareto"] = "lognormal"
    median: Duration
    sigma: float = Field(0.5, ge=0.0, le=4.0, description="log-normal shape")
    alpha: float = Field(1.5, gt=0.2, le=20.0, description="Pareto shape (tail index)")
    cap: Duration = Field(30.0, description="no draw is longer than this")

    @model_validator(mode="after")
    def _positive(self) -> Latency:
        if self.median <= 0:
            raise custom_error("median must be greater than 0", ("median",))
        if self.cap < self.median:
            raise custom_error("cap must be at least the median", ("cap",))
        return self


class Step(StrictModel):
    """One thing an operation does: exactly one of call, db, publish, internal, parallel."""

    call: NonEmptyStr | None = Field(None, description="service to call (HTTP or gRPC)")
    operation: NonEmptyStr | None = Field(None, description="operation of the called service")
    db: NonEmptyStr | None = Field(None, description="datastore (database or cache) to query")
    statement: NonEmptyStr | None = Field(None, description="db.statement; '?' for values")
    table: NonEmptyStr | None = Field(None, description="db.collection.name")
    publish: NonEmptyStr | None = Field(None, description="topic to send a message to")
    internal: NonEmptyStr | None = Field(None, description="name of an in-process span")
    latency: Latency | None = Field(None, description="duration of an internal span")
    parallel: list[Step] | None = Field(None, description="steps that run concurrently")
    probability: Probability = Field(1.0, description="chance that the step happens at all")
    repeat: int = Field(1, ge=1, le=100, description="how many times it happens")
    repeat_max: int | None = Field(
        None, ge=1, le=100, description="if set: a uniform count in repeat..repeat_max"
    )

    @property
    def what(self) -> str:
        for name in ("call", "db", "publish", "internal", "parallel"):
            if getattr(self, name) is not None:
                return name
        raise AssertionError("validated steps have a kind")

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [n for n in ("call", "db", "publish", "internal", "parallel") if getattr(self, n)]
        if len(kinds) != 1:
            given = ", ".join(kinds) if kinds else "none"
            raise custom_error(
                "a step has exactly one of call, db, publish, internal, parallel (given: {given})",
                given=given,
            )
        kind = kinds[0]
        if (self.operation is None) != (kind != "call"):
            raise custom_error(
                "call needs operation (and only call takes one)",
                ("operation",) if self.operation is not None else (),
            )
        for key in ("statement", "table"):
            if getattr(self, key) is not None and kind != "db":
                raise custom_error("{key} belongs to db steps", (key,), key=key)
        if kind == "db" and self.statement is None:
            raise custom_error("a db step needs a statement")
        if (self.latency is not None) != (kind == "internal"):
            raise custom_error("internal steps, and only they, take a latency", ("latency",))
        if self.repeat_max is not None and self.repeat_max < self.repeat:
            raise custom_error(
                "repeat_max ({hi}) is less than repeat ({lo})",
                ("repeat_max",),
                hi=self.repeat_max,
                lo=self.repeat,
            )
        return self


class Operation(StrictModel):
    """An operation a service serves: its own time, its error rate and the steps it takes."""

    latency: Latency = Field(description="time spent in the service itself, children excluded")
    error_rate: Probability | None = Field(None, description="default: the service's")
    calls: list[Step] = Field(default_factory=list)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)


class Consumer(Operation):
    """How a service handles messages of one topic."""

    group: NonEmptyStr | None = Field(None, description="consumer group; default service name")
    continuation: Literal["child", "link"] = Field(
        "child",
        description="child: the consumer span continues the producer's trace; link: it "
        "starts a new trace with a span link to the producer",
    )


class Service(StrictModel):
    """A deployed service: its protocol, instances (hosts, clock skew) and operations."""

    protocol: Literal["http", "grpc"] = "http"
    rpc_service: NonEmptyStr | None = Field(None, description="gRPC service name")
    port: int = Field(8080, ge=1, le=65535)
    version: NonEmptyStr = "1.0.0"
    language: NonEmptyStr = "python"
    instances: int = Field(2, ge=1, le=1000)
    clock_skew: dict[int, SignedDuration] = Field(
        default_factory=dict, description="instance index -> clock offset (seconds, signed)"
    )
    error_rate: Probability = 0.0
    operations: dict[str, Operation] = Field(default_factory=dict)
    consumes: dict[str, Consumer] = Field(default_factory=dict, description="topic -> handler")

    @model_validator(mode="after")
    def _consistent(self) -> Service:
        for index in self.clock_skew:
            if not 0 <= index < self.instances:
                raise custom_error(
                    "clock_skew names instance {index}, but instances are 0..{last}",
                    ("clock_skew", str(index)),
                    index=index,
                    last=self.instances - 1,
                    at_key=True,
                )
        if not self.operations and not self.consumes:
            raise custom_error("a service needs operations or consumes")
        for name in self.operations:
            if self.protocol == "http" and not _HTTP_OPERATION.match(name):
                raise custom_error(
                    "an HTTP operation is named 'METHOD /route' (METHOD one of {methods}), "
                    "got {name}",
                    ("operations", name),
                    methods=", ".join(HTTP_METHODS),
                    name=repr(name),
                    at_key=True,
                )
            if self.protocol == "grpc" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise custom_error(
                    "a gRPC operation is a method name like GetCart, got {name}",
                    ("operations", name),
                    name=repr(name),
                    at_key=True,
                )
        if self.rpc_service is not None and self.protocol != "grpc":
            raise custom_error("rpc_service is only for protocol: grpc", ("rpc_service",))
        return self


class Datastore(StrictModel):
    """A database or cache that operations query (db.system: postgresql, redis, ...)."""

    system: NonEmptyStr
    namespace: str = Field("", description="db.namespace (database name)")
    host: NonEmptyStr
    port: int = Field(ge=1, le=65535)
    latency: Latency
    error_rate: Probability = 0.0


class Topic(StrictModel):
    """A message topic: producers publish, every consuming service handles each message."""

    system: NonEmptyStr = "kafka"
    broker: NonEmptyStr = "kafka"
    port: int = Field(9092, ge=1, le=65535)
    publish_latency: Latency = Field(description="duration of the producer span")
    delay: Latency = Field(description="time in the queue before a consumer picks it up")
    error_rate: Probability = Field(0.0, description="share of failed sends")


class EntryPoint(StrictModel):
    """Where user requests come in, and how often (weights are relative)."""

    service: NonEmptyStr
    operation: NonEmptyStr
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)


class BadDeploy(StrictModel):
    """From ``at`` seconds into a run, a new version of one service fails more often."""

    service: NonEmptyStr
    at: Duration
    version: NonEmptyStr = "bad-deploy"
    error_rate: Probability
    latency_factor: float = Field(1.0, ge=0.1, le=100.0)


class Burst(StrictModel):
    """``multiplier`` times the rate from ``at`` for ``duration`` seconds of a run."""

    multiplier: float = Field(gt=0, le=1000, allow_inf_nan=False)
    at: Duration = 0.0
    duration: Duration

    def factor(self, elapsed: float) -> float:
        return self.multiplier if self.at <= elapsed < self.at + self.duration else 1.0


class Topology(StrictModel):
    """A whole synthetic estate."""

    name: NonEmptyStr
    environment: NonEmptyStr = "production"
    namespace: NonEmptyStr = "shop"
    error_propagation: Probability = Field(
        0.5, description="chance that a failed call fails the caller's span too"
    )
    network: Latency = Field(
        Latency(median=0.0003, sigma=0.6), description="one-way network hop of a call"
    )
    entry_points: list[EntryPoint] = Field(min_length=1)
    services: dict[str, Service] = Field(min_length=1)
    datastores: dict[str, Datastore] = Field(default_factory=dict)
    topics: dict[str, Topic] = Field(default_factory=dict)
    bad_deploy: BadDeploy | None = None
    burst: Burst | None = None

    @model_validator(mode="after")
    def _references(self) -> Topology:
        for i, entry in enumerate(self.entry_points):
            self._check_target(entry.service, entry.operation, ("entry_points", i), "service")
        for name, service in self.services.items():
            for op_name, op in service.operations.items():
                self._check_steps(op.calls, ("services", name, "operations", op_name, "calls"))
            for topic, handler in service.consumes.items():
                if topic not in self.topics:
                    raise custom_error(
                        "unknown topic {topic}; known: {known}",
                        ("services", name, "consumes", topic),
                        topic=repr(topic),
                        known=_known(self.topics),
                        at_key=True,
                    )
                where = ("services", name, "consumes", topic, "calls")
                self._check_steps(handler.calls, where)
        if self.bad_deploy is not None and self.bad_deploy.service not in self.services:
            raise custom_error(
                "unknown service {name}; known: {known}",
                ("bad_deploy", "service"),
                name=repr(self.bad_deploy.service),
                known=_known(self.services),
            )
        self._check_cycles()
        return self

    def _check_target(self, service: str, operation: str, where: tuple, key: str) -> None:
        if service not in self.services:
            raise custom_error(
                "unknown service {name}; known: {known}",
                (*where, key),
                name=repr(service),
                known=_known(self.services),
            )
        if operation not in self.services[service].operations:
            raise custom_error(
                "service {service} has no operation {name}; it has: {known}",
                (*where, "operation"),
                service=repr(service),
                name=repr(operation),
                known=_known(self.services[service].operations),
            )

    def _check_steps(self, steps: list[Step], where: tuple) -> None:
        for i, step in enumerate(steps):
            here = (*where, i)
            if step.call is not None:
                self._check_target(step.call, step.operation or "", here, "call")
            elif step.db is not None and step.db not in self.datastores:
                raise custom_error(
                    "unknown datastore {name}; known: {known}",
                    (*here, "db"),
                    name=repr(step.db),
                    known=_known(self.datastores),
                )
            elif step.publish is not None and step.publish not in self.topics:
                raise custom_error(
                    "unknown topic {name}; known: {known}",
                    (*here, "publish"),
                    name=repr(step.publish),
                    known=_known(self.topics),
                )
            elif step.parallel is not None:
                self._check_steps(step.parallel, (*here, "parallel"))

    def consumers_of(self, topic: str) -> list[tuple[str, Consumer]]:
        return [
            (name, service.consumes[topic])
            for name, service in self.services.items()
            if topic in service.consumes
        ]

    def _edges(self, node: tuple[str, str, str]) -> Iterator[tuple[tuple[str, str, str], tuple]]:
        """Call-graph successors of an operation or consumer, with where the edge is."""
        service, kind, name = node
        if kind == "op":
            steps = self.services[service].operations[name].calls
            where: tuple = ("services", service, "operations", name, "calls")
        else:
            steps = self.services[service].consumes[name].calls
            where = ("services", service, "consumes", name, "calls")
        pending = [(steps, where)]
        while pending:
            current, at = pending.pop()
            for i, step in enumerate(current):
                if step.call is not None and step.operation is not None:
                    yield (step.call, "op", step.operation), (*at, i, "call")
                elif step.publish is not None:
                    for consumer, _ in self.consumers_of(step.publish):
                        yield (consumer, "topic", step.publish), (*at, i, "publish")
                elif step.parallel is not None:
                    pending.append((step.parallel, (*at, i, "parallel")))

    def _check_cycles(self) -> None:
        """Refuse call cycles: the generator would recurse forever."""
        state: dict[tuple, int] = {}  # 1 = on the current path, 2 = done
        nodes = [(s, "op", o) for s, svc in self.services.items() for o in svc.operations]
        nodes += [(s, "topic", t) for s, svc in self.services.items() for t in svc.consumes]
        for root in nodes:
            if root in state:
                continue
            path = [root]
            iterators = [self._edges(root)]
            state[root] = 1
            while iterators:
                step = next(iterators[-1], None)
                if step is None:
                    state[path.pop()] = 2
                    iterators.pop()
                    continue
                target, where = step
                if state.get(target) == 1:
                    cycle = [*path[path.index(target) :], target]
                    raise custom_error(
                        "call cycle: {cycle}",
                        where,
                        cycle=" -> ".join(f"{s}/{n}" for s, _, n in cycle),
                    )
                if target not in state:
                    state[target] = 1
                    path.append(target)
                    iterators.append(self._edges(target))


Step.model_rebuild()


def _known(names: dict) -> str:
    return ", ".join(sorted(names)) or "none"


def parse_topology(text: str, source: str = "<string>") -> Topology:
    """A Topology from YAML text; raises TopologyError naming source, line and field."""
    root, data = compose_mapping(
        text,
        source,
        empty="the file is empty; expected a topology",
        expected="name:, services:, ...",
    )
    return validate_node(Topology, data, root, source)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file (see the module docstring for the errors)."""
    return parse_topology(read_config_file(path), str(path))
