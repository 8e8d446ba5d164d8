"""What every policy evaluator is, and the attribute scan the attribute policies share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.policies.decision import (
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
    Decision,
)
from pipeline.policies.trace import TraceView


class Policy(ABC):
    """One evaluator: ``evaluate(trace) -> Decision``.

    ``stateful`` policies (rate and byte budgets, composite) change state on every
    evaluation, so the engine always runs them when the collector would, even when the
    final decision is already known. ``may_invert_not_sample`` says whether the policy can
    return InvertNotSampled (the only decision that can overturn an earlier Sampled).
    ``reports_sub_policy`` policies (composite) set ``last_sub`` to the sub-policy that
    sampled, and the engine reports the decision as "<policy>/<last_sub>".
    ``observes_outcome`` policies (adaptive) have ``observe_outcome(trace, sampled,
    policy)``, through which the engine tells them every trace's final decision (and
    the policy that made it), also of traces they were not asked about; only at the top
    level of the policy file.

    Each evaluator lives in its policy type's module, next to its config model and the
    ``register(...)`` call that ties them together (see ``registry``).
    """

    stateful: bool = False
    may_invert_not_sample: bool = False
    reports_sub_policy: bool = False
    observes_outcome: bool = False
    last_sub: str | None = None

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def evaluate(self, trace: TraceView) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError

    def attribute_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        """(span attribute keys, resource attribute keys) this policy reads."""
        return frozenset(), frozenset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def attribute_hit(
    trace: TraceView,
    key: str,
    on_resource: Callable[[AnyValue], bool],
    on_span: Callable[[AnyValue], bool],
) -> bool:
    """True if any resource's or any span's `key` satisfies its predicate.

    The collector checks each ResourceSpans' resource, then its spans, and stops at the
    first hit; for a yes/no answer the order does not matter.
    """
    for attrs in trace.resource_attrs:
        value = attrs.get(key)
        if value is not None and on_resource(value):
            return True
    for attrs in trace.span_attrs:
        value = attrs.get(key)
        if value is not None and on_span(value):
            return True
    return False


class AttributePolicy(Policy):
    """Base of string/numeric/boolean attribute policies (span AND resource attributes).

    Without invert_match: Sampled if any resource or span matches, else NotSampled. With
    invert_match: InvertNotSampled if any matches, else InvertSampled (the collector's
    deprecated inverted decisions, which the engine's precedence treats specially).
    """

    def __init__(self, name: str, key: str, invert_match: bool) -> None:
        super().__init__(name)
        self.key = key
        self.invert_match = invert_match
        self.may_invert_not_sample = invert_match
        # a match needs one of these byte strings somewhere in the serialized trace
        self.needles: tuple[bytes, ...] = (key.encode(),)

    def attribute_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        keys = frozenset((self.key,))
        return keys, keys

    @abstractmethod
    def on_resource(self, value: AnyValue) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_span(self, value: AnyValue) -> bool:
        return self.on_resource(value)

    def evaluate(self, trace: TraceView) -> Decision:
        raw = trace.raw
        hit = any(n in raw for n in self.needles) and attribute_hit(
            trace, self.key, self.on_resource, self.on_span
        )
        if self.invert_match:
            return INVERT_NOT_SAMPLED if hit else INVERT_SAMPLED
        return SAMPLED if hit else NOT_SAMPLED
