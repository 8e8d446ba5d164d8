"""and: Sampled only if every sub-policy samples.

As the collector: sub-policies run in order and the first NotSampled or InvertNotSampled
ends it with NotSampled (later sub-policies, stateful ones included, are not evaluated);
InvertSampled counts as sampling; an Error ends it with Error. The result is never an
inverted decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from pipeline.policies.base import Policy
from pipeline.policies.decision import ERROR, INVERT_NOT_SAMPLED, NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import (
    BuildContext,
    PolicyModel,
    SectionModel,
    register,
    sub_policy_slot,
)
from pipeline.policies.trace import TraceView


class And(Policy):
    ALL_SAMPLED: Decision = SAMPLED  # what the policy says when every sub-policy samples

    def __init__(self, name: str, subpolicies: Sequence[Policy]) -> None:
        super().__init__(name)
        self.subpolicies = list(subpolicies)
        self.stateful = any(p.stateful for p in self.subpolicies)

    def attribute_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        return union_keys(self.subpolicies)

    def evaluate(self, trace: TraceView) -> Decision:
        for sub in self.subpolicies:
            d = sub.evaluate(trace)
            if d is NOT_SAMPLED or d is INVERT_NOT_SAMPLED:
                return NOT_SAMPLED
            if d is ERROR:
                return ERROR
        return self.ALL_SAMPLED


def union_keys(policies: Sequence[Policy]) -> tuple[frozenset[str], frozenset[str]]:
    span: set[str] = set()
    resource: set[str] = set()
    for p in policies:
        s, r = p.attribute_keys()
        span |= s
        resource |= r
    return frozenset(span), frozenset(resource)


AndSubPolicy = sub_policy_slot("and_sub_policy")


class AndCfg(SectionModel):
    and_sub_policy: list[AndSubPolicy] = Field(min_length=1)


class AndPolicy(PolicyModel):
    type: Literal["and"]
    and_: AndCfg = Field(alias="and")

    def sub_policies(self) -> Sequence[PolicyModel]:
        return self.and_.and_sub_policy


def build(config: AndPolicy, context: BuildContext) -> And:
    return And(config.name, [context.build(sub) for sub in config.and_.and_sub_policy])


register(AndPolicy, build, nestable=False)
