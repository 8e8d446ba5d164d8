"""drop: Dropped if every sub-policy samples (an AND that drops instead of keeping).

As the collector: sub-policies run in order, the first NotSampled or InvertNotSampled
ends it with NotSampled, an Error ends it with Error. Drop policies are evaluated before
all others, and one Dropped decision drops the trace whatever the rest say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from pipeline.policies.and_ import And
from pipeline.policies.decision import DROPPED, Decision
from pipeline.policies.registry import (
    BuildContext,
    PolicyModel,
    SectionModel,
    register,
    sub_policy_slot,
)


class Drop(And):
    ALL_SAMPLED: Decision = DROPPED


DropSubPolicy = sub_policy_slot("drop_sub_policy")


class DropCfg(SectionModel):
    drop_sub_policy: list[DropSubPolicy] = Field(min_length=1)


class DropPolicy(PolicyModel):
    type: Literal["drop"]
    drop: DropCfg

    def sub_policies(self) -> Sequence[PolicyModel]:
        return self.drop.drop_sub_policy


def build(config: DropPolicy, context: BuildContext) -> Drop:
    return Drop(config.name, [context.build(sub) for sub in config.drop.drop_sub_policy])


register(DropPolicy, build, nestable=False, evaluated_first=True)
