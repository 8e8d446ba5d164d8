"""not: the opposite of one sub-policy.

As the collector: Sampled <-> NotSampled; every other decision (InvertSampled,
InvertNotSampled, Error) passes through unchanged, so ``not`` of an ``invert_match``
policy still returns the inverted decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from pipeline.policies.base import Policy
from pipeline.policies.decision import NOT_SAMPLED, SAMPLED, Decision
from pipeline.policies.registry import (
    BuildContext,
    PolicyModel,
    SectionModel,
    register,
    sub_policy_slot,
)
from pipeline.policies.trace import TraceView


class Not(Policy):
    def __init__(self, name: str, subpolicy: Policy) -> None:
        super().__init__(name)
        self.subpolicy = subpolicy
        self.stateful = subpolicy.stateful
        self.may_invert_not_sample = subpolicy.may_invert_not_sample

    def attribute_keys(self) -> tuple[frozenset[str], frozenset[str]]:
        return self.subpolicy.attribute_keys()

    def evaluate(self, trace: TraceView) -> Decision:
        d = self.subpolicy.evaluate(trace)
        if d is SAMPLED:
            return NOT_SAMPLED
        if d is NOT_SAMPLED:
            return SAMPLED
        return d


NotSubPolicy = sub_policy_slot("not_sub_policy")


class NotCfg(SectionModel):
    not_sub_policy: NotSubPolicy


class NotPolicy(PolicyModel):
    type: Literal["not"]
    not_: NotCfg = Field(alias="not")

    def sub_policies(self) -> Sequence[PolicyModel]:
        return (self.not_.not_sub_policy,)


def build(config: NotPolicy, context: BuildContext) -> Not:
    return Not(config.name, context.build(config.not_.not_sub_policy))


register(NotPolicy, build, nestable=False)
