"""Small builders of OTLP traces for the policy tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from pipeline.policies.trace import TraceView
from pipeline.wire.otlp import set_any_value

TRACE_ID = bytes(range(1, 17))
T0 = 1_700_000_000_000_000_000  # ns
MS = 1_000_000


def any_value(v: Any) -> AnyValue:
    a = AnyValue()
    if v is not None:
        set_any_value(a, v)
    return a


def kvs(attrs: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> list[KeyValue]:
    items = attrs.items() if isinstance(attrs, Mapping) else (attrs or [])
    return [KeyValue(key=k, value=any_value(v)) for k, v in items]


def span(
    name: str = "op",
    start_ms: float = 0,
    end_ms: float = 1,
    attrs: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    status: int = 0,
    kind: int = Span.SPAN_KIND_INTERNAL,
    trace_state: str = "",
    flags: int = 0,
    events: Iterable[tuple[str, Mapping[str, Any]]] = (),
    start_ns: int | None = None,
    end_ns: int | None = None,
    message: str = "",
) -> Span:
    s = Span(
        trace_id=TRACE_ID,
        span_id=bytes(8),
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns if start_ns is not None else T0 + int(start_ms * MS),
        end_time_unix_nano=end_ns if end_ns is not None else T0 + int(end_ms * MS),
        trace_state=trace_state,
        flags=flags,
    )
    s.attributes.extend(kvs(attrs))
    s.status.code = status
    if message:
        s.status.message = message
    for ev_name, ev_attrs in events:
        ev = s.events.add(name=ev_name, time_unix_nano=s.start_time_unix_nano)
        ev.attributes.extend(kvs(ev_attrs))
    return s


def traces(*resources: tuple[Mapping[str, Any] | None, list[Span]]) -> TracesData:
    td = TracesData()
    for res_attrs, spans in resources:
        rs = td.resource_spans.add()
        rs.resource.attributes.extend(kvs(res_attrs))
        rs.scope_spans.add().spans.extend(spans)
    return td


def view(
    *spans: Span,
    resource: Mapping[str, Any] | None = None,
    trace_id: bytes = TRACE_ID,
    size_bytes: int | None = None,
) -> TraceView:
    """One resource holding `spans`."""
    return TraceView(traces((resource, list(spans))), trace_id, size_bytes)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Fixed:
    """A policy stub returning a fixed decision and counting its evaluations."""

    def __init__(self, name, decision, stateful=False, may_invert=None):
        from pipeline.policies.decision import INVERT_NOT_SAMPLED

        self.name = name
        self.decision = decision
        self.stateful = stateful
        self.may_invert_not_sample = (
            decision is INVERT_NOT_SAMPLED if may_invert is None else may_invert
        )
        self.calls = 0

    def evaluate(self, trace):
        self.calls += 1
        return self.decision

    def attribute_keys(self):
        return frozenset(), frozenset()
