"""PolicyEngine: the collector's decision over all configured policies, cheaply.

Precedence (the collector's ``makeDecision``): drop policies run first, in file order,
then the others in file order. Any Dropped -> drop (evaluation stops there); else any
InvertNotSampled -> drop; else any Sampled -> keep; else InvertSampled and no NotSampled
-> keep; else drop. With ``sample_on_first_match`` evaluation stops at the first Sampled.
Errors are ignored (the collector counts and logs them).

Laziness: once the outcome cannot change (an InvertNotSampled was seen; or a Sampled was
seen and no later policy can return InvertNotSampled) the remaining STATELESS policies
are skipped; stateful ones (rate/bytes limiting, composite, and/not/drop holding one) are
still evaluated, because the collector evaluates them and their budgets must be spent
exactly as the collector spends them. ``per_policy`` therefore holds the policies that
ran. Each trace's spans are flattened once and the attribute keys any policy reads are
indexed in one pass, shared by all policies.

``EngineDecision.policy`` is the policy that decided: the first Dropped (drop), the first
InvertNotSampled (drop), the first Sampled or, failing that, the first InvertSampled
(keep); for a composite policy "<composite>/<sub-policy>"; None when nothing matched.
(The collector records no name for an InvertNotSampled drop; we give it for diagnosis.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.policies import config as cfg
from pipeline.policies import registry
from pipeline.policies.base import Policy
from pipeline.policies.decision import (
    DROPPED,
    ERROR,
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
    Decision,
)
from pipeline.policies.shared import SharedState
from pipeline.policies.trace import TraceView

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class EngineDecision:
    sampled: bool
    policy: str | None
    per_policy: dict[str, Decision] = field(default_factory=dict)
    final: Decision = NOT_SAMPLED  # SAMPLED, NOT_SAMPLED or DROPPED, as the collector


def build_policy(
    p: registry.PolicyModel,
    clock: Clock = time.monotonic,
    shared: SharedState | None = None,
    decision_lag: float = 0.0,
) -> Policy:
    """The evaluator for one configured policy (config model -> Policy), via the registry."""
    return registry.build_policy(p, clock, shared, decision_lag)


class PolicyEngine:
    """Evaluates a SamplingConfig's policies against one trace at a time (not thread-safe:
    stateful policies keep budgets; use one engine per worker thread/partition owner).

    A worker passes the wall clock, on which Kafka's event times and the fleet's slots
    are, and its ``decision_lag`` (see ``registry.BuildContext``)."""

    def __init__(
        self,
        config: cfg.SamplingConfig,
        clock: Clock = time.monotonic,
        shared: SharedState | None = None,
        decision_lag: float = 0.0,
    ) -> None:
        self.config = config
        self.clock = clock
        built = [
            (
                build_policy(p, clock, shared, decision_lag),
                registry.policy_type(p.type).evaluated_first,
            )
            for p in config.policies
        ]
        self._setup(built, config.sample_on_first_match)

    @classmethod
    def from_evaluators(
        cls,
        policies: list[tuple[Policy, bool]],
        *,
        sample_on_first_match: bool = False,
        clock: Clock = time.monotonic,
    ) -> PolicyEngine:
        """An engine over ready evaluators: (policy, evaluated_first) in file order
        (evaluated_first: a drop policy)."""
        engine = cls.__new__(cls)
        engine.config = None
        engine.clock = clock
        engine._setup(policies, sample_on_first_match)
        return engine

    def _setup(self, built: list[tuple[Policy, bool]], sample_on_first_match: bool) -> None:
        self.policies: list[Policy] = [p for p, is_drop in built if is_drop] + [
            p for p, is_drop in built if not is_drop
        ]
        self.drop_count = sum(1 for _, is_drop in built if is_drop)
        self.sample_on_first_match = sample_on_first_match
        # index of the last policy that can return InvertNotSampled (-1: none)
        self._last_inverter = max(
            (i for i, p in enumerate(self.policies) if p.may_invert_not_sample), default=-1
        )
        span_keys: set[str] = set()
        resource_keys: set[str] = set()
        for p in self.policies:
            s, r = p.attribute_keys()
            span_keys |= s
            resource_keys |= r
        self.attribute_keys = frozenset(span_keys | resource_keys)
        self._plan = [
            (p, p.name, p.stateful, getattr(p, "reports_sub_policy", False)) for p in self.policies
        ]
        self._observers = [p for p in self.policies if getattr(p, "observes_outcome", False)]

    def view(
        self, data, trace_id: bytes, size_bytes: int | None = None, raw: bytes | None = None
    ) -> TraceView:
        """A TraceView indexed for exactly the attribute keys these policies read.

        Pass ``raw`` (the serialized spans) when you have it: it saves a serialization.
        (``evaluate`` restricts a plain ``TraceView(data, trace_id, size)``, which is what
        the sampler passes, to the same keys, so both index only what is read.)
        """
        return TraceView(data, trace_id, size_bytes, keys=self.attribute_keys, raw=raw)

    def evaluate(self, trace: TraceView) -> EngineDecision:
        decision = self._decide(trace)
        for observer in self._observers:
            try:
                observer.observe_outcome(trace, decision.sampled, decision.policy)
            except Exception:  # as in _decide: a broken policy must not stop the pipeline
                log.exception("sampling policy %s failed to observe a decision", observer.name)
        return decision

    def _decide(self, trace: TraceView) -> EngineDecision:
        if trace._keys is None and trace._span_attrs is None and trace._res_attrs is None:
            trace._keys = self.attribute_keys  # index only what the policies read
        per: dict[str, Decision] = {}
        first_sampled = first_invert_sampled = first_invert_not = first_dropped = None
        any_not_sampled = False
        settled = False
        last_inverter = self._last_inverter
        for index, (policy, name, stateful, names_sub) in enumerate(self._plan):
            if settled and not stateful:
                continue
            try:
                d = policy.evaluate(trace)
            except Exception:  # a broken policy must not stop the pipeline
                log.exception("sampling policy %s failed", name)
                d = ERROR
            per[name] = d
            if d is SAMPLED:
                if first_sampled is None:
                    first_sampled = f"{name}/{policy.last_sub}" if names_sub else name
                    if self.sample_on_first_match:
                        break
                    if index >= last_inverter:
                        settled = True
            elif d is NOT_SAMPLED:
                any_not_sampled = True
            elif d is DROPPED:
                first_dropped = name
                break
            elif d is INVERT_NOT_SAMPLED:
                if first_invert_not is None:
                    first_invert_not = name
                settled = True
            elif d is INVERT_SAMPLED and first_invert_sampled is None:
                first_invert_sampled = name
        if first_dropped is not None:
            return EngineDecision(False, first_dropped, per, DROPPED)
        if first_invert_not is not None:
            return EngineDecision(False, first_invert_not, per, NOT_SAMPLED)
        if first_sampled is not None:
            return EngineDecision(True, first_sampled, per, SAMPLED)
        if first_invert_sampled is not None and not any_not_sampled:
            return EngineDecision(True, first_invert_sampled, per, SAMPLED)
        return EngineDecision(False, None, per, NOT_SAMPLED)
