"""composite: sub-policies in order, each with a per-second span budget.

As the collector (newest): sub-policies run in ``composite_sub_policy`` order
(``policy_order`` is accepted but, as in the collector, does not change the order); the
FIRST one that returns Sampled or InvertSampled decides: if its spans this second plus
this trace's spans fit both its allocation and ``max_total_spans_per_second``, the
trace is Sampled and counted against that sub-policy; otherwise NotSampled, with no
fall-through to later sub-policies. Note the total cap is compared with that one
sub-policy's counter, not with the sum over sub-policies (the collector's behaviour).
If no sub-policy samples: NotSampled. An Error from a sub-policy ends it with Error.

Allocation per sub-policy: ``int(percent / 100 * max_total)`` when it has a
``rate_allocation`` entry with percent > 0, else ``int(max_total / number of
sub-policies)``. Counters reset whenever the (injected) clock's whole second changes.

``scope: fleet`` (spansieve's option): every sub-policy's allocation is the whole fleet's,
a token bucket in Redis (``allocation`` spans a second, at most one second's worth at
once) spent from local leases like ``rate_limiting``'s, instead of a counter per worker
(see ``limiter.bucket_for``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.models import NonEmptyStr, StrictModel, custom_error
from pipeline.policies.and_ import union_keys
from pipeline.policies.base import Policy
from pipeline.policies.decision import ERROR, INVERT_SAMPLED, NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.limiter import Scope, bucket_for, scope_field
from pipeline.policies.registry import (
    BuildContext,
    PolicyModel,
    SectionModel,
    no_duplicate_names,
    register,
    sub_policy_slot,
)
from pipeline.policies.shared import Budget
from pipeline.policies.trace import TraceView


def allocations(max_total: int, names: Sequence[str], percents: Mapping[str, int]) -> list[int]:
    default = int(max_total / len(names)) if names else 0
    out = []
    for name in names:
        pct = percents.get(name, 0)
        out.append(int(pct / 100 * max_total) if pct > 0 else default)
    return out


class Composite(Policy):
    stateful = True
    reports_sub_policy = True  # the engine names the decision "<composite>/<last_sub>"

    def __init__(
        self,
        name: str,
        max_total_spans_per_second: int,
        subpolicies: Sequence[Policy],
        rate_allocation: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        budgets: Sequence[Budget] | None = None,
    ) -> None:
        """``budgets``: one per sub-policy, used instead of the per-second counters."""
        super().__init__(name)
        self.subpolicies = list(subpolicies)
        self.max_total = max_total_spans_per_second
        self.allocated = allocations(
            max_total_spans_per_second, [p.name for p in self.subpolicies], rate_allocation or {}
        )
        self.sampled = [0] * len(self.subpolicies)
        self.budgets = list(budgets) if budgets is not None else None
        self.clock = clock
        self.current_second: int | None = None
        self.last_sub: str | None = None  # the sub-policy that sampled the last trace

    def attribute_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        return union_keys(self.subpolicies)

    def evaluate(self, trace: TraceView) -> Decision:
        self.last_sub = None
        second = math.floor(self.clock())
        if second != self.current_second:
            self.current_second = second
            self.sampled = [0] * len(self.subpolicies)
        for i, sub in enumerate(self.subpolicies):
            d = sub.evaluate(trace)
            if d is ERROR:
                return ERROR
            if d is SAMPLED or d is INVERT_SAMPLED:
                if self.budgets is not None:
                    if not self.budgets[i].allow(trace.span_count):
                        return NOT_SAMPLED
                    self.last_sub = sub.name
                    return SAMPLED
                spans = self.sampled[i] + trace.span_count
                if spans <= self.allocated[i] and spans <= self.max_total:
                    self.sampled[i] = spans
                    self.last_sub = sub.name
                    return SAMPLED
                return NOT_SAMPLED
        return NOT_SAMPLED


CompositeSubPolicy = sub_policy_slot("composite_sub_policy", also=("and",))


class RateAllocationCfg(StrictModel):
    policy: NonEmptyStr
    percent: int = Field(ge=0, le=100, description="0 = equal share")


class CompositeCfg(SectionModel):
    max_total_spans_per_second: int = Field(ge=0)
    policy_order: list[NonEmptyStr] = Field(
        default_factory=list,
        description="accepted and checked, but (as in the collector) sub-policies run in "
        "composite_sub_policy order",
    )
    composite_sub_policy: list[CompositeSubPolicy] = Field(min_length=1)
    rate_allocation: list[RateAllocationCfg] = Field(default_factory=list)
    scope: Scope = scope_field()

    @model_validator(mode="after")
    def _names(self) -> CompositeCfg:
        names = [p.name for p in self.composite_sub_policy]
        no_duplicate_names(names, "composite_sub_policy")
        known = ", ".join(names)
        for i, name in enumerate(self.policy_order):
            if name not in names:
                raise custom_error(
                    "policy_order names {name}, which is not a composite_sub_policy "
                    "(known: {known})",
                    ("policy_order", i),
                    name=repr(name),
                    known=known,
                )
        seen: set[str] = set()
        for i, alloc in enumerate(self.rate_allocation):
            if alloc.policy not in names:
                raise custom_error(
                    "rate_allocation names {name}, which is not a composite_sub_policy "
                    "(known: {known})",
                    ("rate_allocation", i, "policy"),
                    name=repr(alloc.policy),
                    known=known,
                )
            if alloc.policy in seen:
                raise custom_error(
                    "{name} is allocated twice",
                    ("rate_allocation", i, "policy"),
                    name=repr(alloc.policy),
                )
            seen.add(alloc.policy)
        return self


class CompositePolicy(PolicyModel):
    type: Literal["composite"]
    composite: CompositeCfg

    def sub_policies(self) -> Sequence[PolicyModel]:
        return self.composite.composite_sub_policy


def build(config: CompositePolicy, context: BuildContext) -> Composite:
    c = config.composite
    names = [sub.name for sub in c.composite_sub_policy]
    percents = {a.policy: a.percent for a in c.rate_allocation}
    budgets = None
    if c.scope == "fleet":
        budgets = [
            bucket_for(
                "fleet", context.shared, f"{config.name}/{name}", "spans", rate, rate, context.clock
            )
            for name, rate in zip(
                names, allocations(c.max_total_spans_per_second, names, percents), strict=True
            )
        ]
    return Composite(
        config.name,
        c.max_total_spans_per_second,
        [context.build(sub) for sub in c.composite_sub_policy],
        percents,
        context.clock,
        budgets,
    )


register(CompositePolicy, build, nestable=False)
